/**
 * THE path that changes the medium. Every writer (WRITE, WRITE AND VERIFY,
 * WRITE SAME, UNMAP, COMPARE AND WRITE, EXTENDED COPY destinations and PAD
 * zeros, WRITE USING TOKEN) goes through one Mutation, which does, in order:
 *
 *   1. range lock   - LogicalUnit.mutate() waits for and holds the whole
 *                     blocks the change touches (COMPARE AND WRITE atomicity,
 *                     SBC-4 5.3; writes to the same blocks are ordered);
 *   2. access check - an optional `check` run once the range is held, so a
 *                     copy re-checks its destination's access (reservations,
 *                     write protect) per chunk, atomically with the write;
 *   3. write guard  - LogicalUnit.beforeWrite on the exact bytes, before
 *                     they change (point-in-time ROD tokens save them);
 *   4. store call   - write / zeros / deallocate, or `move` for a caller's
 *                     own data mover (copyRange, a token's readInto);
 *   5. error map    - store failures become sense (storeErrorToSense);
 *   6. durability   - commit(): FUA, or write-through when the caching mode
 *                     page says WCE=0 (SBC-4 5.40, SPC-5 7.5.8), else nothing.
 *
 * Usage (one command, one range):
 *
 *   const m = await lu.mutate(offset, length, 'auto');
 *   try {
 *     await m.write(offset, data);
 *     await m.commit();
 *   } finally {
 *     m.release();
 *   }
 *
 * lu.writeBlocks() is exactly that for one buffer (the 4 KiB hot path: one
 * object per write, the Mutation itself is the lock entry).
 *
 * Durability:
 *   'auto'     - durable at commit() when WCE=0 (write-through), else cached;
 *   'fua'      - durable at commit() whatever WCE says (FUA, WRITE AND VERIFY);
 *   'deferred' - a change made of several mutations (UNMAP's descriptors, a
 *                copy's chunks) is made durable once, at its end, with
 *                lu.syncIfWriteThrough(); commit() does nothing.
 * Where the change must be durable and the store has FUA, writes go with FUA
 * and commit() has nothing left to flush.
 */
import type { BackingStore, WriteOptions } from './backing-store';
import type { LogicalUnit } from './logical-unit';
import { RangeHold } from './range-lock';
import { SenseError } from './sense';

export type Durability = 'auto' | 'fua' | 'deferred';

const FUA: WriteOptions = Object.freeze({ fua: true });
/** Zeros are written from one shared, never-written buffer, in pieces of this size. */
const ZERO_PIECE_BYTES = 1024 * 1024;
let zeroPiece: Buffer | undefined;

export class Mutation extends RangeHold {
  /** Bytes went to the store's cache that commit() must flush (durable mutations only). */
  private cached = false;

  constructor(
    readonly lu: LogicalUnit,
    startLba: number,
    endLba: number,
    private readonly durability: Durability,
  ) {
    super(startLba, endLba);
  }

  /** Must this change be durable before commit() resolves? */
  private get durable(): boolean {
    return this.durability === 'fua' || (this.durability === 'auto' && !this.lu.mode.writeCacheEnabled);
  }

  /** Write `data` at byte `offset` (inside the held range). */
  async write(offset: number, data: Buffer): Promise<void> {
    await this.lu.beforeWrite(offset, data.length);
    await this.put(offset, data);
  }

  /** Write zeros over [offset, offset+length) (PAD, a ROD's tail, the zero ROD token without deallocation). */
  async writeZeros(offset: number, length: number): Promise<void> {
    if (length <= 0) return;
    await this.lu.beforeWrite(offset, length);
    const zeros = (zeroPiece ??= Buffer.alloc(ZERO_PIECE_BYTES));
    for (let done = 0; done < length; done += zeros.length) {
      const n = Math.min(zeros.length, length - done);
      await this.put(offset + done, n === zeros.length ? zeros : zeros.subarray(0, n));
    }
  }

  /** The store write: with FUA where the change must be durable and the store has it, else cached. */
  private async put(offset: number, data: Buffer): Promise<void> {
    const store = this.lu.store;
    const fua = store.supportsFua && this.durable;
    try {
      await store.write(offset, data, fua ? FUA : undefined);
    } catch (err) {
      throw storeErrorToSense(err, true);
    }
    if (!fua) this.cached = true;
  }

  /** Deallocate [offset, offset+length) (UNMAP, WRITE SAME with UNMAP=1); it reads back as zeros (LBPRZ). */
  async deallocate(offset: number, length: number): Promise<void> {
    if (length <= 0) return;
    const lu = this.lu;
    await lu.beforeWrite(offset, length);
    try {
      await lu.store.punchHole(offset, length);
    } catch (err) {
      throw storeErrorToSense(err, true);
    }
    this.cached = true;
  }

  /**
   * Change [offset, offset+length) with the caller's own data mover
   * (BackingStore.copyRange, a ROD token's readInto): the guard runs first;
   * what `mover` rejects with is mapped like a store failure (errors with an
   * errno code become sense; SenseErrors, abort reasons and the copy engine's
   * own errors pass unchanged).
   */
  async move<T>(offset: number, length: number, mover: (store: BackingStore) => Promise<T>): Promise<T> {
    const lu = this.lu;
    await lu.beforeWrite(offset, length);
    let r: T;
    try {
      r = await mover(lu.store);
    } catch (err) {
      throw storeErrorToSense(err, true);
    }
    this.cached = true;
    return r;
  }

  /** Make the change durable as its durability asks (see the header); the range stays held. */
  async commit(): Promise<void> {
    if (!this.cached || !this.durable) return;
    this.cached = false;
    await this.lu.flush();
  }
}

/**
 * The one place backing-store failures become sense:
 * ENOSPC/EDQUOT -> 7/27/07; EIO -> 3/11/00 on reads, 3/0C/00 on writes;
 * EROFS -> 7/27/00; ESHUTDOWN (this node was fenced: its RBD client is
 * blocklisted) -> 2/04/0C, the ALUA answer of a gone node, so multipath fails
 * over. Anything else is returned unchanged (-> INTERNAL TARGET FAILURE,
 * unless the caller knows better).
 */
export function storeErrorToSense(err: unknown, writing: boolean): unknown {
  if (err instanceof SenseError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new SenseError('SPACE_ALLOCATION_FAILED_WRITE_PROTECT');
    case 'EIO':
      return new SenseError(writing ? 'WRITE_ERROR' : 'MEDIUM_ERROR_READ');
    case 'EROFS':
      return new SenseError('WRITE_PROTECTED');
    case 'ESHUTDOWN':
      return new SenseError('LU_NOT_ACCESSIBLE_UNAVAILABLE');
    default:
      return err;
  }
}
