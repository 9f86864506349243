/**
 * File backing store: a regular (sparse) file or a block device, read and
 * written through fs/promises FileHandle so the event loop never blocks.
 * Hole punching (fallocate PUNCH_HOLE), SEEK_DATA/SEEK_HOLE, copy_file_range
 * and FICLONERANGE go through libc via koffi on Linux (./libc.ts); when that
 * is unavailable the store says so in its capabilities and the SCSI core does
 * not advertise the features. copyRange is the third-party copy data mover
 * (./copy-range.ts).
 */
import * as fs from 'node:fs';
import { promises as fsp, constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { BackingStore, CopyRangeResult, WriteOptions } from '../../scsi/backing-store';
import { copyFileRange, type CopyFile, type FileCopyRangeOptions } from './copy-range';
import { writeLane, type WriteLane } from './write-lane';
import { copyLibC } from './copy-lane';
import {
  EAGAIN, ENXIO, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, SEEK_DATA, SEEK_HOLE, errnoError, loadLibC, type LibC,
} from './libc';

export type { FileCopyRangeOptions } from './copy-range';

/**
 * Reads up to this size try the page cache on the event-loop thread first
 * (a 256 KiB memcpy is tens of microseconds); larger ones go to the pool.
 */
const NOWAIT_READ_MAX = 256 * 1024;

/**
 * Inline writes. A small write that covers whole pages is written on the event-loop thread
 * (one pwrite into the page cache: a few microseconds for 4 KiB) when nothing else is
 * writing: no write of this store in flight, the write lane idle, and no inline write yet in
 * this turn of the event loop. At queue depth 1 this saves the two thread wake-ups a lane
 * write costs (event loop -> lane worker -> event loop, tens of microseconds each on a VM:
 * the QD1 gap in test/bench/WRITE-ANALYSIS.md). Writes that arrive together (several in one
 * turn, or while others are in flight) go to the lane, which batches them, so deeper queues
 * keep the event loop free for the network.
 *
 * Whole pages only: a write into part of a page that is not cached makes the kernel read the
 * page first (read-modify-write), which is disk I/O. Buffered writes have no RWF_NOWAIT on
 * ext4 (EOPNOTSUPP on 6.18), so a pwrite can still wait, for dirty-page throttling or a
 * journal commit. Two inline writes in a row that took longer than INLINE_SLOW_MS, or one
 * longer than INLINE_STALL_MS, turn inline writes off, for every store, for
 * INLINE_BACKOFF_MS. Not one slow write: on a loaded machine a thread preempted inside the
 * syscall looks slow too (measured at load 6: 4 KiB pwrite p50 5-18 us, p99 30-60 us, yet
 * 0.1-0.3 % over 1 ms, up to 11 ms), and one in a few hundred would keep the path off;
 * throttling makes every write slow. XCOPYD_INLINE_WRITES=0 turns inline writes off.
 */
export const INLINE_WRITE_MAX = 64 * 1024;
const PAGE_BYTES = 4096;
export const INLINE_SLOW_MS = 1;
export const INLINE_STALL_MS = 20;
export const INLINE_BACKOFF_MS = 1000;
/** Process-wide: the event loop is one. */
const inline = {
  on: process.env.XCOPYD_INLINE_WRITES !== '0',
  /** An inline write happened in this turn of the event loop (cleared by setImmediate). */
  thisTurn: false,
  /** performance.now() before which no write goes inline (after slow ones). */
  offUntil: 0,
  /** The last inline write took longer than INLINE_SLOW_MS. */
  lastSlow: false,
};
const endTurn = (): void => {
  inline.thisTurn = false;
};

/** How this store's writes went (tests, metrics): on the event loop, the write lane, the thread pool. */
export interface WritePathCounts {
  inline: number;
  lane: number;
  pool: number;
}

export interface FileStoreOptions {
  path: string;
  /** Size in bytes. Required to create a missing file; grows a smaller existing file (sparse). */
  sizeBytes?: number;
  /** Logical block size, 512 (default) or 4096. */
  blockSize?: number;
  /** Physical block size reported to initiators (default: blockSize). */
  physicalBlockSize?: number;
  readOnly?: boolean;
  /** Create a missing regular file (default true). */
  create?: boolean;
  /**
   * The libc binding to use (default: ./libc.ts loadLibC(), with copies' calls on the copy lane);
   * null for none. Tests inject faults here (used as given, for copies too).
   */
  libc?: LibC | null;
}

/** Size of a block device from sysfs (512-byte sectors), Linux only. */
async function blockDeviceSize(rdev: number): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);
  const text = await fsp.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(text.trim()) * 512;
}

/**
 * Does FICLONERANGE work on this file's filesystem? A zero-length clone at
 * EOF onto itself changes nothing: filesystems that cannot share extents say
 * EOPNOTSUPP (ext4, tmpfs, XFS with reflink=0) before they look at the range,
 * the ones that can return 0 (linux fs/remap_range.c: zero length at EOF).
 */
async function probeClone(libc: LibC, fd: number, size: number): Promise<boolean> {
  const { res } = await libc.cloneRangeAsync(fd, size, 0, fd, size);
  return res === 0;
}

export class FileStore implements BackingStore {
  readonly blockSize: number;
  readonly physicalBlockSize: number;
  private size: number;
  readonly readOnly: boolean;
  readonly canPunchHole: boolean;
  readonly canSeekData: boolean;
  /** FICLONERANGE works on this file's filesystem (probed at open: XFS reflink=1, Btrfs). */
  readonly canClone: boolean;
  readonly supportsFua = true;
  readonly thinProvisioned: boolean;
  private closed = false;

  /** Try RWF_NOWAIT page-cache reads first (off after the kernel says it cannot). */
  private nowaitReads: boolean;

  /** Small writes go through the shared write lane (./write-lane.ts); null: always the thread pool. */
  private readonly lane: WriteLane | null;
  /** Lane writes not yet settled; close() waits for them (the worker writes to our fd number). */
  private laneWrites = 0;
  private laneDrained: (() => void) | null = null;
  /** Lane and thread-pool writes in flight (an inline write never overtakes one). */
  private writesInFlight = 0;
  /** How the writes went (tests, metrics). */
  readonly writePaths: WritePathCounts = { inline: 0, lane: 0, pool: 0 };
  /** Copies reading or writing this file's fd; close() waits for them too (their calls run on other threads). */
  private copies = 0;
  private copiesDrained: (() => void) | null = null;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    o: {
      blockSize: number; physicalBlockSize: number; sizeBytes: number; readOnly: boolean; regular: boolean;
      canClone: boolean; dev: number; ino: number; blksize: number;
    },
    private readonly libc: LibC | null,
    /** The copy mover's libc: `libc` with its async calls on the copy lane (./copy-lane.ts), or as injected. */
    private readonly copyLibc: LibC | null,
  ) {
    this.blockSize = o.blockSize;
    this.physicalBlockSize = o.physicalBlockSize;
    this.size = o.sizeBytes;
    this.readOnly = o.readOnly;
    this.canPunchHole = o.regular && !o.readOnly && libc !== null;
    this.canSeekData = o.regular && libc !== null;
    this.nowaitReads = libc !== null;
    this.thinProvisioned = o.regular;
    this.canClone = o.canClone;
    this.lane = o.readOnly || process.env.XCOPYD_WRITE_LANE === '0' ? null : writeLane();
    const handle = this.fh;
    this.file = {
      fd: fh.fd, path, dev: o.dev, ino: o.ino, blksize: o.blksize, regular: o.regular,
      canSeekData: this.canSeekData, canPunchHole: this.canPunchHole, canClone: o.readOnly ? undefined : o.canClone, // a read-only file was not probed
      read: async (buf, off, len, pos) => (await handle.read(buf, off, len, pos)).bytesRead,
      write: async (buf, off, len, pos) => (await handle.write(buf, off, len, pos)).bytesWritten,
    };
  }

  /** What the data mover needs of this file. */
  private readonly file: CopyFile;

  /** Told how the bytes of each completed copyRange moved (metrics); unset costs nothing. */
  onCopied: ((r: CopyRangeResult) => void) | undefined;

  get sizeBytes(): number {
    return this.size;
  }

  /**
   * Grow the LU to `bytes` (configuration reload): a regular file is extended
   * sparse; a block device is re-read. Shrinking is refused (the initiator's
   * data past the new end would vanish). The caller raises CAPACITY DATA HAS
   * CHANGED. Returns the new size.
   */
  async resize(bytes: number): Promise<number> {
    if (this.closed) throw Object.assign(new Error(`${this.path} is closed`), { code: 'EBADF' });
    const st = await this.fh.stat();
    let next = st.isFile() ? bytes : await blockDeviceSize(st.rdev);
    next -= next % this.blockSize;
    if (next < this.size) throw new Error(`${this.path}: shrinking from ${this.size} to ${next} bytes is refused`);
    if (st.isFile() && next > st.size) {
      if (this.readOnly) throw Object.assign(new Error(`${this.path} is read-only`), { code: 'EROFS' });
      await this.fh.truncate(next);
    }
    this.size = next;
    return next;
  }

  /** Open (and on first run create, sparse) the file or block device. */
  static async open(options: FileStoreOptions): Promise<FileStore> {
    const blockSize = options.blockSize ?? 512;
    const physicalBlockSize = options.physicalBlockSize ?? blockSize;
    if (blockSize !== 512 && blockSize !== 4096) throw new Error(`${options.path}: block size must be 512 or 4096`);
    if (physicalBlockSize < blockSize || physicalBlockSize % blockSize !== 0 || (physicalBlockSize & (physicalBlockSize - 1)) !== 0) {
      throw new Error(`${options.path}: physical block size ${physicalBlockSize} invalid for block size ${blockSize}`);
    }
    const readOnly = options.readOnly ?? false;
    let stat = await fsp.stat(options.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!stat) {
      if (options.create === false || options.sizeBytes === undefined || readOnly) {
        throw new Error(`${options.path}: does not exist (give sizeBytes to create it)`);
      }
      const created = await fsp.open(options.path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      await created.truncate(options.sizeBytes); // sparse: no blocks allocated
      await created.close();
      stat = await fsp.stat(options.path);
    }
    const regular = stat.isFile();
    if (!regular && !stat.isBlockDevice()) throw new Error(`${options.path}: not a regular file or block device`);
    const fh = await fsp.open(options.path, readOnly ? fsc.O_RDONLY : fsc.O_RDWR);
    try {
      let size = regular ? stat.size : await blockDeviceSize(stat.rdev);
      if (regular && options.sizeBytes !== undefined && options.sizeBytes > size && !readOnly) {
        await fh.truncate(options.sizeBytes);
        size = options.sizeBytes;
      }
      size -= size % blockSize;
      if (size <= 0) throw new Error(`${options.path}: smaller than one block`);
      const libc = options.libc !== undefined ? options.libc : loadLibC();
      const fst = await fh.stat();
      const canClone = regular && !readOnly && libc !== null && (await probeClone(libc, fh.fd, fst.size));
      return new FileStore(fh, options.path, {
        blockSize, physicalBlockSize, sizeBytes: size, readOnly, regular, canClone,
        dev: fst.dev, ino: fst.ino, blksize: fst.blksize,
      }, libc, options.libc !== undefined || !libc ? libc : copyLibC(libc));
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    if (this.nowaitReads && length <= NOWAIT_READ_MAX) {
      // Page-cache hit: copy it on this thread (RWF_NOWAIT never waits for the disk),
      // saving the thread-pool round trip that dominates small reads.
      const r = this.libc!.preadNowait(this.fh.fd, buf, offset, length);
      if (r.res > 0) done = r.res;
      else if (r.res < 0 && r.errno !== EAGAIN) this.nowaitReads = false; // EOPNOTSUPP etc.: never again
      if (done === length) return buf;
    }
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        buf.fill(0, done); // past EOF of a file shorter than its LU: zeros
        break;
      }
      done += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    if (this.readOnly) throw Object.assign(new Error(`${this.path} is read-only`), { code: 'EROFS' });
    if (this.mayInline(offset, data.length)) {
      this.writeInline(offset, data);
    } else {
      this.writesInFlight++;
      try {
        await this.writeQueued(offset, data);
      } finally {
        this.writesInFlight--;
      }
    }
    if (options.fua) await this.fh.datasync();
  }

  /** See INLINE_WRITE_MAX. */
  private mayInline(offset: number, length: number): boolean {
    return inline.on && !inline.thisTurn && this.writesInFlight === 0 && !this.closed &&
      length <= INLINE_WRITE_MAX && length > 0 && offset % PAGE_BYTES === 0 && length % PAGE_BYTES === 0 &&
      (this.lane === null || this.lane.pending === 0) && (inline.offUntil === 0 || performance.now() >= inline.offUntil);
  }

  /** pwrite on this thread, resuming a short write; a failure throws Node's error (code ENOSPC, EIO...), as the pool's does. */
  private writeInline(offset: number, data: Buffer): void {
    inline.thisTurn = true;
    setImmediate(endTurn);
    this.writePaths.inline++;
    const t0 = performance.now();
    try {
      for (let done = 0; done < data.length;) done += fs.writeSync(this.fh.fd, data, done, data.length - done, offset + done);
    } finally {
      const t1 = performance.now();
      const slow = t1 - t0 > INLINE_SLOW_MS;
      if ((slow && inline.lastSlow) || t1 - t0 > INLINE_STALL_MS) {
        inline.offUntil = t1 + INLINE_BACKOFF_MS;
        inline.lastSlow = false;
      } else {
        inline.lastSlow = slow;
      }
    }
  }

  /** The write lane when it takes the write, else (or when its worker died) the thread pool. */
  private async writeQueued(offset: number, data: Buffer): Promise<void> {
    let done = 0;
    const viaLane = this.closed ? null : this.lane?.submit(this.fh.fd, offset, data);
    if (viaLane) {
      this.writePaths.lane++;
      this.laneWrites++;
      let res: number;
      try {
        res = await viaLane;
      } finally {
        if (--this.laneWrites === 0) this.laneDrained?.();
      }
      if (res < 0) throw errnoError('pwrite', -res, this.path);
      if (res === data.length) done = data.length; // else LANE_LOST: the loop below writes it again
    }
    if (done < data.length) this.writePaths.pool++;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.fh.datasync();
  }

  async punchHole(offset: number, length: number): Promise<void> {
    if (!this.canPunchHole || !this.libc) throw Object.assign(new Error('punchHole not supported'), { code: 'EOPNOTSUPP' });
    const mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    const { res, errno } = await this.libc.fallocateAsync(this.fh.fd, mode, offset, length);
    if (res !== 0) throw errnoError('fallocate', errno, this.path);
  }

  private seek(offset: number, whence: number): number {
    if (!this.canSeekData || !this.libc) throw Object.assign(new Error('seek data/hole not supported'), { code: 'EOPNOTSUPP' });
    const { res, errno } = this.libc.lseek(this.fh.fd, offset, whence);
    if (res < 0) {
      if (errno === ENXIO) return this.sizeBytes; // no data (or hole) at or after offset
      throw errnoError('lseek', errno, this.path);
    }
    return Math.min(res, this.sizeBytes);
  }

  async seekData(offset: number): Promise<number> {
    return this.seek(offset, SEEK_DATA);
  }

  async seekHole(offset: number): Promise<number> {
    return this.seek(offset, SEEK_HOLE);
  }

  /**
   * Copy [srcOffset, srcOffset+length) to `dst` at dstOffset: clone, then
   * copy_file_range, then pooled buffers; source holes punched in the
   * destination. See ./copy-range.ts. Any BackingStore can be the
   * destination (a non-file one is written through its write()).
   */
  async copyRange(
    dst: BackingStore, srcOffset: number, dstOffset: number, length: number, options: FileCopyRangeOptions = {},
  ): Promise<CopyRangeResult> {
    if (this.closed) throw Object.assign(new Error(`${this.path} is closed`), { code: 'EBADF' });
    if (dst.readOnly) throw Object.assign(new Error(`copy destination is read-only`), { code: 'EROFS' });
    const target = dst instanceof FileStore ? dst.file : dst;
    if (dst instanceof FileStore && dst.closed) throw Object.assign(new Error(`${dst.path} is closed`), { code: 'EBADF' });
    const ends = dst instanceof FileStore && dst !== this ? [this, dst] : [this];
    for (const s of ends) s.copies++;
    try {
      const r = await copyFileRange(this.copyLibc, this.file, target, srcOffset, dstOffset, length, options);
      this.onCopied?.(r);
      return r;
    } finally {
      for (const s of ends) if (--s.copies === 0) s.copiesDrained?.();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.laneWrites > 0) await new Promise<void>((resolve) => (this.laneDrained = resolve));
    // A copy's last call may still be running on the copy lane with our fd number: never close under it.
    if (this.copies > 0) await new Promise<void>((resolve) => (this.copiesDrained = resolve));
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }
}
