/**
 * The copy manager of one SCSI device (SPC-5 5.17; reference 2.2, 2.7, 2.8):
 * copy operations named by list identifier per I_T nexus per LU, foreground
 * and background (IMMED=1) execution with progress, COPY OPERATION ABORT,
 * task-management aborts and LU resets that stop the copy I/O before the
 * command ends, and the retention of completed operations' status.
 */
import type { Logger } from 'pino';
import type { CommandContext, CommandResult } from '../command-context';
import type { LogicalUnit } from '../logical-unit';
import type { ItNexus } from '../types';
import { ScsiStatus } from '../types';
import { SenseError, encodeSenseError } from '../sense';
import { AbortError } from '../abort';
import type { CopyParameterList } from './extended-copy';
import { ExtendedCopySa, ListIdUsage } from './extended-copy';
import { designatorMatches, type CopyScope, type CopyTarget, type CopyTargetDevice, type Designator } from './cscd';
import { COPY_CHUNK_BYTES, MAX_IDENTIFIED_CONCURRENT_COPIES, RETENTION_MS, TOTAL_CONCURRENT_COPIES } from './limits';
import { CopyStatusError } from './internal-port';
import { CopyOperation, type AbortCause } from './copy-operation';
import { prepareSegments, runSegments, type PreparedSegment } from './segment-runner';

export { CopyOperation, CopyOperationStatus, type CopyState } from './copy-operation';

export interface CopyManagerOptions {
  logger: Logger;
  /** This device, for CSCD ID FFFFh and the default scope. */
  device: CopyTargetDevice & { unitsFor(nexus: ItNexus): LogicalUnit[] };
  /** Resolve designators across the daemon; default: the LUs of this device that the nexus sees. */
  scope?: CopyScope;
  /** Retention of completed operations (ms). */
  retentionMs?: number;
  /** Told once when an operation has ended, with its final state (metrics; composer: src/metrics.ts). */
  onFinished?: (op: CopyOperation) => void;
}

/** The key of an identified operation: nexus, LUN, list identifier. */
function idKey(nexusKey: string, lun: number, listId: number): string {
  return `${listId}|${lun}|${nexusKey}`;
}

export class CopyManager {
  private readonly ops = new Set<CopyOperation>();
  /**
   * The identified operations by idKey, oldest first (the same ops as in `ops`):
   * admission and lookup without walking every retained operation (Windows' list
   * identifiers never repeat, so a minute's retention holds thousands; issue 12).
   */
  private readonly byId = new Map<string, CopyOperation[]>();
  /** Operations running now, and how many of them are identified (the concurrency limits). */
  private runningCount = 0;
  private runningIdentified = 0;
  /** Outcome lines waiting for the status to go out (logLater). */
  private pendingLogs: Array<() => void> = [];
  private readonly logger: Logger;
  private readonly retentionMs: number;
  private sweepTimer?: NodeJS.Timeout;
  /** Bytes per internal step of EXTENDED COPY (tunable: tests, operators). */
  chunkBytes = COPY_CHUNK_BYTES;

  constructor(private readonly options: CopyManagerOptions) {
    this.logger = options.logger;
    this.retentionMs = options.retentionMs ?? RETENTION_MS;
  }

  // ---- lookup (RECEIVE COPY RESULTS, COPY OPERATION ABORT) ---------------------

  /** The identified operation `listId` of this nexus on `lun`, if retained. */
  find(nexusKey: string, lun: number, listId: number): CopyOperation | undefined {
    // The newest, when LIST ID USAGE 10b copies share an identifier (admitOperation).
    const same = this.byId.get(idKey(nexusKey, lun, listId));
    return same?.[same.length - 1];
  }

  /** Discard a completed operation's retained data (read once, failure details sent, ...). */
  discard(op: CopyOperation): void {
    if (op.state !== 'running') this.forget(op);
  }

  /** Track `op` (admitted). */
  private track(op: CopyOperation): void {
    this.ops.add(op);
    this.runningCount++;
    if (op.identified) {
      this.runningIdentified++;
      const k = idKey(op.nexusKey, op.lun, op.listId);
      const same = this.byId.get(k);
      if (same) same.push(op);
      else this.byId.set(k, [op]);
    }
  }

  /** Drop `op` and its retained data. */
  private forget(op: CopyOperation): void {
    if (!this.ops.delete(op)) return;
    if (op.state === 'running') {
      this.runningCount--;
      if (op.identified) this.runningIdentified--;
    }
    if (!op.identified) return;
    const k = idKey(op.nexusKey, op.lun, op.listId);
    const same = this.byId.get(k);
    if (!same) return;
    const at = same.indexOf(op);
    if (at >= 0) same.splice(at, 1);
    if (same.length === 0) this.byId.delete(k);
  }

  /** Operations currently running (tests, concurrency). */
  running(): CopyOperation[] {
    return [...this.ops].filter((o) => o.state === 'running');
  }

  // ---- originating commands ---------------------------------------------------

  /**
   * Originate a tracked operation other than EXTENDED COPY (POPULATE TOKEN,
   * WRITE USING TOKEN: LIST ID USAGE 00b): the list identifier rules,
   * concurrency limits, IMMED (background) or foreground with task aborts,
   * COPY OPERATION ABORT, and the retained status RRTI reads. `body` does
   * the work; it watches `op.controller.signal`.
   */
  async runTracked(
    ctx: CommandContext,
    o: { listId: number; serviceAction: number; immed: boolean; totalBytes?: number },
    body: (op: CopyOperation, log: Logger) => Promise<void>,
  ): Promise<CommandResult> {
    const nexus = ctx.task.nexus;
    const op = new CopyOperation(nexus.key, ctx.lun, o.listId, ListIdUsage.RETAIN, o.serviceAction, o.immed);
    op.rod = { blocks: 0, partial: false };
    op.totalBytes = o.totalBytes ?? 0;
    this.admitOperation(op, nexus.key, ctx.lun);
    const log = this.logger.child({ copy: o.listId, sa: o.serviceAction, lun: ctx.lun, initiator: nexus.initiatorPortName });
    return this.launch(ctx, op, log, () => body(op, log));
  }

  /** The list identifier is free (SPC-5 5.17.4.3) and the limits allow one more: track `op`. */
  private admitOperation(op: CopyOperation, nexusKey: string, lun: number): void {
    if (op.identified) {
      const same = [...(this.byId.get(idKey(nexusKey, lun, op.listId)) ?? [])];
      const inProgress = same.filter((o) => o.state === 'running');
      // SPC-5 5.17.4.3: a list identifier in use by an operation in progress -> OPERATION IN PROGRESS.
      // Except between copies with LIST ID USAGE 10b, whose initiator will not ask for their results:
      // QEMU sends list ID 1 with 10b every time, and qemu-img convert -C -W overlaps copies (issue 11).
      const noResultsWanted = (o: CopyOperation): boolean => o.listIdUsage === ListIdUsage.NO_HELD_DATA;
      if (inProgress.length > 0 && !(noResultsWanted(op) && inProgress.every(noResultsWanted))) throw new SenseError('OPERATION_IN_PROGRESS');
      for (const old of same) if (old.state !== 'running') this.forget(old); // completed: retained data discarded, the ID reused
    }
    if (this.runningCount >= TOTAL_CONCURRENT_COPIES || (op.identified && this.runningIdentified >= MAX_IDENTIFIED_CONCURRENT_COPIES)) {
      throw new SenseError('INSUFFICIENT_RESOURCES');
    }
    this.track(op);
  }

  /** Run `work` for `op` in the background (IMMED=1) or in the foreground, and record how it ended. */
  private async launch(ctx: CommandContext, op: CopyOperation, log: Logger, work: () => Promise<void>): Promise<CommandResult> {
    const run = async (): Promise<void> => {
      try {
        await work();
        this.finish(op, undefined, log);
      } catch (err) {
        this.finish(op, err, log);
      }
    };
    if (op.background) {
      // SPC-5 6.6.3 / SBC-4 IMMED=1: GOOD now; the outcome is reported by RECEIVE COPY STATUS(LID4) / RRTI.
      op.done = run();
      log.info({ bytes: op.totalBytes }, 'background copy started');
      return {};
    }
    // Foreground: a task abort (ABORT TASK, LU reset, ...) stops the copy I/O, and the
    // command does not end before the I/O has stopped.
    const onAbort = (): void => this.abortOp(op, 'task-aborted');
    if (ctx.signal.aborted) onAbort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      op.done = run();
      await op.done;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
    }
    return this.foregroundResult(op);
  }

  /** Run a decoded EXTENDED COPY list for the command in `ctx`. */
  async originate(ctx: CommandContext, list: CopyParameterList): Promise<CommandResult> {
    const nexus = ctx.task.nexus;
    const lu = ctx.lu!;
    const sa = list.lid4 ? ExtendedCopySa.LID4 : ExtendedCopySa.LID1;
    const op = new CopyOperation(nexus.key, ctx.lun, list.listId, list.listIdUsage, sa, list.lid4 && list.immed);
    this.admitOperation(op, nexus.key, ctx.lun);
    const log = this.logger.child({ copy: list.listId, lid4: list.lid4, lun: ctx.lun, initiator: nexus.initiatorPortName });

    // Resolve every segment's CSCDs and ranges before a byte moves: an error found
    // here leaves the media untouched (COPY ABORTED naming the segment).
    let prepared: PreparedSegment[];
    try {
      prepared = prepareSegments({ nexus, lun: ctx.lun, lu, device: this.options.device, resolve: (n, d) => this.resolve(n, d) }, list);
      op.totalBytes = prepared.reduce((n, p) => n + (p.plan ? p.plan.bytes + p.plan.padBytes : 0), 0);
    } catch (err) {
      this.finish(op, err, log);
      return this.foregroundResult(op);
    }

    return this.launch(ctx, op, log, () => runSegments(op, prepared, nexus, this.chunkBytes));
  }

  /** What the originating command returns once a foreground operation has ended. */
  private foregroundResult(op: CopyOperation): CommandResult {
    if (op.state === 'completed') return {};
    if (op.abortCause === 'task-aborted' || op.abortCause === 'reset') {
      throw new AbortError('copy aborted with its task');
    }
    if (op.state === 'failed' && op.completionStatus !== undefined && op.completionStatus !== ScsiStatus.CHECK_CONDITION) {
      return { status: op.completionStatus }; // e.g. RESERVATION CONFLICT from the internal port
    }
    throw op.failure ?? new SenseError('COPY_ABORTED');
  }

  /** The LU a command of this device addresses as `lun`, as a copy target (CSCD ID FFFFh, a WUT's destination). */
  own(lun: number, lu: LogicalUnit): CopyTarget {
    return { device: this.options.device, lun, lu };
  }

  /** The LU `want` names, if the nexus may access it (the copy scope: ACLs, LUN masking). */
  resolve(nexus: ItNexus, want: Designator): CopyTarget | undefined {
    if (this.options.scope) return this.options.scope(nexus, want);
    const device = this.options.device;
    // unitsFor, not lunsFor: with a LUN map the nexus's numbers are not the LUs' own.
    for (const lu of device.unitsFor(nexus)) {
      if (designatorMatches(lu, want)) return { device, lun: lu.lun, lu };
    }
    return undefined;
  }

  /** Record how an operation ended; keep the sense for RECEIVE COPY RESULTS. */
  private finish(op: CopyOperation, err: unknown, log: Logger): void {
    if (op.state !== 'running') return;
    this.runningCount--;
    if (op.identified) this.runningIdentified--;
    op.completedAt = Date.now();
    if (err === undefined) {
      op.state = 'completed';
      op.completionStatus = ScsiStatus.GOOD;
      // One line per copy with its outcome (issue 6); ESXi's and Windows' copies are mostly foreground.
      const bytes = op.bytesTransferred;
      const segments = op.segmentsProcessed;
      this.logLater(() => log.info({ bytes, segments }, op.background ? 'background copy completed' : 'copy completed'));
    } else if (op.controller.signal.aborted) {
      op.state = 'aborted';
      op.completionStatus = ScsiStatus.TASK_ABORTED;
      if (op.abortCause === 'copy-operation-abort') {
        // SPC-5 6.5: a foreground originating command ends with A/2F/02.
        op.failure = new SenseError('COPY_COMMAND_CLEARED_BY_DEVICE_SERVER', { commandSpecific: op.segmentsProcessed });
      }
      log.info({ cause: op.abortCause, bytes: op.bytesTransferred, segments: op.segmentsProcessed }, 'copy aborted');
    } else if (err instanceof CopyStatusError) {
      op.state = 'failed';
      op.completionStatus = err.status;
      log.info({ status: err.status, side: err.side }, 'copy ended by internal command status');
    } else {
      op.state = 'failed';
      op.completionStatus = ScsiStatus.CHECK_CONDITION;
      if (err instanceof SenseError) {
        op.failure = err;
      } else {
        log.error({ err }, 'copy failed unexpectedly');
        op.failure = new SenseError('COPY_ABORTED', { commandSpecific: op.segmentsProcessed });
      }
      log.info({ reason: op.failure.reason, segment: op.failure.commandSpecific, bytes: op.bytesTransferred }, 'copy failed');
    }
    if (op.failure) op.failureSense = encodeSenseError(op.failure);
    this.options.onFinished?.(op);
    // LIST ID USAGE 11b: nothing is retained.
    if (!op.identified) this.forget(op);
    else this.scheduleSweep();
  }

  /**
   * Write an outcome line once the command's status is on its way: a line is a
   * synchronous write(2) of pino's destination, which used to delay the status
   * PDU of every copy by its duration (issue 12). The status of a command that
   * ends in this turn is sent when the connection uncorks, in a setImmediate
   * queued after this microtask queue drains (iscsi/pdu-writer.ts); a nextTick
   * runs after that drain, so its setImmediate comes after the uncork in the
   * same check phase: the line is written right after the status, before any
   * later I/O callback (so before an initiator in this process reads it).
   */
  private logLater(line: () => void): void {
    this.pendingLogs.push(line);
    if (this.pendingLogs.length > 1) return;
    process.nextTick(() =>
      setImmediate(() => {
        const lines = this.pendingLogs;
        this.pendingLogs = [];
        for (const l of lines) l();
      }),
    );
  }

  // ---- aborts, resets, nexus loss ------------------------------------------------

  private abortOp(op: CopyOperation, cause: AbortCause): void {
    if (op.state !== 'running' || op.controller.signal.aborted) return;
    op.abortCause = cause;
    op.controller.abort(new AbortError(`copy aborted: ${cause}`));
  }

  /**
   * COPY OPERATION ABORT (SPC-5 6.5): stop an operation in progress; resolves
   * once its internal I/O has stopped. False if none is in progress.
   */
  async abortOperation(nexusKey: string, lun: number, listId: number): Promise<boolean> {
    const op = this.find(nexusKey, lun, listId);
    if (!op || op.state !== 'running') return false;
    this.abortOp(op, 'copy-operation-abort');
    await op.done;
    return true;
  }

  /** LU reset / target reset (SAM-5 6.3): abort every copy of the LUN (all LUNs if undefined), wait for its I/O. */
  async reset(lun?: number): Promise<void> {
    const hit = [...this.ops].filter((o) => o.state === 'running' && (lun === undefined || o.lun === lun));
    for (const op of hit) this.abortOp(op, 'reset');
    await Promise.all(hit.map((o) => o.done));
    // Reference 2.2: a reset also discards retained results.
    for (const op of [...this.ops]) if (op.state !== 'running' && (lun === undefined || op.lun === lun)) this.forget(op);
  }

  /** I_T nexus loss: retained results of that nexus are discarded; running copies continue (SPC-5 5.17.4.4). */
  nexusLost(nexusKey: string): void {
    for (const op of [...this.ops]) if (op.nexusKey === nexusKey && op.state !== 'running') this.forget(op);
  }

  /** Stop everything (device close). */
  async close(): Promise<void> {
    await this.reset();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /** One coarse timer drops completed operations older than the retention time. */
  private scheduleSweep(): void {
    if (this.sweepTimer) return;
    const every = Math.max(10, Math.min(10_000, this.retentionMs));
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      for (const op of [...this.ops]) if (op.state !== 'running' && now - op.completedAt >= this.retentionMs) this.forget(op);
      if (![...this.ops].some((o) => o.state !== 'running')) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = undefined;
      }
    }, every);
    this.sweepTimer.unref();
  }
}

/** The copy manager of the device a command runs on. */
export function copyManagerOf(ctx: CommandContext): CopyManager {
  const m = ctx.device.copyManager;
  if (!m) throw new SenseError('INVALID_COMMAND_OPERATION_CODE');
  return m;
}
