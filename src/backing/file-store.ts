/**
 * File backing store: a regular (sparse) file or a block device, read and
 * written through fs/promises FileHandle so the event loop never blocks.
 * Hole punching (fallocate PUNCH_HOLE) and SEEK_DATA/SEEK_HOLE go through
 * libc via koffi on Linux; when that is unavailable the store says so in its
 * capabilities and the SCSI core does not advertise the features.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { BackingStore, WriteOptions } from '../../scsi/backing-store';

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
}

interface LibC {
  lseek(fd: number, offset: number, whence: number): number | bigint;
  fallocate(fd: number, mode: number, offset: number, len: number): number;
  fallocateAsync(fd: number, mode: number, offset: number, len: number): Promise<number>;
  errno(): number;
}

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const ENXIO = 6;

let libcCache: LibC | null | undefined;

/** libc through koffi, or null where it cannot be loaded (non-Linux, no koffi build). */
function loadLibC(): LibC | null {
  if (libcCache !== undefined) return libcCache;
  libcCache = null;
  if (process.platform !== 'linux') return null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const koffi = require('koffi');
    const lib = koffi.load('libc.so.6');
    const lseek = lib.func('int64_t lseek(int fd, int64_t offset, int whence)');
    const fallocate = lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
    libcCache = {
      lseek: (fd, offset, whence) => lseek(fd, offset, whence),
      fallocate: (fd, mode, offset, len) => fallocate(fd, mode, offset, len),
      fallocateAsync: (fd, mode, offset, len) =>
        new Promise((resolve, reject) =>
          fallocate.async(fd, mode, offset, len, (err: unknown, res: number) => (err ? reject(err) : resolve(res)))),
      errno: () => koffi.errno(),
    };
  } catch {
    libcCache = null;
  }
  return libcCache;
}

function errnoError(syscall: string, errno: number): NodeJS.ErrnoException {
  const names: Record<number, string> = { 5: 'EIO', 28: 'ENOSPC', 95: 'EOPNOTSUPP', 30: 'EROFS', 122: 'EDQUOT' };
  const e = new Error(`${syscall} failed: errno ${errno}`) as NodeJS.ErrnoException;
  e.errno = errno;
  e.code = names[errno] ?? 'EIO';
  e.syscall = syscall;
  return e;
}

/** Size of a block device from sysfs (512-byte sectors), Linux only. */
async function blockDeviceSize(rdev: number): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);
  const text = await fsp.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(text.trim()) * 512;
}

export class FileStore implements BackingStore {
  readonly blockSize: number;
  readonly physicalBlockSize: number;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly canPunchHole: boolean;
  readonly canSeekData: boolean;
  readonly canClone = false;
  readonly supportsFua = true;
  readonly thinProvisioned: boolean;
  private closed = false;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    o: { blockSize: number; physicalBlockSize: number; sizeBytes: number; readOnly: boolean; regular: boolean },
    private readonly libc: LibC | null,
  ) {
    this.blockSize = o.blockSize;
    this.physicalBlockSize = o.physicalBlockSize;
    this.sizeBytes = o.sizeBytes;
    this.readOnly = o.readOnly;
    this.canPunchHole = o.regular && !o.readOnly && libc !== null;
    this.canSeekData = o.regular && libc !== null;
    this.thinProvisioned = o.regular;
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
      return new FileStore(fh, options.path, { blockSize, physicalBlockSize, sizeBytes: size, readOnly, regular }, loadLibC());
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
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
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    if (options.fua) await this.fh.datasync();
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.fh.datasync();
  }

  async punchHole(offset: number, length: number): Promise<void> {
    if (!this.canPunchHole || !this.libc) throw Object.assign(new Error('punchHole not supported'), { code: 'EOPNOTSUPP' });
    const mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    const res = await this.libc.fallocateAsync(this.fh.fd, mode, offset, length);
    if (res !== 0) {
      // errno lives on the worker thread; repeat synchronously (idempotent) to learn it.
      if (this.libc.fallocate(this.fh.fd, mode, offset, length) !== 0) throw errnoError('fallocate', this.libc.errno());
    }
  }

  private seek(offset: number, whence: number): number {
    if (!this.canSeekData || !this.libc) throw Object.assign(new Error('seek data/hole not supported'), { code: 'EOPNOTSUPP' });
    const r = Number(this.libc.lseek(this.fh.fd, offset, whence));
    if (r < 0) {
      const errno = this.libc.errno();
      if (errno === ENXIO) return this.sizeBytes; // no data (or hole) at or after offset
      throw errnoError('lseek', errno);
    }
    return Math.min(r, this.sizeBytes);
  }

  async seekData(offset: number): Promise<number> {
    return this.seek(offset, SEEK_DATA);
  }

  async seekHole(offset: number): Promise<number> {
    return this.seek(offset, SEEK_HOLE);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }
}
