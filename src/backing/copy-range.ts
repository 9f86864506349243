/**
 * The data mover behind FileStore.copyRange: copies a byte range of one
 * backing file to another (or to another place in the same file) inside the
 * kernel, never through the event loop.
 *
 * Per data extent of the source, in chunks (so progress is reported and an
 * abort takes effect between chunks):
 *   1. FICLONERANGE for the block-aligned middle, where the filesystem shares
 *      extents (XFS reflink=1, Btrfs): `cloned`;
 *   2. copy_file_range(2) for the rest (on XFS and Btrfs the kernel may
 *      still reflink inside it; we cannot see that): `offloaded`;
 *   3. on EXDEV, EINVAL, EOPNOTSUPP, ENOSYS (other filesystem, block device,
 *      old kernel) or when the destination is not a file, pread/pwrite through
 *      the shared pool of buffers: `buffered`.
 * Source holes (SEEK_DATA/SEEK_HOLE) are punched in the destination
 * (PUNCH_HOLE|KEEP_SIZE) instead of copied: `holes`. A destination that
 * cannot deallocate (a block device) gets written zeros, counted `buffered`.
 *
 * Within one file, overlapping ranges behave like memmove: the range is
 * walked backwards when the destination lies above the source, and no single
 * kernel call spans more than the distance between the two (copy_file_range
 * and FICLONERANGE refuse overlapping ranges in one file); when that distance
 * is small the buffers do it, reading each piece before writing it.
 *
 * Nothing is fsynced: the copied bytes are in the page cache (or shared
 * extents) when the promise resolves, as for a WRITE with WCE=1; SYNCHRONIZE
 * CACHE makes them durable.
 */
import { abortReason } from '../../scsi/abort';
import type { BackingStore, CopyRangeOptions, CopyRangeResult } from '../../scsi/backing-store';
import { BufferPool, copyBufferPool } from './buffer-pool';
import {
  EAGAIN, EBADF, EDQUOT, EFBIG, EINTR, EINVAL, EIO, ENOSPC, ENOSYS, ENOTTY, ENXIO, EOPNOTSUPP, EROFS, EXDEV,
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, LibC, SEEK_DATA, SEEK_HOLE, errnoError,
} from './libc';

export type CopyMode = 'auto' | 'no-clone' | 'buffered';

/**
 * FileStore's copyRange options: the port's, plus knobs for tests and
 * benchmarks. onProgress counts a prefix of the range (a suffix when an
 * overlapping copy within one file walks backwards), so its last value
 * before a rejection is what was done.
 */
export interface FileCopyRangeOptions extends CopyRangeOptions {
  /** 'auto' (default): clone, copy_file_range, buffers; 'no-clone': skip FICLONERANGE; 'buffered': buffers only. */
  mode?: CopyMode;
  /** Largest kernel call and progress step, bytes (default 64 MiB). */
  chunkBytes?: number;
  /** Pool for the buffered path (default: the shared 4 x 8 MiB pool). */
  pool?: BufferPool;
}

/** A backing file as the mover sees it (FileStore hands these out). */
export interface CopyFile {
  readonly fd: number;
  readonly path: string;
  /** st_dev and st_ino: the same file opened twice is still the same file. */
  readonly dev: number;
  readonly ino: number;
  /** st_blksize: clone alignment (a multiple of the filesystem block). */
  readonly blksize: number;
  readonly regular: boolean;
  readonly canSeekData: boolean;
  readonly canPunchHole: boolean;
  /** FICLONERANGE works on its filesystem (probed once when the store opened); undefined: unknown, try. */
  readonly canClone?: boolean;
  /** pread into buf[off, off+len) at pos; 0 at EOF. */
  read(buf: Buffer, off: number, len: number, pos: number): Promise<number>;
  /** pwrite buf[off, off+len) at pos; may be short. */
  write(buf: Buffer, off: number, len: number, pos: number): Promise<number>;
}

export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;
/** Below this distance between overlapping ranges, kernel calls get too small: use buffers. */
const MIN_OVERLAP_KERNEL_CHUNK = 1024 * 1024;
/** A clone call shares up to this much (metadata only, so bigger than a copy chunk). */
const CLONE_STEP = 1024 * 1024 * 1024;
/** Holes are punched in pieces this big, so abort stays quick on huge sparse ranges. */
const HOLE_STEP = 1024 * 1024 * 1024;
/** In-flight writes per buffered copy (reads are one at a time, in order). */
const MAX_WRITES_IN_FLIGHT = 2;
/** EINTR/EAGAIN retries of one kernel call before giving up with the error. */
const MAX_RETRIES = 1000;
const ZEROS = Buffer.alloc(1024 * 1024); // only ever read from

/** errnos after which copy_file_range / FICLONERANGE cannot work for this pair: fall back. */
const KERNEL_FALLBACK = new Set([EXDEV, EINVAL, EOPNOTSUPP, ENOSYS, ENOTTY, EBADF]);
/**
 * FICLONERANGE errnos that are the copy's failure, not the clone's: surfaced.
 * Any other (EOPNOTSUPP, EXDEV, EPERM, ETXTBSY, ...) stops cloning for this
 * copy, except EINVAL (alignment, maybe just this chunk) and EINTR/EAGAIN,
 * which leave this chunk to copy_file_range.
 */
const CLONE_FATAL = new Set([ENOSPC, EDQUOT, EIO, EROFS, EFBIG]);

interface Segment {
  pos: number;
  len: number;
  hole: boolean;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal, 'copy aborted');
}

function isFile(dst: CopyFile | BackingStore): dst is CopyFile {
  return typeof (dst as CopyFile).fd === 'number' && typeof (dst as CopyFile).ino === 'number';
}

/**
 * Copy [srcOffset, srcOffset+length) of `src` to `dst` at dstOffset. `dst`
 * is a CopyFile when it is a FileStore, otherwise any BackingStore (buffers).
 * Offsets and length are bytes, already range-checked by the caller.
 */
export async function copyFileRange(
  libc: LibC | null,
  src: CopyFile,
  dst: CopyFile | BackingStore,
  srcOffset: number,
  dstOffset: number,
  length: number,
  options: FileCopyRangeOptions = {},
): Promise<CopyRangeResult> {
  for (const [name, v] of [['srcOffset', srcOffset], ['dstOffset', dstOffset], ['length', length]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw Object.assign(new RangeError(`copyRange: bad ${name} ${v}`), { code: 'EINVAL' });
  }
  const copier = new RangeCopier(libc, src, dst, srcOffset, dstOffset, length, options);
  return copier.run();
}

class RangeCopier {
  private readonly result: CopyRangeResult = { bytes: 0, cloned: 0, offloaded: 0, buffered: 0, holes: 0 };
  private readonly dstFile: CopyFile | null;
  private readonly delta: number;
  private readonly sameFile: boolean;
  private readonly backward: boolean;
  private readonly chunk: number;
  private readonly cloneStep: number;
  private readonly pool: BufferPool;
  private readonly signal: AbortSignal | undefined;
  private kernel: boolean;
  private clone: boolean;

  constructor(
    private readonly libc: LibC | null,
    private readonly src: CopyFile,
    private readonly dst: CopyFile | BackingStore,
    private readonly srcOffset: number,
    private readonly dstOffset: number,
    private readonly length: number,
    private readonly options: FileCopyRangeOptions,
  ) {
    this.dstFile = isFile(dst) ? dst : null;
    this.delta = dstOffset - srcOffset;
    this.sameFile = this.dstFile !== null && this.dstFile.dev === src.dev && this.dstFile.ino === src.ino;
    const overlap = this.sameFile && Math.abs(this.delta) < length;
    // memmove: with the destination above the source, walk down from the end.
    this.backward = overlap && this.delta > 0;
    const chunk = Math.max(4096, options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    const mode = options.mode ?? 'auto';
    this.kernel = mode !== 'buffered' && libc !== null && this.dstFile !== null && src.regular && this.dstFile.regular
      && !(overlap && Math.abs(this.delta) < MIN_OVERLAP_KERNEL_CHUNK);
    // Clone only where it can work: both filesystems said so when probed, and it is the same one
    // (no FICLONERANGE round trip per copy that fails on ext4 every time: issue 12).
    this.clone = this.kernel && mode === 'auto' && src.canClone !== false && this.dstFile!.canClone !== false
      && src.dev === this.dstFile!.dev;
    // No kernel call may span source and destination of the same bytes (the
    // kernel refuses with EINVAL). Buffered pieces read before they write, so
    // they need no such limit.
    this.chunk = overlap && this.kernel ? Math.min(chunk, Math.abs(this.delta)) : chunk;
    this.cloneStep = overlap ? Math.min(CLONE_STEP, Math.abs(this.delta)) : Math.max(CLONE_STEP, chunk);
    this.pool = options.pool ?? copyBufferPool;
    this.signal = options.signal;
  }

  async run(): Promise<CopyRangeResult> {
    throwIfAborted(this.signal);
    if (this.length === 0) return this.result;
    if (this.sameFile && this.delta === 0) {
      // Copy onto itself: nothing moves.
      this.result.bytes = this.length;
      this.options.onProgress?.(this.length);
      return this.result;
    }
    if (await this.smallCopy()) return this.result;
    if (this.backward) {
      const segments: Segment[] = [];
      for await (const s of this.segments()) segments.push(s);
      for (let i = segments.length - 1; i >= 0; i--) await this.segment(segments[i]);
    } else {
      for await (const s of this.segments()) await this.segment(s);
    }
    return this.result;
  }

  /**
   * A range of at most one chunk, not cloned: SEEK_DATA/SEEK_HOLE and the
   * copy in one round trip when the libc can batch (the copy lane). True
   * when it is done; otherwise nothing is counted and the general path runs
   * (and makes the same idempotent calls again).
   */
  private async smallCopy(): Promise<boolean> {
    const batch = this.libc?.copyDataAsync;
    if (!batch || !this.kernel || this.clone || this.backward || this.length > this.chunk) return false;
    const walk = (this.options.preserveHoles ?? true) && this.src.canSeekData;
    const { copied } = await batch.call(this.libc, this.src.fd, this.srcOffset, this.dstFile!.fd, this.dstOffset, this.length, walk);
    if (copied !== this.length) return false;
    this.result.offloaded += copied;
    this.progress(copied);
    return true;
  }

  /** The source range as data and hole segments, in ascending order. */
  private async *segments(): AsyncGenerator<Segment> {
    const end = this.srcOffset + this.length;
    const walk = (this.options.preserveHoles ?? true) && this.src.canSeekData && this.libc !== null;
    if (!walk) {
      yield { pos: this.srcOffset, len: this.length, hole: false };
      return;
    }
    let pos = this.srcOffset;
    while (pos < end) {
      throwIfAborted(this.signal);
      const data = Math.min(await this.seek(pos, SEEK_DATA), end);
      if (data > pos) {
        yield { pos, len: data - pos, hole: true };
        pos = data;
        continue;
      }
      let hole = Math.min(await this.seek(pos, SEEK_HOLE), end);
      if (hole <= pos) hole = end; // the file changed under us: call the rest data
      yield { pos, len: hole - pos, hole: false };
      pos = hole;
    }
  }

  private async seek(pos: number, whence: number): Promise<number> {
    const { res, errno } = await this.libc!.lseekAsync(this.src.fd, pos, whence);
    if (res >= 0) return res;
    if (errno === ENXIO) return Number.MAX_SAFE_INTEGER; // nothing (more) at or after pos
    throw errnoError('lseek', errno, this.src.path);
  }

  private progress(bytes: number): void {
    this.result.bytes += bytes;
    this.options.onProgress?.(this.result.bytes);
  }

  private async segment(s: Segment): Promise<void> {
    if (s.hole) return this.hole(s.pos + this.delta, s.len);
    // Chunks in the copy's direction, their edges on a grid of the step (so on
    // block boundaries, and a clone never leaves a partial block at an edge).
    // Clones are cheap, so they take bigger steps while they work.
    const end = s.pos + s.len;
    if (this.backward) {
      for (let hi = end; hi > s.pos; ) {
        const step = this.clone ? this.cloneStep : this.chunk;
        const lo = Math.max(s.pos, (Math.ceil(hi / step) - 1) * step);
        await this.data(lo, hi - lo);
        hi = lo;
      }
    } else {
      for (let lo = s.pos; lo < end; ) {
        const step = this.clone ? this.cloneStep : this.chunk;
        const hi = Math.min(end, (Math.floor(lo / step) + 1) * step);
        await this.data(lo, hi - lo);
        lo = hi;
      }
    }
  }

  /** Where the source has a hole: deallocate the destination (zeros where it cannot). */
  private async hole(dstPos: number, len: number): Promise<void> {
    const end = dstPos + len;
    for (let pos = this.backward ? end : dstPos; this.backward ? pos > dstPos : pos < end; ) {
      throwIfAborted(this.signal);
      const lo = this.backward ? Math.max(dstPos, pos - HOLE_STEP) : pos;
      const n = this.backward ? pos - lo : Math.min(HOLE_STEP, end - pos);
      if (this.dstFile?.canPunchHole && this.libc) {
        const { res, errno } = await this.libc.fallocateAsync(this.dstFile.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, lo, n);
        if (res !== 0) throw errnoError('fallocate', errno, this.dstFile.path);
        this.result.holes += n;
      } else if (!this.dstFile && (this.dst as BackingStore).canPunchHole) {
        await (this.dst as BackingStore).punchHole(lo, n);
        this.result.holes += n;
      } else {
        await this.writeZeros(lo, n);
        this.result.buffered += n;
      }
      this.progress(n);
      pos = this.backward ? lo : pos + n;
    }
  }

  /**
   * One chunk of source data [pos, pos+len), in three parts taken in the
   * copy's direction (so progress always counts a prefix, or a suffix when
   * walking backwards): the unaligned head, the block-aligned middle (cloned
   * when the filesystem shares extents), the unaligned tail. What is not
   * cloned goes by copy_file_range, else by buffers, in pieces of at most
   * `chunk` with progress and abort between. The chunk's source and
   * destination never overlap when the kernel is used.
   */
  private async data(pos: number, len: number): Promise<void> {
    throwIfAborted(this.signal);
    const end = pos + len;
    const mid = this.clone ? this.cloneable(pos, len) : null;
    const parts: Array<[number, number, boolean]> = mid
      ? [[pos, mid[0], false], [mid[0], mid[1], true], [mid[1], end, false]]
      : [[pos, end, false]];
    if (this.backward) parts.reverse();
    for (const [lo, hi, clone] of parts) {
      if (hi <= lo) continue;
      if (clone && this.clone && (await this.tryClone(lo, hi - lo))) {
        this.progress(hi - lo);
        continue;
      }
      await this.copy(lo, hi - lo);
    }
  }

  /** The block-aligned middle of [pos, pos+len) that a clone could share, or null. */
  private cloneable(pos: number, len: number): [number, number] | null {
    const bs = Math.max(4096, this.src.blksize, this.dstFile!.blksize);
    const mod = (x: number) => ((x % bs) + bs) % bs;
    if (mod(pos) !== mod(pos + this.delta)) return null; // source and destination blocks never line up
    const a = Math.ceil(pos / bs) * bs;
    const b = Math.floor((pos + len) / bs) * bs;
    return b > a ? [a, b] : null;
  }

  /** FICLONERANGE [pos, pos+len) (block-aligned) to pos+delta. False: not cloned, copy it. */
  private async tryClone(pos: number, len: number): Promise<boolean> {
    const dst = this.dstFile!;
    const { res, errno } = await this.libc!.cloneRangeAsync(this.src.fd, pos, len, dst.fd, pos + this.delta);
    if (res === 0) {
      this.result.cloned += len;
      return true;
    }
    if (CLONE_FATAL.has(errno)) throw errnoError('ioctl(FICLONERANGE)', errno, dst.path);
    // EINVAL (alignment or a filesystem rule), EINTR, EAGAIN: just this part. Anything else: no more clones.
    if (errno !== EINVAL && errno !== EINTR && errno !== EAGAIN) this.clone = false;
    return false;
  }

  /** [pos, pos+len) by copy_file_range, else buffers, in pieces of `chunk` in the copy's direction. */
  private async copy(pos: number, len: number): Promise<void> {
    for (let off = 0; off < len; ) {
      const k = Math.min(this.chunk, len - off);
      const q = this.backward ? pos + len - off - k : pos + off;
      if (off > 0) throwIfAborted(this.signal);
      const done = this.kernel ? await this.kernelCopy(q, k) : 0;
      if (done < k) await this.buffered(q + done, q + done + this.delta, k - done);
      this.progress(k);
      off += k;
    }
  }

  /**
   * copy_file_range [pos, pos+len) to pos+delta, resuming short copies.
   * Bytes copied; less than len only when the kernel path is given up
   * (EXDEV, EINVAL, ...), and the caller moves the rest through buffers.
   */
  private async kernelCopy(pos: number, len: number): Promise<number> {
    const dst = this.dstFile!;
    let done = 0;
    let retries = 0;
    while (done < len) {
      const { res, errno } = await this.libc!.copyFileRangeAsync(this.src.fd, pos + done, dst.fd, pos + done + this.delta, len - done);
      if (res > 0) {
        done += res;
        this.result.offloaded += res;
        retries = 0;
        continue;
      }
      if (res === 0) {
        // Source EOF inside the range (a file shorter than its LU): zeros.
        const n = len - done;
        await this.writeZeros(pos + done + this.delta, n);
        this.result.buffered += n;
        return len;
      }
      if ((errno === EINTR || errno === EAGAIN) && ++retries <= MAX_RETRIES) {
        if (errno === EAGAIN) await new Promise((r) => setImmediate(r));
        continue;
      }
      if (KERNEL_FALLBACK.has(errno)) {
        this.kernel = false;
        this.clone = false;
        return done;
      }
      throw errnoError('copy_file_range', errno, dst.path);
    }
    return done;
  }

  /**
   * pread/pwrite [srcPos, srcPos+len) to dstPos through pooled buffers: one
   * read at a time in the copy's direction, up to MAX_WRITES_IN_FLIGHT writes
   * behind it. In that order no read ever sees bytes a write of this copy has
   * changed, even when the ranges overlap (memmove), and a buffer goes back
   * to the pool only once its write has completed.
   */
  private async buffered(srcPos: number, dstPos: number, len: number): Promise<void> {
    const writes = new Set<Promise<void>>();
    let failure: unknown;
    const size = this.pool.bufferSize;
    const pieces = Math.ceil(len / size);
    try {
      for (let i = 0; i < pieces && failure === undefined; i++) {
        throwIfAborted(this.signal);
        // Piece i in copy order: ascending forward, descending backward.
        const k = this.backward ? pieces - 1 - i : i;
        const off = k * size;
        const n = Math.min(size, len - off);
        while (writes.size >= MAX_WRITES_IN_FLIGHT) await Promise.race(writes);
        if (failure !== undefined) break;
        const buf = await this.pool.acquire();
        try {
          await this.readFully(buf, n, srcPos + off);
        } catch (err) {
          this.pool.release(buf);
          throw err;
        }
        const w: Promise<void> = this.writeFully(buf, n, dstPos + off).then(
          () => { this.result.buffered += n; },
          (err) => { if (failure === undefined) failure = err; },
        ).finally(() => {
          this.pool.release(buf);
          writes.delete(w);
        });
        writes.add(w);
      }
    } finally {
      // Never return (or throw) while a buffer of ours is still being written.
      await Promise.all(writes);
    }
    if (failure !== undefined) throw failure;
  }

  private async readFully(buf: Buffer, n: number, pos: number): Promise<void> {
    let got = 0;
    while (got < n) {
      const r = await this.src.read(buf, got, n - got, pos + got);
      if (r === 0) {
        buf.fill(0, got, n); // past the source's EOF: zeros
        return;
      }
      got += r;
    }
  }

  private async writeFully(buf: Buffer, n: number, pos: number): Promise<void> {
    if (this.dstFile) {
      let put = 0;
      while (put < n) put += await this.dstFile.write(buf, put, n - put, pos + put);
    } else {
      await (this.dst as BackingStore).write(pos, buf.subarray(0, n));
    }
  }

  private async writeZeros(pos: number, len: number): Promise<void> {
    for (let off = 0; off < len; off += ZEROS.length) {
      throwIfAborted(this.signal);
      await this.writeFully(ZEROS, Math.min(ZEROS.length, len - off), pos + off);
    }
  }
}
