/**
 * copyRange on XFS with reflink=1: the copy becomes FICLONERANGE (shared
 * extents, no data written), proven by the result's `cloned`, by FIEMAP's
 * shared flag (xfs_io -c 'fiemap -v') and by the filesystem's used space.
 * Also XFS with reflink=0: canClone is false and copy_file_range does it.
 *
 * Needs root (loop device, mkfs.xfs, mount). Skips loudly without; under
 * CI=true it fails instead (CI runs as root and installs xfsprogs). The loop
 * devices, mounts and images are removed in afterAll whatever happened.
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../src/backing/file-store';
import { loadLibC } from '../../src/backing/libc';
import { describeIf, findInPath, missingPrerequisite, requireTools } from '../interop/harness';

const MiB = 1024 * 1024;

/** Root, Linux libc through koffi, mkfs.xfs and losetup: a loud skip without them, a failure under CI=true. */
const ready =
  (process.getuid?.() === 0 || missingPrerequisite('root (loop devices, mkfs.xfs, mount)', 'run as root')) &&
  (process.platform === 'linux' && loadLibC() !== null ||
    missingPrerequisite('Linux libc through koffi', 'run on Linux with koffi installed')) &&
  requireTools([
    ['mkfs.xfs', 'xfsprogs'],
    ['xfs_io', 'xfsprogs'],
    ['losetup', 'mount'],
  ]);
const which = (cmd: string): string => findInPath(cmd)!;

interface Fs {
  img: string;
  dev?: string;
  mnt: string;
  mounted?: boolean;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Image, loop device, XFS, mount. Registered in `made` first, so a failure half-way is still cleaned up. */
function makeXfs(root: string, name: string, reflink: boolean, made: Fs[]): Fs {
  const fs: Fs = { img: join(root, `${name}.img`), mnt: join(root, name) };
  made.push(fs);
  mkdirSync(fs.mnt);
  run('truncate', ['-s', '1G', fs.img]);
  fs.dev = run('losetup', ['-f', '--show', fs.img]).trim();
  run(which('mkfs.xfs')!, ['-q', '-f', '-m', `reflink=${reflink ? 1 : 0}`, fs.dev]);
  run('mount', [fs.dev, fs.mnt]);
  fs.mounted = true;
  return fs;
}

function destroy(fs: Fs): void {
  const errors: unknown[] = [];
  const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
  if (fs.mounted) attempt(() => {
    try {
      run('umount', [fs.mnt]);
    } catch {
      run('umount', ['-l', fs.mnt]); // busy: detach now, freed when the last user goes
    }
  });
  if (fs.dev) attempt(() => run('losetup', ['-d', fs.dev!]));
  attempt(() => rmSync(fs.img, { force: true }));
  attempt(() => rmSync(fs.mnt, { recursive: true, force: true }));
  if (errors.length) console.error('reflink-xfs cleanup:', errors);
}

function randomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const block = randomFillSync(Buffer.allocUnsafe(8 * MiB));
  for (let off = 0; off < size; off += block.length) {
    block.writeUInt32LE(off / block.length, 0);
    writeSync(fd, block, 0, Math.min(block.length, size - off), off);
  }
  // On disk before the copy: a clone first writes back dirty source pages, which is not what we time.
  fsyncSync(fd);
  closeSync(fd);
}

/** Bytes in extents that FIEMAP flags shared (0x2000), from `xfs_io -c 'fiemap -v'`. */
function sharedBytes(path: string): number {
  const out = run(which('xfs_io')!, ['-r', '-c', 'fiemap -v', path]);
  let shared = 0;
  for (const line of out.split('\n')) {
    // "   0: [0..524287]:     96..524383       0 (96..524383)    524288 0x2000"
    const m = /^\s*\d+:\s*\[\d+\.\.\d+\]:\s+\d+\.\.\d+.*\s(\d+)\s+(0x[0-9a-f]+)\s*$/i.exec(line);
    if (m && (parseInt(m[2], 16) & 0x2000)) shared += Number(m[1]) * 512;
  }
  return shared;
}

function usedBytes(mnt: string): number {
  const s = statfsSync(mnt);
  return (s.blocks - s.bfree) * s.bsize;
}

describeIf(ready)('copyRange on XFS', () => {
  let root: string;
  const made: Fs[] = [];
  let xfs: Fs;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'xcopyd-xfs-'));
    xfs = makeXfs(root, 'reflink', true, made);
  });
  afterAll(() => {
    for (const fs of made.splice(0).reverse()) destroy(fs);
    rmSync(root, { recursive: true, force: true });
  });

  it('256 MiB between two files is a clone: cloned == 256 MiB, extents shared, space not doubled', async () => {
    const size = 256 * MiB;
    randomFile(join(xfs.mnt, 'src'), size);
    const src = await FileStore.open({ path: join(xfs.mnt, 'src') });
    const dst = await FileStore.open({ path: join(xfs.mnt, 'dst'), sizeBytes: size });
    try {
      expect(src.canClone).toBe(true);
      expect(dst.canClone).toBe(true);
      const used0 = usedBytes(xfs.mnt);
      const t0 = process.hrtime.bigint();
      const r = await src.copyRange(dst, 0, 0, size);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const used1 = usedBytes(xfs.mnt);
      console.log(`XFS reflink: 256 MiB copyRange in ${ms.toFixed(1)} ms; used space +${((used1 - used0) / MiB).toFixed(2)} MiB; ` +
        `${JSON.stringify(r)}; shared per fiemap: src ${sharedBytes(join(xfs.mnt, 'src')) / MiB} MiB, dst ${sharedBytes(join(xfs.mnt, 'dst')) / MiB} MiB`);
      expect(r).toMatchObject({ bytes: size, cloned: size, offloaded: 0, buffered: 0, holes: 0 });
      expect(sharedBytes(join(xfs.mnt, 'dst'))).toBe(size);
      expect(used1 - used0).toBeLessThan(size / 8); // metadata only, not another 256 MiB
      expect(readFileSync(join(xfs.mnt, 'dst')).equals(readFileSync(join(xfs.mnt, 'src')))).toBe(true);
      // Copy-on-write: writing the copy leaves the source alone.
      await dst.write(4096, Buffer.alloc(4096, 0x5a));
      expect((await src.read(4096, 4096)).equals(Buffer.alloc(4096, 0x5a))).toBe(false);
    } finally {
      await src.close();
      await dst.close();
    }
  }, 120_000);

  it('unaligned offsets: the block-aligned middle is cloned, head and tail by copy_file_range', async () => {
    const src = await FileStore.open({ path: join(xfs.mnt, 'src') });
    const dst = await FileStore.open({ path: join(xfs.mnt, 'dst2'), sizeBytes: 128 * MiB });
    try {
      const srcOff = 3 * 4096 + 100;
      const dstOff = 7 * 4096 + 100; // same offset within a block: can line up
      const len = 64 * MiB + 50;
      const r = await src.copyRange(dst, srcOff, dstOff, len);
      const head = 4096 - 100;
      const tail = (srcOff + len) % 4096;
      expect(r).toMatchObject({ bytes: len, cloned: len - head - tail, offloaded: head + tail, buffered: 0 });
      expect((await dst.read(dstOff, len)).equals(await src.read(srcOff, len))).toBe(true);
      // Offsets that can never line up: no clone, copy_file_range moves it all.
      const r2 = await src.copyRange(dst, 1, 100 * MiB, 8 * MiB);
      expect(r2).toMatchObject({ cloned: 0, offloaded: 8 * MiB, buffered: 0 });
      expect((await dst.read(100 * MiB, 8 * MiB)).equals(await src.read(1, 8 * MiB))).toBe(true);
    } finally {
      await src.close();
      await dst.close();
    }
  }, 60_000);

  it('within one file, overlapping by 16 MiB: cloned backwards in pieces, memmove result', async () => {
    const path = join(xfs.mnt, 'one');
    randomFile(path, 96 * MiB);
    const model = readFileSync(path);
    const s = await FileStore.open({ path });
    try {
      const r = await s.copyRange(s, 0, 16 * MiB, 64 * MiB);
      model.copyWithin(16 * MiB, 0, 64 * MiB);
      expect(r.cloned).toBe(64 * MiB);
      expect(readFileSync(path).equals(model)).toBe(true);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('XFS with reflink=0: canClone false, FICLONERANGE refused, copy_file_range moves the data', async () => {
    const plain = makeXfs(root, 'noreflink', false, made);
    randomFile(join(plain.mnt, 'src'), 32 * MiB);
    const src = await FileStore.open({ path: join(plain.mnt, 'src') });
    const dst = await FileStore.open({ path: join(plain.mnt, 'dst'), sizeBytes: 32 * MiB });
    try {
      expect(src.canClone).toBe(false);
      const r = await src.copyRange(dst, 0, 0, 32 * MiB);
      expect(r).toMatchObject({ cloned: 0, offloaded: 32 * MiB, buffered: 0 });
      expect(readFileSync(join(plain.mnt, 'dst')).equals(readFileSync(join(plain.mnt, 'src')))).toBe(true);
    } finally {
      await src.close();
      await dst.close();
    }
  }, 60_000);
});
