/**
 * The segment runner of EXTENDED COPY (SPC-5 5.17.7; reference 2.6-2.8):
 * resolve every segment's CSCDs and byte ranges before a byte moves, then
 * process the segments in order, each in steps through the internal port
 * (per-step admission of both sides, the destination's mutation path, the
 * one data mover), and turn a failure into the COPY ABORTED sense that
 * names the segment, the CSCD and the residual.
 */
import type { LogicalUnit } from '../logical-unit';
import type { ItNexus } from '../types';
import { SenseError, senseCodes, SenseKey } from '../sense';
import { abortReason, isAbortError } from '../abort';
import type { CopyParameterList } from './extended-copy';
import type { CopyOperation } from './copy-operation';
import type { CopyTarget, CopyTargetDevice, CscdDescriptor, Designator } from './cscd';
import { planSegment, type SegmentDescriptor, type SegmentEnd, type SegmentPlan } from './segments';
import { CSCD_ID_THIS_LU, CscdType, SegmentType } from './limits';
import { CopyIoError, CopySideError, CopyStatusError, admit, admitBytes, ioErrorSense, moveInto, sided, writeStep } from './internal-port';

/** A segment ready to run: where its bytes come from and go to. */
export interface PreparedSegment {
  seg: SegmentDescriptor;
  source: CopyTarget;
  destination?: CopyTarget;
  /** The CSCD descriptors (absent for FFFFh), for segment pointers to a failing CSCD. */
  sourceCscd?: CscdDescriptor;
  destinationCscd?: CscdDescriptor;
  plan?: SegmentPlan;
}

/** What the runner needs of the command: who sent it, to which LU, and how designators resolve for that nexus. */
export interface SegmentContext {
  nexus: ItNexus;
  lun: number;
  lu: LogicalUnit;
  device: CopyTargetDevice;
  resolve: (nexus: ItNexus, want: Designator) => CopyTarget | undefined;
}

/** Resolve every segment of `list` (an error here leaves the media untouched: COPY ABORTED naming the segment). */
export function prepareSegments(c: SegmentContext, list: CopyParameterList): PreparedSegment[] {
  return list.segments.map((seg) => prepare(c, list, seg));
}

/** CSCD ID -> target (SPC-5 6.6.5.1); an ID that names nothing -> A/08/04 pointing at it. */
function resolveId(c: SegmentContext, list: CopyParameterList, seg: SegmentDescriptor, id: number, pointer: number): { target: CopyTarget; cscd?: CscdDescriptor } {
  if (id === CSCD_ID_THIS_LU) return { target: { device: c.device, lun: c.lun, lu: c.lu } };
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
  const target = c.resolve(c.nexus, cscd.designator);
  if (!target) throw new SenseError('COPY_TARGET_DEVICE_NOT_REACHABLE', at(0));
  if (cscd.peripheralDeviceType !== 0x00) throw new SenseError('COPY_INCORRECT_TARGET_DEVICE_TYPE', at(1));
  // A DISK BLOCK LENGTH other than the LU's: the descriptor is wrong (reference 2.6).
  if (cscd.diskBlockLength !== 0 && cscd.diskBlockLength !== target.lu.blockSize) {
    throw new SenseError('COPY_INVALID_FIELD_IN_PARAMETER_LIST', at(29));
  }
  return { target, cscd };
}

function prepare(c: SegmentContext, list: CopyParameterList, seg: SegmentDescriptor): PreparedSegment {
  const src = resolveId(c, list, seg, seg.sourceId, 4);
  if (seg.type === SegmentType.VERIFY_CSCD) return { seg, source: src.target, sourceCscd: src.cscd };
  const dst = resolveId(c, list, seg, seg.destinationId, 6);
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

/** Process the segments in order (SPC-5 5.17.7.5), each in steps of at most `stepBytes`. */
export async function runSegments(op: CopyOperation, prepared: PreparedSegment[], nexus: ItNexus, stepBytes: number): Promise<void> {
  const signal = op.controller.signal;
  for (const p of prepared) {
    if (signal.aborted) throw abortReason(signal, 'copy aborted');
    const { seg } = p;
    op.segmentStartBytes = op.bytesTransferred;
    try {
      if (seg.type === SegmentType.VERIFY_CSCD) {
        // 07h: TUR=1 sends TEST UNIT READY; TUR=0 only checks the CSCD is reachable (done when resolved).
        if (seg.tur) sided('source', () => admit(p.source, nexus, 'tur'));
        op.operationCounter = (op.operationCounter + 1) & 0xffff;
      } else {
        await moveSegment(op, p, nexus, stepBytes);
      }
    } catch (err) {
      throw withSegment(err, p, op);
    }
    op.segmentsProcessed++;
  }
}

async function moveSegment(op: CopyOperation, p: PreparedSegment, nexus: ItNexus, stepBytes: number): Promise<void> {
  const plan = p.plan!;
  const src = p.source;
  const dst = p.destination!;
  const signal = op.controller.signal;
  const dbs = dst.lu.blockSize;
  const start = op.bytesTransferred;
  // memmove: an overlapping destination above its source in one store is walked from the end
  // (each step's own overlap is the mover's: the kernel path handles it like memmove).
  const backwards =
    src.lu.store === dst.lu.store && plan.destinationOffset > plan.sourceOffset && plan.sourceOffset + plan.bytes > plan.destinationOffset;
  // Whole steps end on a destination block boundary so each internal WRITE is whole blocks.
  const step = Math.max(dbs, stepBytes - (stepBytes % dbs));
  const count = Math.ceil(plan.bytes / step);
  for (let k = 0; k < count; k++) {
    if (signal.aborted) throw abortReason(signal, 'copy aborted');
    const at = (backwards ? count - 1 - k : k) * step;
    const n = Math.min(step, plan.bytes - at);
    const so = plan.sourceOffset + at;
    const dO = plan.destinationOffset + at;
    const before = op.bytesTransferred;
    const admitStep = (): void => {
      admitBytes(src, nexus, 'source', so, n);
      admitBytes(dst, nexus, 'destination', dO, n);
    };
    await writeStep(dst.lu, dO, n, admitStep, (m) =>
      moveInto(m, src.lu, so, dO, n, {
        signal,
        onProgress: (b) => {
          if (!backwards) op.bytesTransferred = before + b;
        },
      }),
    );
    op.bytesTransferred = before + n;
    op.operationCounter = (op.operationCounter + 2) & 0xffff; // one READ and one WRITE
  }
  if (plan.padBytes > 0) {
    // PAD (SPC-5 6.6.4.2): zeros to the end of the destination block, through the same port.
    const at = plan.destinationOffset + plan.bytes;
    await writeStep(dst.lu, at, plan.padBytes, () => admitBytes(dst, nexus, 'destination', at, plan.padBytes), (m) => m.writeZeros(at, plan.padBytes));
    op.bytesTransferred += plan.padBytes;
  }
  await dst.lu.syncIfWriteThrough();
  op.bytesTransferred = start + plan.bytes + plan.padBytes;
}

/**
 * Attach the segment to a failure (reference 2.8): CSI = segment number;
 * INFORMATION = residual destination blocks when part of the segment was
 * written; I/O failures become THIRD PARTY DEVICE FAILURE pointing (SD=0) at
 * the CSCD descriptor that failed.
 */
function withSegment(err: unknown, p: PreparedSegment, op: CopyOperation): unknown {
  if (err instanceof CopyStatusError) return err;
  if (isAbortError(err)) return err;
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
