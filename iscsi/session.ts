/**
 * iSCSI sessions (RFC 7143 §4.4, §4.2.2.1): TSIH assignment, reinstatement
 * by ISID, and the CmdSN window. Commands are delivered to the SCSI layer in
 * CmdSN order; MaxCmdSN closes the window as commands pile up, which is how
 * queue depth and backpressure reach the initiator.
 */
import type { Logger } from 'pino';
import type { ItNexus } from '../scsi/types';
import { snAdd, snLessOrEqual, snLessThan } from './pdu';
import type { NegotiatedParams, TargetEntry } from './types';

export interface SessionConnection {
  readonly cid: number;
  /** Close the connection, aborting its tasks; resolves when its tasks have settled. */
  shutdown(reason: string): Promise<void>;
}

export class Session {
  expCmdSN: number;
  private maxCmdSNValue: number;
  private inFlight = 0;
  private readonly held = new Map<number, () => void>();
  readonly connections = new Set<SessionConnection>();
  readonly createdAt = Date.now();
  closed = false;

  constructor(
    readonly tsih: number,
    readonly isid: Buffer,
    readonly initiatorName: string,
    readonly type: 'Discovery' | 'Normal',
    readonly target: TargetEntry | null,
    readonly nexus: ItNexus | null,
    readonly params: NegotiatedParams,
    firstCmdSN: number,
    readonly queueDepth: number,
    readonly log: Logger,
  ) {
    this.expCmdSN = firstCmdSN >>> 0;
    this.maxCmdSNValue = snAdd(this.expCmdSN, queueDepth - 1);
  }

  get isidHex(): string {
    return this.isid.toString('hex');
  }

  get maxCmdSN(): number {
    return this.maxCmdSNValue;
  }

  /** Commands delivered and not finished (for status and tests). */
  get commandsInFlight(): number {
    return this.inFlight;
  }

  private refreshWindow(): void {
    const room = Math.max(0, this.queueDepth - this.inFlight - this.held.size);
    const candidate = snAdd(this.expCmdSN, room - 1);
    // MaxCmdSN never goes backwards (RFC 7143 §4.2.2.1).
    if (snLessThan(this.maxCmdSNValue, candidate)) this.maxCmdSNValue = candidate;
  }

  /**
   * Admit a non-immediate command with `cmdSN`. Returns 'deliver-now' when it
   * is next in order (the caller runs it, then calls drain()), 'held' when it
   * arrived early inside the window (deliver runs later from drain), or
   * 'discard' when it lies outside the window (silently ignored, §4.2.2.1).
   */
  admit(cmdSN: number, deliver: () => void): 'deliver-now' | 'held' | 'discard' {
    cmdSN >>>= 0;
    // A full queue closes the window (MaxCmdSN = ExpCmdSN - 1): even the next CmdSN is outside it.
    if (cmdSN === this.expCmdSN && snLessOrEqual(cmdSN, this.maxCmdSNValue)) {
      this.expCmdSN = snAdd(this.expCmdSN, 1);
      return 'deliver-now';
    }
    if (snLessThan(this.expCmdSN, cmdSN) && snLessOrEqual(cmdSN, this.maxCmdSNValue)) {
      if (this.held.has(cmdSN)) return 'discard';
      this.held.set(cmdSN, deliver);
      return 'held';
    }
    return 'discard';
  }

  /**
   * ABORT TASK for a command that never arrived (RFC 7143 §11.5.1 b): when
   * `refCmdSN` lies in the window and before the TMF's own CmdSN, the target
   * counts that CmdSN as received, so the commands after it stop waiting for
   * it; if it still arrives it is a duplicate and is discarded. Returns false
   * when `refCmdSN` is outside the window (the answer is then "task does not
   * exist", §11.5.1 c).
   */
  consumeMissing(refCmdSN: number, tmfCmdSN: number): boolean {
    refCmdSN >>>= 0;
    if (!snLessOrEqual(this.expCmdSN, refCmdSN) || !snLessOrEqual(refCmdSN, this.maxCmdSNValue)) return false;
    if (!snLessThan(refCmdSN, tmfCmdSN >>> 0)) return false;
    if (!this.held.has(refCmdSN)) this.held.set(refCmdSN, () => undefined);
    this.drain();
    return true;
  }

  /** Deliver held commands that have become next in order. */
  drain(): void {
    for (;;) {
      const next = this.held.get(this.expCmdSN);
      if (!next) break;
      this.held.delete(this.expCmdSN);
      this.expCmdSN = snAdd(this.expCmdSN, 1);
      next();
    }
    this.refreshWindow();
  }

  taskStarted(): void {
    this.inFlight++;
  }

  taskFinished(): void {
    this.inFlight--;
    this.refreshWindow();
  }

  /** Drop held (undelivered) commands: the connection that carried them is gone. */
  clearHeld(): void {
    this.held.clear();
  }
}

/** All live sessions of the daemon, by TSIH. */
export class SessionRegistry {
  private readonly byTsih = new Map<number, Session>();
  private nextTsih = 1;

  get size(): number {
    return this.byTsih.size;
  }

  all(): IterableIterator<Session> {
    return this.byTsih.values();
  }

  get(tsih: number): Session | undefined {
    return this.byTsih.get(tsih);
  }

  allocateTsih(): number {
    for (let i = 0; i < 0xffff; i++) {
      const t = this.nextTsih;
      this.nextTsih = this.nextTsih >= 0xffff ? 1 : this.nextTsih + 1;
      if (!this.byTsih.has(t)) return t;
    }
    throw new Error('no free TSIH');
  }

  add(s: Session): void {
    this.byTsih.set(s.tsih, s);
  }

  remove(s: Session): void {
    if (this.byTsih.get(s.tsih) === s) this.byTsih.delete(s.tsih);
  }

  /** The session a new login with TSIH 0 would reinstate (same initiator, ISID and target). */
  findForReinstatement(initiatorName: string, isid: Buffer, targetName: string | null): Session | undefined {
    for (const s of this.byTsih.values()) {
      if (
        !s.closed &&
        s.initiatorName.toLowerCase() === initiatorName.toLowerCase() &&
        s.isid.equals(isid) &&
        (s.target?.name ?? null) === targetName
      ) {
        return s;
      }
    }
    return undefined;
  }

  countFor(initiatorName: string): number {
    let n = 0;
    for (const s of this.byTsih.values()) if (s.initiatorName.toLowerCase() === initiatorName.toLowerCase()) n++;
    return n;
  }
}
