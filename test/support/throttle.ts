/**
 * Slow storage for tests, made real by the kernel: a filesystem on a loop device of its own,
 * and a block I/O cgroup that limits one process's bytes per second on that device only.
 *
 *  - cgroup v2: a child of the unified root with the io controller enabled, `io.max`
 *    "MAJ:MIN rbps=N wbps=N";
 *  - cgroup v1 (a hybrid host, where io is bound to the v1 hierarchy, as on the dev/CI VM):
 *    a child of the blkio hierarchy, `blkio.throttle.read_bps_device` and `write_bps_device`.
 *
 * What it throttles: reads that reach the device (a page-cache miss) and writes the process
 * itself submits (O_DIRECT, fsync). Buffered writes are written back later by the kernel's
 * flusher threads and are not slowed under v1. So a test that wants slow copies makes its
 * source uncached (dropFileCache) and lets the throttled reads pace the copy. The loop
 * device is attached with direct I/O so its backing file is not cached twice.
 *
 * Needs root. Everything made here is undone by the cleanup functions, which only touch
 * what this module made (the cgroup it created, the mount and the loop device it attached).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// ---- loop filesystems ----------------------------------------------------------------

export interface LoopFs {
  /** Directory holding the image and the mount point. */
  root: string;
  image: string;
  dev: string;
  /** "MAJ:MIN" of the loop device. */
  majMin: string;
  mnt: string;
  /** Unmount, detach, remove the image (each step tried, errors collected and thrown at the end). */
  destroy(): void;
}

/** A fresh `fs` filesystem of `bytes` on a loop device (direct I/O), mounted under a temp directory. */
export function makeLoopFs(o: { bytes: number; fs: 'ext4' | 'xfs'; name: string }): LoopFs {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `${o.name}-`));
  const image = path.join(root, 'fs.img');
  const mnt = path.join(root, 'mnt');
  fs.mkdirSync(mnt);
  let dev: string | undefined;
  let mounted = false;
  const destroy = () => {
    const errors: string[] = [];
    if (mounted) {
      try {
        run('umount', [mnt]);
      } catch (e) {
        try {
          run('umount', ['-l', mnt]); // busy: detach now, freed with its last user
        } catch {
          errors.push(`umount ${mnt}: ${String(e)}`);
        }
      }
      mounted = false;
    }
    if (dev) {
      try {
        run('losetup', ['-d', dev]);
      } catch (e) {
        errors.push(`losetup -d ${dev}: ${String(e)}`);
      }
      dev = undefined;
    }
    fs.rmSync(root, { recursive: true, force: true });
    if (errors.length) throw new Error(errors.join('\n'));
  };
  try {
    fs.closeSync(fs.openSync(image, 'w'));
    fs.truncateSync(image, o.bytes);
    dev = run('losetup', ['-f', '--show', '--direct-io=on', image]).trim();
    if (o.fs === 'xfs') run('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', dev]);
    else run('mkfs.ext4', ['-q', '-F', dev]);
    run('mount', [dev, mnt]);
    mounted = true;
    const majMin = run('lsblk', ['-dno', 'MAJ:MIN', dev]).trim();
    return { root, image, dev, majMin, mnt, destroy };
  } catch (e) {
    try {
      destroy();
    } catch {
      // the first error is the one to report
    }
    throw e;
  }
}

/** Write back `file`'s dirty pages and drop it from the page cache (POSIX_FADV_DONTNEED through dd's nocache). */
export function dropFileCache(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
}

// ---- the throttle --------------------------------------------------------------------

export interface IoThrottle {
  kind: 'cgroup2 io.max' | 'cgroup1 blkio.throttle';
  dir: string;
  /** Put every thread of `pid` under the limit. */
  add(pid: number): void;
  /** Take `pid` out again (back to the parent group). */
  release(pid: number): void;
  /** Release whatever is still in the group and remove it. */
  destroy(): void;
}

const V2_ROOT = '/sys/fs/cgroup';
const V1_BLKIO = '/sys/fs/cgroup/blkio';

function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** Which throttle this host offers, or why none (for a loud skip). */
export function throttleSupport(): { kind: IoThrottle['kind'] } | { missing: string } {
  if (process.getuid?.() !== 0) return { missing: 'root (cgroups, loop devices, mount)' };
  // A container often mounts the hierarchy read-only: then no group can be made.
  const writable = (dir: string) => {
    try {
      fs.accessSync(dir, fs.constants.W_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (readOr(path.join(V2_ROOT, 'cgroup.controllers')).split(/\s+/).includes('io') && writable(V2_ROOT)) return { kind: 'cgroup2 io.max' };
  if (fs.existsSync(path.join(V1_BLKIO, 'blkio.throttle.read_bps_device')) && writable(V1_BLKIO)) return { kind: 'cgroup1 blkio.throttle' };
  return { missing: 'a writable cgroup v2 io controller or cgroup v1 blkio hierarchy with throttling' };
}

/** A cgroup limiting reads and writes on device `majMin` to `bytesPerSecond`. */
export function makeIoThrottle(name: string, majMin: string, bytesPerSecond: number): IoThrottle {
  const support = throttleSupport();
  if ('missing' in support) throw new Error(`no I/O throttle here: ${support.missing}`);
  const v2 = support.kind === 'cgroup2 io.max';
  const parent = v2 ? V2_ROOT : V1_BLKIO;
  if (v2 && !readOr(path.join(V2_ROOT, 'cgroup.subtree_control')).split(/\s+/).includes('io')) {
    fs.writeFileSync(path.join(V2_ROOT, 'cgroup.subtree_control'), '+io');
  }
  const dir = path.join(parent, `${name}-${process.pid}-${Date.now()}`);
  fs.mkdirSync(dir);
  try {
    if (v2) fs.writeFileSync(path.join(dir, 'io.max'), `${majMin} rbps=${bytesPerSecond} wbps=${bytesPerSecond}`);
    else {
      fs.writeFileSync(path.join(dir, 'blkio.throttle.read_bps_device'), `${majMin} ${bytesPerSecond}`);
      fs.writeFileSync(path.join(dir, 'blkio.throttle.write_bps_device'), `${majMin} ${bytesPerSecond}`);
    }
  } catch (e) {
    fs.rmdirSync(dir);
    throw e;
  }
  const procs = () =>
    readOr(path.join(dir, 'cgroup.procs'))
      .split('\n')
      .filter(Boolean)
      .map(Number);
  const release = (pid: number) => {
    try {
      fs.writeFileSync(path.join(parent, 'cgroup.procs'), String(pid));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e; // gone already
    }
  };
  return {
    kind: support.kind,
    dir,
    add(pid) {
      fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
    },
    release,
    destroy() {
      for (const pid of procs()) release(pid);
      // A group empties asynchronously after its last task left: retry briefly (bounded).
      for (let i = 0; ; i++) {
        try {
          fs.rmdirSync(dir);
          return;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
          if (i >= 50) throw e;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
    },
  };
}
