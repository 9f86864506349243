/**
 * The copy manager's internal initiator port (CTL's model, reference 2.7):
 * every piece of copy I/O is admitted by the owning device's own pipeline
 * checks for an internal READ(16)/WRITE(16) issued on the originating I_T
 * nexus (LU visibility, CDB, write protect, reservations) plus the SBC range
 * check, exactly like host I/O. The bytes then move inside the kernel through
 * BackingStore.copyRange, or through read/write when a store has no
 * copyRange (the fallback for stores without it), never over the wire.
 */
import type { ItNexus } from '../types';
import { ScsiStatus } from '../types';
import type { LogicalUnit } from '../logical-unit';
import { storeErrorToSense } from '../logical-unit';
import type { CopyTarget } from './cscd';

const READ_16 = 0x88;
const WRITE_16 = 0x8a;
const TEST_UNIT_READY = 0x00;
/** Buffer size of the read/write fallback (and of overlapping copies inside one store). */
export const FALLBACK_BUFFER_BYTES = 1024 * 1024;

/** An internal command ended with a status other than CHECK CONDITION (RESERVATION CONFLICT). */
export class CopyStatusError extends Error {
  constructor(
    readonly status: ScsiStatus,
    readonly side: 'source' | 'destination',
  ) {
    super(`internal ${side} command: status ${status}`);
    this.name = 'CopyStatusError';
  }
}

/** A store failure during copy I/O, with the side it happened on (forwarded-sense source). */
export class CopyIoError extends Error {
  constructor(
    readonly failure: unknown,
    readonly side: 'source' | 'destination',
  ) {
    super(`copy ${side} I/O failed: ${(failure as Error)?.message ?? String(failure)}`);
    this.name = 'CopyIoError';
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
  const side = kind === 'write' ? 'destination' : 'source';
  const cdb = kind === 'tur' ? Buffer.alloc(6) : ioCdb(kind === 'write' ? WRITE_16 : READ_16, lba, blocks);
  if (kind === 'tur') cdb[0] = TEST_UNIT_READY;
  const status = target.device.admitCopyIo(nexus, target.lun, cdb);
  if (status !== undefined && status !== ScsiStatus.GOOD) throw new CopyStatusError(status, side);
  if (kind !== 'tur') target.lu.checkRange(lba, blocks); // SBC-4 4.5, as READ/WRITE do
}

export interface MoveOptions {
  signal: AbortSignal;
  /** Bytes of this move done so far. */
  onProgress: (bytes: number) => void;
}

function abortError(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : Object.assign(new Error('copy aborted'), { name: 'AbortError' });
}

/**
 * Move `length` bytes from src to dst. The destination block range is held in
 * its LU's write lock so the copy is atomic with respect to COMPARE AND WRITE
 * and ordered with other writes to those blocks.
 */
export async function moveBytes(src: LogicalUnit, dst: LogicalUnit, srcOffset: number, dstOffset: number, length: number, o: MoveOptions): Promise<void> {
  if (length === 0) return;
  if (o.signal.aborted) throw abortError(o.signal);
  const bs = BigInt(dst.blockSize);
  const firstLba = BigInt(dstOffset) / bs;
  const lastLba = (BigInt(dstOffset + length) + bs - 1n) / bs;
  const release = await dst.writeLock.acquire(firstLba, lastLba - firstLba);
  try {
    await dst.beforeWrite(dstOffset, length); // point-in-time tokens covering the destination save first
    const sameStore = src.store === dst.store;
    const overlaps = sameStore && srcOffset < dstOffset + length && dstOffset < srcOffset + length;
    if (!overlaps && src.store.copyRange) {
      try {
        await src.store.copyRange(dst.store, srcOffset, dstOffset, length, { signal: o.signal, onProgress: o.onProgress });
      } catch (err) {
        if (o.signal.aborted) throw abortError(o.signal);
        throw new CopyIoError(err, 'destination');
      }
    } else {
      await bufferedMove(src, dst, srcOffset, dstOffset, length, overlaps && dstOffset > srcOffset, o);
    }
  } finally {
    release();
  }
}

/** read/write in bounded chunks; backwards when an overlapping destination lies after the source. */
async function bufferedMove(src: LogicalUnit, dst: LogicalUnit, srcOffset: number, dstOffset: number, length: number, backwards: boolean, o: MoveOptions): Promise<void> {
  let done = 0;
  while (done < length) {
    if (o.signal.aborted) throw abortError(o.signal);
    const n = Math.min(FALLBACK_BUFFER_BYTES, length - done);
    const at = backwards ? length - done - n : done;
    let data: Buffer;
    try {
      data = await src.store.read(srcOffset + at, n);
    } catch (err) {
      throw new CopyIoError(err, 'source');
    }
    try {
      await dst.store.write(dstOffset + at, data);
    } catch (err) {
      throw new CopyIoError(err, 'destination');
    }
    done += n;
    o.onProgress(done);
  }
}

/** Zeros after a padded residue (PAD=1), up to the end of the destination block. */
export async function writeZeros(dst: LogicalUnit, offset: number, length: number): Promise<void> {
  if (length === 0) return;
  await dst.beforeWrite(offset, length);
  try {
    await dst.store.write(offset, Buffer.alloc(length));
  } catch (err) {
    throw new CopyIoError(err, 'destination');
  }
}

/** Make the destination durable when its cache is write-through (WCE=0), as host writes are. */
export async function syncIfWriteThrough(dst: LogicalUnit): Promise<void> {
  if (dst.mode.writeCacheEnabled) return;
  try {
    await dst.store.flush();
  } catch (err) {
    throw new CopyIoError(err, 'destination');
  }
}

/** The sense a failed store operation maps to for the side that failed (for forwarded sense). */
export function ioErrorSense(err: CopyIoError): unknown {
  return storeErrorToSense(err.failure, err.side === 'destination');
}
