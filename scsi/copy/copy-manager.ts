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
import { SenseError, encodeSenseError, senseCodes, SenseKey } from '../sense';
import type { CopyParameterList } from './extended-copy';
import { ExtendedCopySa, ListIdUsage } from './extended-copy';
import { designatorMatches, type CopyScope, type CopyTarget, type CopyTargetDevice, type CscdDescriptor, type Designator } from './cscd';
import { planSegment, type SegmentDescriptor, type SegmentEnd, type SegmentPlan } from './segments';
import {
  COPY_CHUNK_BYTES,
  CSCD_ID_THIS_LU,
  CscdType,
  MAX_IDENTIFIED_CONCURRENT_COPIES,
  RETENTION_MS,
  SegmentType,
  TOTAL_CONCURRENT_COPIES,
} from './limits';
import { CopyIoError, CopyStatusError, admit, ioErrorSense, moveBytes, syncIfWriteThrough, writeZeros } from './internal-port';

/** SPC-5 6.18.5 COPY OPERATION STATUS (RECEIVE COPY STATUS(LID4)). */
export const CopyOperationStatus = {
  COMPLETED: 0x01,
  COMPLETED_WITH_ERRORS: 0x02,
  /** PT/WUT only: completed without errors but partial ROD token usage. */
  COMPLETED_PARTIAL: 0x03,
  IN_PROGRESS_FOREGROUND: 0x11,
  IN_PROGRESS_BACKGROUND: 0x12,
  TERMINATED: 0x60,
} as const;

export type CopyState = 'running' | 'completed' | 'failed' | 'aborted';

/** Why a copy stopped early. */
type AbortCause = 'copy-operation-abort' | 'task-aborted' | 'reset';

/** One copy operation, as RECEIVE COPY RESULTS sees it. */
export class CopyOperation {
  state: CopyState = 'running';
  /** Segments completed (SEGMENTS PROCESSED). */
  segmentsProcessed = 0;
  /** Bytes written in strict order (TRANSFER COUNT). */
  bytesTransferred = 0;
  /** TRANSFER COUNT when the current segment started (residuals of a failed segment). */
  segmentStartBytes = 0;
  /** Bytes the whole list moves (progress percentage). */
  totalBytes = 0;
  /** Internal commands that completed GOOD (OPERATION COUNTER, wraps at 16 bits). */
  operationCounter = 0;
  /** SCSI status the operation completed with (EXTENDED COPY COMPLETION STATUS). */
  completionStatus?: ScsiStatus;
  /** The sense of a failure, as sent (RECEIVE COPY FAILURE DETAILS / STATUS(LID4)). */
  failure?: SenseError;
  failureSense?: Buffer;
  abortCause?: AbortCause;
  completedAt = 0;
  /**
   * POPULATE TOKEN / WRITE USING TOKEN (SBC-4): TRANSFER COUNT in logical
   * blocks (units F1h), a partial transfer (COPY OPERATION STATUS 03h) and
   * the ROD token RRTI returns.
   */
  rod?: { blocks: number; partial: boolean; token?: Buffer };
  readonly controller = new AbortController();
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly nexusKey: string,
    readonly lun: number,
    readonly listId: number,
    readonly listIdUsage: number,
    /** Service action of the originating command (RESPONSE TO SERVICE ACTION). */
    readonly serviceAction: number,
    readonly background: boolean,
  ) {}

  /** A list identifier names it (LIST ID USAGE 00b/10b). */
  get identified(): boolean {
    return this.listIdUsage !== ListIdUsage.NONE;
  }

  /** Progress 0..100 (for logs and status consumers). */
  get percent(): number {
    if (this.state === 'completed') return 100;
    return this.totalBytes > 0 ? Math.floor((this.bytesTransferred * 100) / this.totalBytes) : 0;
  }
}

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

/** A segment ready to run: where its bytes come from and go to. */
interface PreparedSegment {
  seg: SegmentDescriptor;
  source: CopyTarget;
  destination?: CopyTarget;
  /** The CSCD descriptors (absent for FFFFh), for segment pointers to a failing CSCD. */
  sourceCscd?: CscdDescriptor;
  destinationCscd?: CscdDescriptor;
  plan?: SegmentPlan;
}

export class CopyManager {
  private readonly ops = new Set<CopyOperation>();
  private readonly logger: Logger;
  private readonly retentionMs: number;
  private sweepTimer?: NodeJS.Timeout;

  constructor(private readonly options: CopyManagerOptions) {
    this.logger = options.logger;
    this.retentionMs = options.retentionMs ?? RETENTION_MS;
  }

  // ---- lookup (RECEIVE COPY RESULTS, COPY OPERATION ABORT) ---------------------

  /** The identified operation `listId` of this nexus on `lun`, if retained. */
  find(nexusKey: string, lun: number, listId: number): CopyOperation | undefined {
    for (const op of this.ops) {
      if (op.identified && op.nexusKey === nexusKey && op.lun === lun && op.listId === listId) return op;
    }
    return undefined;
  }

  /** Discard a completed operation's retained data (read once, failure details sent, ...). */
  discard(op: CopyOperation): void {
    if (op.state !== 'running') this.ops.delete(op);
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
      const old = this.find(nexusKey, lun, op.listId);
      // SPC-5 5.17.4.3: a list identifier in use by an operation in progress -> OPERATION IN PROGRESS.
      if (old && old.state === 'running') throw new SenseError('OPERATION_IN_PROGRESS');
      if (old) this.ops.delete(old); // a completed one: its retained data is discarded, the ID reused
    }
    const running = this.running();
    if (running.length >= TOTAL_CONCURRENT_COPIES || (op.identified && running.filter((o) => o.identified).length >= MAX_IDENTIFIED_CONCURRENT_COPIES)) {
      throw new SenseError('INSUFFICIENT_RESOURCES');
    }
    this.ops.add(op);
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
      prepared = list.segments.map((seg) => this.prepare(nexus, ctx.lun, lu, list, seg));
      op.totalBytes = prepared.reduce((n, p) => n + (p.plan ? p.plan.bytes + p.plan.padBytes : 0), 0);
    } catch (err) {
      this.finish(op, err, log);
      return this.foregroundResult(op);
    }

    return this.launch(ctx, op, log, () => this.process(op, prepared, nexus, log));
  }

  /** What the originating command returns once a foreground operation has ended. */
  private foregroundResult(op: CopyOperation): CommandResult {
    if (op.state === 'completed') return {};
    if (op.abortCause === 'task-aborted' || op.abortCause === 'reset') {
      throw Object.assign(new Error('copy aborted with its task'), { name: 'AbortError' });
    }
    if (op.state === 'failed' && op.completionStatus !== undefined && op.completionStatus !== ScsiStatus.CHECK_CONDITION) {
      return { status: op.completionStatus }; // e.g. RESERVATION CONFLICT from the internal port
    }
    throw op.failure ?? new SenseError('COPY_ABORTED');
  }

  /** CSCD ID -> target (SPC-5 6.6.5.1); an ID that names nothing -> A/08/04 pointing at it. */
  private resolveId(nexus: ItNexus, lun: number, lu: LogicalUnit, list: CopyParameterList, seg: SegmentDescriptor, id: number, pointer: number): { target: CopyTarget; cscd?: CscdDescriptor } {
    if (id === CSCD_ID_THIS_LU) return { target: { device: this.options.device, lun, lu } };
    const cscd = id < list.cscds.length ? list.cscds[id] : undefined;
    if (!cscd) {
      throw new SenseError('COPY_UNREACHABLE_COPY_TARGET', { field: { byte: pointer, cd: false, sd: true }, commandSpecific: seg.index });
    }
    const at = (byte: number) => ({ field: { byte: cscd.offset + byte, cd: false, sd: false }, commandSpecific: seg.index });
    if (cscd.type !== CscdType.IDENTIFICATION || !cscd.designator) {
      // An extension (FFh) is no CSCD of its own (reference 2.8).
      throw new SenseError('COPY_INVALID_FIELD_IN_PARAMETER_LIST', { field: { byte: pointer, cd: false, sd: true }, commandSpecific: seg.index });
    }
    // Only LUs the issuing I_T nexus may access (the ACLs); anything else is not reachable.
    const target = this.scope(nexus, cscd);
    if (!target) throw new SenseError('COPY_TARGET_DEVICE_NOT_REACHABLE', at(0));
    if (cscd.peripheralDeviceType !== 0x00) throw new SenseError('COPY_INCORRECT_TARGET_DEVICE_TYPE', at(1));
    // A DISK BLOCK LENGTH other than the LU's: the descriptor is wrong (reference 2.6).
    if (cscd.diskBlockLength !== 0 && cscd.diskBlockLength !== target.lu.blockSize) {
      throw new SenseError('COPY_INVALID_FIELD_IN_PARAMETER_LIST', at(29));
    }
    return { target, cscd };
  }

  private scope(nexus: ItNexus, cscd: CscdDescriptor): CopyTarget | undefined {
    return this.resolve(nexus, cscd.designator!);
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

  private prepare(nexus: ItNexus, lun: number, lu: LogicalUnit, list: CopyParameterList, seg: SegmentDescriptor): PreparedSegment {
    const src = this.resolveId(nexus, lun, lu, list, seg, seg.sourceId, 4);
    if (seg.type === SegmentType.VERIFY_CSCD) return { seg, source: src.target, sourceCscd: src.cscd };
    const dst = this.resolveId(nexus, lun, lu, list, seg, seg.destinationId, 6);
    const end = (r: { target: CopyTarget; cscd?: CscdDescriptor }): SegmentEnd => ({
      lu: r.target.lu,
      blockSize: r.target.lu.blockSize,
      pad: r.cscd?.pad ?? false,
    });
    return {
      seg,
      source: src.target,
      destination: dst.target,
      sourceCscd: src.cscd,
      destinationCscd: dst.cscd,
      plan: planSegment(seg, end(src), end(dst)),
    };
  }

  /** Process the segments in order (SPC-5 5.17.7.5), chunk by chunk. */
  private async process(op: CopyOperation, prepared: PreparedSegment[], nexus: ItNexus, log: Logger): Promise<void> {
    const signal = op.controller.signal;
    for (const p of prepared) {
      if (signal.aborted) throw signal.reason;
      const { seg } = p;
      op.segmentStartBytes = op.bytesTransferred;
      try {
        if (seg.type === SegmentType.VERIFY_CSCD) {
          // 07h: TUR=1 sends TEST UNIT READY; TUR=0 only checks the CSCD is reachable (done when resolved).
          if (seg.tur) sided('source', () => admit(p.source, nexus, 'tur'));
          op.operationCounter = (op.operationCounter + 1) & 0xffff;
        } else {
          await this.moveSegment(op, p, nexus);
        }
      } catch (err) {
        throw withSegment(err, p, op);
      }
      op.segmentsProcessed++;
    }
  }

  private async moveSegment(op: CopyOperation, p: PreparedSegment, nexus: ItNexus): Promise<void> {
    const plan = p.plan!;
    const src = p.source;
    const dst = p.destination!;
    const signal = op.controller.signal;
    const sbs = src.lu.blockSize;
    const dbs = dst.lu.blockSize;
    const start = op.bytesTransferred;
    const overlapBackwards =
      src.lu === dst.lu && plan.destinationOffset > plan.sourceOffset && plan.sourceOffset + plan.bytes > plan.destinationOffset;
    // Whole chunks end on a destination block boundary so each internal WRITE is whole blocks.
    const chunk = Math.max(dbs, COPY_CHUNK_BYTES - (COPY_CHUNK_BYTES % dbs));
    const count = Math.ceil(plan.bytes / chunk);
    for (let k = 0; k < count; k++) {
      if (signal.aborted) throw signal.reason;
      const i = overlapBackwards ? count - 1 - k : k; // memmove order when an overlapping destination follows
      const at = i * chunk;
      const n = Math.min(chunk, plan.bytes - at);
      const so = plan.sourceOffset + at;
      const dO = plan.destinationOffset + at;
      const sLba = BigInt(Math.floor(so / sbs));
      const dLba = BigInt(Math.floor(dO / dbs));
      sided('source', () => admit(src, nexus, 'read', sLba, BigInt(Math.ceil((so + n) / sbs)) - sLba));
      sided('destination', () => admit(dst, nexus, 'write', dLba, BigInt(Math.ceil((dO + n) / dbs)) - dLba));
      const before = op.bytesTransferred;
      await moveBytes(src.lu, dst.lu, so, dO, n, {
        signal,
        onProgress: (b) => {
          if (!overlapBackwards) op.bytesTransferred = before + b;
        },
      });
      op.bytesTransferred = before + n;
      op.operationCounter = (op.operationCounter + 2) & 0xffff; // one READ and one WRITE
    }
    if (plan.padBytes > 0) {
      await writeZeros(dst.lu, plan.destinationOffset + plan.bytes, plan.padBytes);
      op.bytesTransferred += plan.padBytes;
    }
    await syncIfWriteThrough(dst.lu);
    op.bytesTransferred = start + plan.bytes + plan.padBytes;
  }

  /** Record how an operation ended; keep the sense for RECEIVE COPY RESULTS. */
  private finish(op: CopyOperation, err: unknown, log: Logger): void {
    op.completedAt = Date.now();
    if (err === undefined) {
      op.state = 'completed';
      op.completionStatus = ScsiStatus.GOOD;
      // One line per copy with its outcome (issue 6); ESXi's and Windows' copies are mostly foreground.
      log.info({ bytes: op.bytesTransferred, segments: op.segmentsProcessed }, op.background ? 'background copy completed' : 'copy completed');
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
    if (!op.identified) this.ops.delete(op);
    else this.scheduleSweep();
  }

  // ---- aborts, resets, nexus loss ------------------------------------------------

  private abortOp(op: CopyOperation, cause: AbortCause): void {
    if (op.state !== 'running' || op.controller.signal.aborted) return;
    op.abortCause = cause;
    op.controller.abort(Object.assign(new Error(`copy aborted: ${cause}`), { name: 'AbortError' }));
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
    for (const op of [...this.ops]) if (op.state !== 'running' && (lun === undefined || op.lun === lun)) this.ops.delete(op);
  }

  /** I_T nexus loss: retained results of that nexus are discarded; running copies continue (SPC-5 5.17.4.4). */
  nexusLost(nexusKey: string): void {
    for (const op of [...this.ops]) if (op.nexusKey === nexusKey && op.state !== 'running') this.ops.delete(op);
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
      for (const op of [...this.ops]) if (op.state !== 'running' && now - op.completedAt >= this.retentionMs) this.ops.delete(op);
      if (![...this.ops].some((o) => o.state !== 'running')) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = undefined;
      }
    }, every);
    this.sweepTimer.unref();
  }
}

/**
 * Attach the segment to a failure (reference 2.8): CSI = segment number;
 * INFORMATION = residual destination blocks when part of the segment was
 * written; I/O failures become THIRD PARTY DEVICE FAILURE pointing (SD=0) at
 * the CSCD descriptor that failed.
 */
function withSegment(err: unknown, p: PreparedSegment, op: CopyOperation): unknown {
  if (err instanceof CopyStatusError) return err;
  if (isAbort(err)) return err;
  const segIndex = p.seg.index;
  if (err instanceof SenseError && senseCodes(err.reason).key === SenseKey.COPY_ABORTED) {
    return err.commandSpecific === undefined ? new SenseError(err.reason, { field: err.field, information: err.information, commandSpecific: segIndex }) : err;
  }
  // Which CSCD failed: the side of a store error; an admission error names its side too.
  let side: 'source' | 'destination' = 'destination';
  if (err instanceof CopyIoError) side = err.side;
  else if (err instanceof CopySideError) side = err.side;
  const cause = err instanceof CopySideError ? err.failure : err instanceof CopyIoError ? ioErrorSense(err) : err;
  const options: ConstructorParameters<typeof SenseError>[1] = { commandSpecific: segIndex };
  const cscd = side === 'source' ? p.sourceCscd : p.destinationCscd;
  if (cscd) options.field = { byte: cscd.offset, cd: false, sd: false };
  const written = op.bytesTransferred - op.segmentStartBytes;
  if (p.plan && written > 0) {
    const dbs = p.destination!.lu.blockSize;
    const residual = Math.ceil((p.plan.bytes + p.plan.padBytes) / dbs) - Math.floor(written / dbs);
    if (residual > 0) options.information = residual;
  }
  // The LU is no longer accessible to the nexus (ACL or LUN map changed mid-copy).
  if (cause instanceof SenseError && cause.reason === 'LOGICAL_UNIT_NOT_SUPPORTED') {
    return new SenseError('COPY_TARGET_DEVICE_NOT_REACHABLE', options);
  }
  if (!(cause instanceof SenseError) && !(err instanceof CopyIoError)) return err; // a bug: INTERNAL TARGET FAILURE path
  return new SenseError('COPY_THIRD_PARTY_DEVICE_FAILURE', options);
}

/** An admission error of the internal port, with the side it happened on. */
export class CopySideError extends Error {
  constructor(
    readonly failure: unknown,
    readonly side: 'source' | 'destination',
  ) {
    super((failure as Error)?.message ?? String(failure));
    this.name = 'CopySideError';
  }
}

function sided(side: 'source' | 'destination', fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (err instanceof CopyStatusError) throw err;
    throw new CopySideError(err, side);
  }
}

function isAbort(err: unknown): boolean {
  return (err as Error | undefined)?.name === 'AbortError';
}

/** The copy manager of the device a command runs on. */
export function copyManagerOf(ctx: CommandContext): CopyManager {
  const m = ctx.device.copyManager;
  if (!m) throw new SenseError('INVALID_COMMAND_OPERATION_CODE');
  return m;
}
