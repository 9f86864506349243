/**
 * The copy engine's one data mover: bytes from one backing store to another
 * (or to another place in the same one) for EXTENDED COPY segments, WRITE
 * USING TOKEN steps, and a ROD token's point-in-time images and saves.
 *
 *  - The kernel path: BackingStore.copyRange (FileStore: clone, then
 *    copy_file_range, then its pooled buffers; overlapping ranges within one
 *    file are moved like memmove there, in the kernel while they are at
 *    least 1 MiB apart). Every store of the daemon has it.
 *  - The one fallback, for a store without copyRange (test doubles, memory
 *    side files): read and write in bounded pieces, walked backwards when an
 *    overlapping destination lies above the source (memmove).
 *
 * The caller holds the destination range (Mutation.move) when the
 * destination is an LU; side files are the token store's own.
 */
import type { BackingStore, CopyRangeResult } from '../backing-store';
import { abortReason } from '../abort';

/** Piece size of the fallback (and the most it holds in memory at once). */
export const FALLBACK_PIECE_BYTES = 1024 * 1024;

export interface MoveOptions {
  signal?: AbortSignal;
  /** Bytes of this move done so far (a prefix; a suffix when an overlapping move walks backwards). */
  onProgress?: (bytes: number) => void;
}

/** A failure of the mover, with the side it happened on (forwarded-sense source of EXTENDED COPY). */
export class CopyIoError extends Error {
  constructor(
    readonly failure: unknown,
    readonly side: 'source' | 'destination',
  ) {
    super(`copy ${side} I/O failed: ${(failure as Error)?.message ?? String(failure)}`);
    this.name = 'CopyIoError';
  }
}

/**
 * Move [srcOffset, srcOffset+n) of `src` to `dst` at dstOffset. Rejects with
 * the signal's reason when aborted, else with a CopyIoError naming the side
 * that failed (the kernel path cannot tell: destination).
 */
export async function moveData(src: BackingStore, dst: BackingStore, srcOffset: number, dstOffset: number, n: number, o: MoveOptions = {}): Promise<CopyRangeResult | undefined> {
  if (n <= 0) return undefined;
  const signal = o.signal;
  if (signal?.aborted) throw abortReason(signal, 'copy aborted');
  if (src.copyRange) {
    try {
      return await src.copyRange(dst, srcOffset, dstOffset, n, { signal, onProgress: o.onProgress });
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal, 'copy aborted');
      throw new CopyIoError(err, 'destination');
    }
  }
  const backwards = src === dst && dstOffset > srcOffset && srcOffset + n > dstOffset;
  for (let done = 0; done < n; ) {
    if (signal?.aborted) throw abortReason(signal, 'copy aborted');
    const k = Math.min(FALLBACK_PIECE_BYTES, n - done);
    const at = backwards ? n - done - k : done;
    let data: Buffer;
    try {
      data = await src.read(srcOffset + at, k);
    } catch (err) {
      throw new CopyIoError(err, 'source');
    }
    try {
      await dst.write(dstOffset + at, data);
    } catch (err) {
      throw new CopyIoError(err, 'destination');
    }
    done += k;
    o.onProgress?.(done);
  }
  return undefined;
}
