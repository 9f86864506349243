/**
 * The few libc calls the backing stores need and Node does not offer, bound
 * once through koffi (Linux only): lseek SEEK_DATA/SEEK_HOLE, fallocate,
 * copy_file_range(2) and ioctl(FICLONERANGE).
 *
 * The `*Async` forms run on a koffi worker (the libuv thread pool), so a long
 * copy or clone never blocks the event loop. Each resolves with the return
 * value and the errno that the worker saw right after the call (koffi >= 3.2
 * restores it for the completion callback), so no call is ever repeated to
 * learn why it failed.
 */
import { getSystemErrorName } from 'node:util';

/** What a libc call returned, and errno when it returned -1. */
export interface SysResult {
  res: number;
  errno: number;
}

export interface LibC {
  lseek(fd: number, offset: number, whence: number): SysResult;
  lseekAsync(fd: number, offset: number, whence: number): Promise<SysResult>;
  fallocateAsync(fd: number, mode: number, offset: number, len: number): Promise<SysResult>;
  /** copy_file_range(fdIn, &offIn, fdOut, &offOut, len, 0); the offsets are passed by value (never the file position). */
  copyFileRangeAsync(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): Promise<SysResult>;
  /** ioctl(dstFd, FICLONERANGE, {srcFd, srcOffset, length, dstOffset}); length 0 means "to the source's EOF". */
  cloneRangeAsync(srcFd: number, srcOffset: number, length: number, dstFd: number, dstOffset: number): Promise<SysResult>;
  /**
   * preadv2(fd, {buf, len}, 1, offset, RWF_NOWAIT) on the calling thread: reads
   * only what is already in the page cache and returns -1/EAGAIN instead of
   * waiting for the disk, so it never blocks the event loop on I/O.
   */
  preadNowait(fd: number, buf: Buffer, offset: number, length: number): SysResult;
  /**
   * One round trip for a small copy (./copy-lane.ts): if [offIn, offIn+len) of
   * fdIn is all data (SEEK_DATA at offIn is offIn and SEEK_HOLE is at or past
   * the end; skipped unless checkHoles), copy_file_range it whole to offOut of
   * fdOut, resuming short copies. `copied` is len on success; anything less
   * (a hole, EOF, an error: `errno`) and the caller takes the general path
   * for the whole range (every call it made is idempotent). Absent: no batching.
   */
  copyDataAsync?(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, checkHoles: boolean): Promise<CopyDataResult>;
}

/** What copyDataAsync did. */
export interface CopyDataResult {
  copied: number;
  errno: number;
}

export const SEEK_DATA = 3;
/** RWF_NOWAIT, linux/fs.h */
export const RWF_NOWAIT = 0x08;
export const SEEK_HOLE = 4;
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
/** _IOW(0x94, 13, struct file_clone_range), linux/fs.h */
export const FICLONERANGE = 0x4020940d;

export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const EBADF = 9;
export const EAGAIN = 11;
export const EXDEV = 18;
export const ENOTTY = 25;
export const EFBIG = 27;
export const EROFS = 30;
export const EDQUOT = 122;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ENOSYS = 38;
export const EOPNOTSUPP = 95;

let cache: LibC | null | undefined;
let loadError: Error | undefined;

function toNumber(v: number | bigint): number {
  return typeof v === 'bigint' ? Number(v) : v;
}

/** libc through koffi, or null where it cannot be loaded (non-Linux, no koffi build). */
export function loadLibC(): LibC | null {
  if (cache !== undefined) return cache;
  cache = null;
  if (process.platform !== 'linux') return null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const koffi = require('koffi');
    const lib = koffi.load('libc.so.6');
    const lseek = lib.func('int64_t lseek(int fd, int64_t offset, int whence)');
    const fallocate = lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
    // The kernel updates *off_in/*off_out; koffi copies the values into scratch
    // memory, so the file positions and the caller's numbers stay untouched.
    const copyFileRange = lib.func(
      'intptr_t copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags)');
    // Anonymous: koffi's type names are process-wide, and a module loaded
    // twice in one process (jest's per-file registries) must not collide.
    const fileCloneRange = koffi.struct({
      src_fd: 'int64_t', src_offset: 'uint64_t', src_length: 'uint64_t', dest_offset: 'uint64_t',
    });
    // ioctl is variadic in libc and koffi cannot call variadic functions
    // asynchronously; a third fixed pointer argument is the same call on the
    // Linux ABIs (x86-64, aarch64) for integer and pointer arguments.
    const ioctl = lib.func('ioctl', 'int', ['int', 'unsigned long', koffi.pointer(fileCloneRange)]);
    const iovec = koffi.struct({ base: 'void *', len: 'size_t' });
    const preadv2 = lib.func('preadv2', 'intptr_t', ['int', koffi.pointer(iovec), 'int', 'int64_t', 'int']);

    const async = (fn: { async: (...a: unknown[]) => void }, ...args: unknown[]): Promise<SysResult> =>
      new Promise((resolve, reject) => {
        fn.async(...args, (err: unknown, res: number | bigint) => {
          if (err) reject(err);
          else {
            const r = toNumber(res);
            resolve({ res: r, errno: r < 0 ? koffi.errno() : 0 });
          }
        });
      });

    cache = {
      lseek: (fd, offset, whence) => {
        const r = toNumber(lseek(fd, offset, whence));
        return { res: r, errno: r < 0 ? koffi.errno() : 0 };
      },
      lseekAsync: (fd, offset, whence) => async(lseek, fd, offset, whence),
      fallocateAsync: (fd, mode, offset, len) => async(fallocate, fd, mode, offset, len),
      copyFileRangeAsync: (fdIn, offIn, fdOut, offOut, len) => async(copyFileRange, fdIn, [offIn], fdOut, [offOut], len, 0),
      preadNowait: (fd, buf, offset, length) => {
        const r = toNumber(preadv2(fd, { base: buf, len: length }, 1, offset, RWF_NOWAIT));
        return { res: r, errno: r < 0 ? koffi.errno() : 0 };
      },
      cloneRangeAsync: (srcFd, srcOffset, length, dstFd, dstOffset) =>
        async(ioctl, dstFd, FICLONERANGE, { src_fd: srcFd, src_offset: srcOffset, src_length: length, dest_offset: dstOffset }),
    };
  } catch (err) {
    loadError = err as Error;
    cache = null;
  }
  return cache;
}

/** Why loadLibC() returned null, if it did (for logs and skipped tests). */
export function libcLoadError(): Error | undefined {
  return loadError;
}

/** A Node-style error for a failed libc call: `code` 'ENOSPC', 'EIO', ... (what the SCSI core maps to sense). */
export function errnoError(syscall: string, errno: number, path?: string): NodeJS.ErrnoException {
  let code = 'EIO';
  if (errno === EOPNOTSUPP) code = 'EOPNOTSUPP'; // Node names 95 ENOTSUP; the rest of xcopyd says EOPNOTSUPP
  else {
    try {
      const name = getSystemErrorName(-errno);
      if (name && !name.startsWith('Unknown')) code = name;
    } catch {
      // not an errno Node knows: EIO
    }
  }
  const e = new Error(`${syscall} failed: ${code} (errno ${errno})${path ? `: ${path}` : ''}`) as NodeJS.ErrnoException;
  e.errno = -errno; // Node's convention (fs errors carry negative errno)
  e.code = code;
  e.syscall = syscall;
  if (path) e.path = path;
  return e;
}
