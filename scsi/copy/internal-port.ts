/**
 * The copy manager's internal initiator port (CTL's model, reference 2.7),
 * the one way EXTENDED COPY, POPULATE TOKEN and WRITE USING TOKEN touch the
 * medium:
 *
 *  - admission: every piece of copy I/O is admitted by the owning device's
 *    own pipeline checks for an internal READ(16)/WRITE(16) issued on the
 *    originating I_T nexus (LU visibility, CDB, write protect, reservations)
 *    plus the SBC range check, exactly like host I/O, and again for every
 *    step (an ACL, LUN map or reservation change between steps applies);
 *  - a step (writeStep): the destination blocks are one Mutation of the LU
 *    (range lock, so COMPARE AND WRITE stays atomic; the step's admission
 *    runs once the range is held, atomically with the write; the write
 *    guard of point-in-time tokens; store error mapping), and its bytes are
 *    moved by the one data mover (mover.ts) or written as zeros;
 *  - durability: a copy's steps are 'deferred' mutations, made durable once
 *    at the end when the destination is write-through (WCE=0).
 */
import type { ItNexus } from '../types';
import { ScsiStatus } from '../types';
import type { LogicalUnit } from '../logical-unit';
import type { Mutation } from '../mutation';
import { storeErrorToSense } from '../mutation';
import { Opcode } from '../command-entry';
import type { CopyTarget } from './cscd';
import { CopyIoError, moveData, type MoveOptions } from './mover';

export { CopyIoError };

export type CopySide = 'source' | 'destination';

/** An internal command ended with a status other than CHECK CONDITION (RESERVATION CONFLICT). */
export class CopyStatusError extends Error {
  constructor(
    readonly status: ScsiStatus,
    readonly side: CopySide,
  ) {
    super(`internal ${side} command: status ${status}`);
    this.name = 'CopyStatusError';
  }
}

/** An admission error of the internal port, with the side it happened on. */
export class CopySideError extends Error {
  constructor(
    readonly failure: unknown,
    readonly side: CopySide,
  ) {
    super((failure as Error)?.message ?? String(failure));
    this.name = 'CopySideError';
  }
}

function ioCdb(opcode: number, lba: bigint, blocks: bigint): Buffer {
  const cdb = Buffer.alloc(16);
  cdb[0] = opcode;
  cdb.writeBigUInt64BE(lba, 2);
  cdb.writeUInt32BE(Number(blocks > 0xffffffffn ? 0xffffffffn : blocks), 10);
  return cdb;
}

/**
 * Admit one internal command. Throws SenseError (range, write protect, LU
 * not accessible) or CopyStatusError (reservation conflict).
 */
export function admit(target: CopyTarget, nexus: ItNexus, kind: 'read' | 'write' | 'tur', lba = 0n, blocks = 0n): void {
  const side: CopySide = kind === 'write' ? 'destination' : 'source';
  const cdb = kind === 'tur' ? Buffer.alloc(6) : ioCdb(kind === 'write' ? Opcode.WRITE_16 : Opcode.READ_16, lba, blocks);
  if (kind === 'tur') cdb[0] = Opcode.TEST_UNIT_READY;
  const status = target.device.admitCopyIo(nexus, target.lun, cdb);
  if (status !== undefined && status !== ScsiStatus.GOOD) throw new CopyStatusError(status, side);
  if (kind !== 'tur') target.lu.checkRange(lba, blocks); // SBC-4 4.5, as READ/WRITE do
}

/** admit() for the bytes [offset, offset+length) of a side, its errors marked with the side. */
export function admitBytes(target: CopyTarget, nexus: ItNexus, side: CopySide, offset: number, length: number): void {
  const bs = target.lu.blockSize;
  const lba = BigInt(Math.floor(offset / bs));
  const end = BigInt(Math.ceil((offset + length) / bs));
  sided(side, () => admit(target, nexus, side === 'destination' ? 'write' : 'read', lba, end - lba));
}

/** Run `fn`; an error other than a status becomes a CopySideError of `side`. */
export function sided<T>(side: CopySide, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CopyStatusError) throw err;
    throw new CopySideError(err, side);
  }
}

/**
 * One step of a copy into `dst` bytes [offset, offset+length): hold them as
 * one deferred Mutation, run `admitStep` once they are held (both sides'
 * access for this step), then `body`, which writes through the mutation
 * (moveInto, m.writeZeros, ...).
 */
export async function writeStep<T>(dst: LogicalUnit, offset: number, length: number, admitStep: () => void, body: (m: Mutation) => Promise<T>): Promise<T> {
  const m = await dst.mutate(offset, length, 'deferred', admitStep);
  try {
    return await body(m);
  } finally {
    m.release();
  }
}

/** Move bytes of `src` into the held destination of `m` with the data mover. */
export function moveInto(m: Mutation, src: LogicalUnit, srcOffset: number, dstOffset: number, length: number, o: MoveOptions): Promise<unknown> {
  return m.move(dstOffset, length, (store) => moveData(src.store, store, srcOffset, dstOffset, length, o));
}

/** The sense a failed store operation maps to for the side that failed (for forwarded sense). */
export function ioErrorSense(err: CopyIoError): unknown {
  return storeErrorToSense(err.failure, err.side === 'destination');
}
