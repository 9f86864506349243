/**
 * FileStore.copyRange, the third-party copy data mover: bytes, holes,
 * overlap (memmove), abort, progress, the buffered fallback and its pool,
 * kernel quirks (short copies, EINTR, EXDEV mid-way) injected through a
 * wrapped libc, ENOSPC from a tiny tmpfs, and the event loop during a 1 GiB
 * copy (printed, never asserted: tests do not assert on time).
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, writeSync, ftruncateSync, readFileSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { BackingStore, CopyRangeResult } from '../../scsi/backing-store';
import { BufferPool } from '../../src/backing/buffer-pool';
import { FileStore } from '../../src/backing/file-store';
import { EINTR, EINVAL, ENOSPC, EOPNOTSUPP, EXDEV, loadLibC, type LibC } from '../../src/backing/libc';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const linux = process.platform === 'linux' && loadLibC() !== null;
const d = linux ? describe : describe.skip;
if (!linux) console.warn('copy-range tests SKIPPED: needs Linux and koffi (libc)');
const isRoot = process.getuid?.() === 0;

/** A sparse file of `size` with `extents` of random data; returns the file's full content as a model. */
function makeFile(path: string, size: number, extents: Array<[number, number]>, seed = 1): Buffer {
  const model = Buffer.alloc(size);
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    let s = seed;
    for (const [off, len] of extents) {
      const data = randomFillSync(Buffer.allocUnsafe(len));
      data[0] = s++ & 0xff; // never a zero block by chance
      writeSync(fd, data, 0, len, off);
      data.copy(model, off);
    }
  } finally {
    closeSync(fd);
  }
  return model;
}

function sum(r: CopyRangeResult): number {
  return r.cloned + r.offloaded + r.buffered + r.holes;
}

/** The source layout used by most tests: data, a 4 MiB hole, data, hole to the end. */
const SIZE = 48 * MiB;
const EXTENTS: Array<[number, number]> = [[0, 5 * MiB + 123], [12 * MiB, 7 * MiB], [20 * MiB, 300 * KiB], [30 * MiB + 4096, 9 * MiB]];

/** Bytes of [lo, hi) outside the extents, rounded out to 4 KiB blocks (SEEK_DATA's granularity on ext4/XFS). */
function holeBytes(extents: Array<[number, number]>, lo: number, hi: number): number {
  let data = 0;
  for (const [off, len] of extents) {
    const a = Math.max(lo, Math.floor(off / 4096) * 4096);
    const b = Math.min(hi, Math.ceil((off + len) / 4096) * 4096);
    if (b > a) data += b - a;
  }
  return hi - lo - data;
}

/** Every 4 KiB block fully inside [lo, hi) is a hole in `path`'s store. */
async function expectHole(store: FileStore, lo: number, hi: number): Promise<void> {
  const a = Math.ceil(lo / 4096) * 4096;
  const b = Math.floor(hi / 4096) * 4096;
  expect(await store.seekHole(a)).toBe(a);
  expect(await store.seekData(a)).toBeGreaterThanOrEqual(b);
}

d('FileStore.copyRange', () => {
  let dir: string;
  const stores: FileStore[] = [];
  const open = async (name: string, extra: Partial<Parameters<typeof FileStore.open>[0]> = {}) => {
    const s = await FileStore.open({ path: join(dir, name), ...extra });
    stores.push(s);
    return s;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'xcopyd-copy-'));
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('cross-file, unaligned byte offsets: same bytes, holes punched (even over old data), progress monotonic', async () => {
    const srcModel = makeFile(join(dir, 'src'), SIZE, EXTENTS);
    // The destination is full of other data: a hole in the source must become a hole (zeros) here.
    const dstModel = makeFile(join(dir, 'dst'), SIZE, [[0, SIZE]], 99);
    const src = await open('src');
    const dst = await open('dst');
    const srcOff = 12345;
    const dstOff = 777;
    const len = 40 * MiB + 999;
    const progress: number[] = [];
    const r = await src.copyRange(dst, srcOff, dstOff, len, { chunkBytes: 1 * MiB, onProgress: (n) => progress.push(n) });
    srcModel.copy(dstModel, dstOff, srcOff, srcOff + len);
    expect(readFileSync(join(dir, 'dst')).equals(dstModel)).toBe(true);
    expect(r.bytes).toBe(len);
    expect(sum(r)).toBe(len);
    expect(r.offloaded + r.cloned).toBeGreaterThan(20 * MiB);
    expect(r.buffered).toBe(0);
    expect(r.holes).toBe(holeBytes(EXTENTS, srcOff, srcOff + len));
    const delta = dstOff - srcOff;
    await expectHole(dst, 5 * MiB + 4096 + delta, 12 * MiB + delta); // the source's data ends in the block of 5M+123
    await expectHole(dst, 20 * MiB + 300 * KiB + delta, 30 * MiB + 4096 + delta);
    // monotonic, in steps no larger than a chunk, ending at the length
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThan(progress[i - 1]);
    expect(progress[progress.length - 1]).toBe(len);
    expect(progress.length).toBeGreaterThan(20);
  });

  it('holes stay holes: allocated blocks of the destination follow the source (fs.stat blocks)', async () => {
    makeFile(join(dir, 'src'), SIZE, EXTENTS);
    const src = await open('src');
    const dst = await open('dst', { sizeBytes: SIZE });
    const r = await src.copyRange(dst, 0, 0, SIZE);
    const sBlocks = statSync(join(dir, 'src')).blocks * 512;
    const dBlocks = statSync(join(dir, 'dst')).blocks * 512;
    console.log(`holes preserved: src allocated ${sBlocks} B, dst allocated ${dBlocks} B, ${JSON.stringify(r)}`);
    expect(r.holes).toBe(holeBytes(EXTENTS, 0, SIZE));
    expect(dBlocks).toBeLessThanOrEqual(sBlocks + 64 * KiB);
    expect(dBlocks).toBeLessThan(SIZE / 2);
    expect(readFileSync(join(dir, 'dst')).equals(readFileSync(join(dir, 'src')))).toBe(true);
  });

  it('preserveHoles: false copies every byte (zeros allocated), no holes counted', async () => {
    const model = makeFile(join(dir, 'src'), 16 * MiB, [[0, MiB], [10 * MiB, MiB]]);
    const src = await open('src');
    const dst = await open('dst', { sizeBytes: 16 * MiB });
    const r = await src.copyRange(dst, 0, 0, 16 * MiB, { preserveHoles: false });
    expect(r.holes).toBe(0);
    expect(sum(r)).toBe(16 * MiB);
    expect(readFileSync(join(dir, 'dst')).equals(model)).toBe(true);
  });

  describe('within one file (memmove semantics)', () => {
    const cases: Array<[string, number, number, number]> = [
      ['disjoint, up', 1 * MiB + 5, 30 * MiB + 17, 9 * MiB + 1],
      ['disjoint, down', 30 * MiB, 3, 10 * MiB],
      ['overlap, dst above src by 3 MiB + 1 (kernel, chunks <= distance, backwards)', 2 * MiB + 100, 5 * MiB + 101, 20 * MiB],
      ['overlap, dst below src by 3 MiB - 1 (kernel, forwards)', 6 * MiB, 3 * MiB + 1, 25 * MiB + 7],
      ['overlap, dst above src by 4097 (buffers, backwards)', 4 * MiB, 4 * MiB + 4097, 30 * MiB],
      ['overlap, dst below src by 1 byte (buffers, forwards)', 4 * MiB + 1, 4 * MiB, 30 * MiB],
      ['same place', 8 * MiB, 8 * MiB, 8 * MiB],
    ];
    it.each(cases)('%s', async (_name, srcOff, dstOff, len) => {
      const model = makeFile(join(dir, 'one'), SIZE, EXTENTS);
      const s = await open('one');
      const progress: number[] = [];
      const r = await s.copyRange(s, srcOff, dstOff, len, { chunkBytes: 4 * MiB, onProgress: (n) => progress.push(n) });
      model.copyWithin(dstOff, srcOff, srcOff + len); // memmove
      expect(readFileSync(join(dir, 'one')).equals(model)).toBe(true);
      expect(r.bytes).toBe(len);
      if (srcOff !== dstOff) expect(sum(r)).toBe(len);
      for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThan(progress[i - 1]);
      expect(progress[progress.length - 1]).toBe(len);
    });

    it('the same file opened as two stores is recognised as one (dev/ino)', async () => {
      const model = makeFile(join(dir, 'one'), SIZE, EXTENTS);
      const a = await open('one');
      const b = await open('one');
      await a.copyRange(b, 0, 2 * MiB + 512, 20 * MiB, { chunkBytes: 8 * MiB });
      model.copyWithin(2 * MiB + 512, 0, 20 * MiB);
      expect(readFileSync(join(dir, 'one')).equals(model)).toBe(true);
    });
  });

  it('abort: rejects with the signal reason between chunks, stops writing', async () => {
    makeFile(join(dir, 'src'), SIZE, [[0, SIZE]]);
    const src = await open('src');
    const dst = await open('dst', { sizeBytes: SIZE });
    const ac = new AbortController();
    const progress: number[] = [];
    const reason = new Error('COPY OPERATION ABORT');
    await expect(src.copyRange(dst, 0, 0, SIZE, {
      chunkBytes: 2 * MiB, signal: ac.signal,
      onProgress: (n) => { progress.push(n); if (n >= 6 * MiB) ac.abort(reason); },
    })).rejects.toBe(reason);
    expect(progress[progress.length - 1]).toBe(6 * MiB);
    // Progress counted a prefix: that prefix is copied, and nothing past it was written.
    expect((await dst.read(0, 6 * MiB)).equals(await src.read(0, 6 * MiB))).toBe(true);
    expect(await dst.seekData(6 * MiB)).toBe(SIZE);
    // Already aborted: nothing starts.
    await expect(src.copyRange(dst, 0, 0, MiB, { signal: ac.signal })).rejects.toBe(reason);
  });

  it('abort in the buffered path: no buffer stays lent, rejects with the reason', async () => {
    makeFile(join(dir, 'src'), 32 * MiB, [[0, 32 * MiB]]);
    const src = await open('src');
    const dst = await open('dst', { sizeBytes: 32 * MiB });
    const pool = new BufferPool(2, 256 * KiB);
    const ac = new AbortController();
    const p = src.copyRange(dst, 0, 0, 32 * MiB, {
      mode: 'buffered', pool, chunkBytes: 4 * MiB, signal: ac.signal,
      onProgress: (n) => { if (n >= 8 * MiB) ac.abort(); },
    });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(pool.inUse).toBe(0);
  });

  it('forced fallback (mode buffered): pread/pwrite through the pool, counted in buffered', async () => {
    const model = makeFile(join(dir, 'src'), SIZE, EXTENTS);
    const dstModel = Buffer.alloc(SIZE);
    const src = await open('src');
    const dst = await open('dst', { sizeBytes: SIZE });
    const pool = new BufferPool(3, 1 * MiB);
    const r = await src.copyRange(dst, 333, 4444, 40 * MiB, { mode: 'buffered', pool });
    model.copy(dstModel, 4444, 333, 333 + 40 * MiB);
    expect(readFileSync(join(dir, 'dst')).equals(dstModel)).toBe(true);
    expect(r.offloaded + r.cloned).toBe(0);
    expect(r.buffered).toBeGreaterThan(20 * MiB);
    expect(r.holes).toBeGreaterThan(0);
    expect(sum(r)).toBe(40 * MiB);
    expect(pool.inUse).toBe(0);
    expect(pool.allocatedCount).toBeLessThanOrEqual(3);
  });

  it('a destination that is not a file: buffered, and no pooled buffer is reused while its write is in flight', async () => {
    const model = makeFile(join(dir, 'src'), 8 * MiB, [[0, 3 * MiB], [5 * MiB, 3 * MiB]]);
    const src = await open('src');
    const mem = Buffer.alloc(8 * MiB, 0xee);
    let inFlight = 0;
    let maxInFlight = 0;
    const slow: BackingStore = {
      blockSize: 512, physicalBlockSize: 512, sizeBytes: mem.length, readOnly: false, canPunchHole: false,
      canSeekData: false, canClone: false, supportsFua: false, thinProvisioned: false,
      read: async (o, l) => Buffer.from(mem.subarray(o, o + l)),
      write: async (o, data) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const snapshot = Buffer.from(data);
        await new Promise((r) => setTimeout(r, 3));
        // The buffer must still hold what it held when the write started.
        if (!data.equals(snapshot)) throw new Error('pooled buffer reused during a write');
        data.copy(mem, o);
        inFlight--;
      },
      flush: async () => {}, punchHole: async () => { throw new Error('no'); },
      seekData: async () => 0, seekHole: async () => mem.length, close: async () => {},
    };
    const pool = new BufferPool(2, 64 * KiB);
    const r = await src.copyRange(slow, 0, 0, 8 * MiB, { pool });
    expect(mem.equals(model)).toBe(true);
    expect(r.buffered).toBe(8 * MiB); // the hole became written zeros: counted as buffered, not as a hole
    expect(r.holes).toBe(0);
    expect(maxInFlight).toBeGreaterThanOrEqual(2); // the pipeline really overlapped writes
    expect(pool.inUse).toBe(0);
  });

  it('short copies, EINTR and then EXDEV part-way: resumed, retried, finished through buffers', async () => {
    const real = loadLibC()!;
    let calls = 0;
    let copied = 0;
    const log: string[] = [];
    const faulty: LibC = {
      ...real,
      copyFileRangeAsync: async (fi, oi, fo, oo, len) => {
        calls++;
        if (calls % 3 === 2) { log.push('EINTR'); return { res: -1, errno: EINTR }; }
        if (calls === 12) { log.push('EXDEV'); return { res: -1, errno: EXDEV }; }
        const short = Math.max(1, Math.min(len, 300 * KiB + 1)); // short copy
        log.push(`short ${short}/${len}`);
        const r = await real.copyFileRangeAsync(fi, oi, fo, oo, short);
        if (r.res > 0) copied += r.res;
        return r;
      },
    };
    const model = makeFile(join(dir, 'src'), 16 * MiB, [[0, 16 * MiB]]);
    const src = await FileStore.open({ path: join(dir, 'src'), libc: faulty });
    stores.push(src);
    const dst = await open('dst', { sizeBytes: 16 * MiB });
    const r = await src.copyRange(dst, 1, 3, 16 * MiB - 10, { mode: 'no-clone', chunkBytes: 1 * MiB });
    const dstModel = Buffer.alloc(16 * MiB);
    model.copy(dstModel, 3, 1, 16 * MiB - 9);
    expect(readFileSync(join(dir, 'dst')).equals(dstModel)).toBe(true);
    expect(log.filter((l) => l === 'EINTR').length).toBeGreaterThan(2);
    expect(log.filter((l) => l.startsWith('short')).length).toBe(7); // calls 1..11 less the EINTRs, then EXDEV
    expect(calls).toBe(12); // nothing asked of the kernel after EXDEV
    expect(r.offloaded).toBe(copied);
    expect(r.buffered).toBe(16 * MiB - 10 - r.offloaded);
    expect(sum(r)).toBe(16 * MiB - 10);
  });

  it('FICLONERANGE refusals: EINVAL leaves the chunk to copy_file_range, EOPNOTSUPP stops trying, ENOSPC surfaces', async () => {
    const real = loadLibC()!;
    const answers: number[] = [];
    let clones = 0;
    const faulty: LibC = {
      ...real,
      // The probe at open (a zero-length clone) succeeds, so both stores say they can clone.
      cloneRangeAsync: async (_s, _o, length) => {
        if (length === 0) return { res: 0, errno: 0 };
        clones++;
        const errno = answers.shift() ?? EOPNOTSUPP;
        return { res: -1, errno };
      },
    };
    // Four data extents: a clone is tried per extent while cloning is still on.
    const model = makeFile(join(dir, 'src'), 16 * MiB, [[0, 2 * MiB], [4 * MiB, 2 * MiB], [8 * MiB, 2 * MiB], [12 * MiB, 2 * MiB]]);
    const src = await FileStore.open({ path: join(dir, 'src'), libc: faulty });
    stores.push(src);
    const dst = await open('dst', { sizeBytes: 16 * MiB, libc: faulty });
    expect([src.canClone, dst.canClone]).toEqual([true, true]);
    answers.push(EINVAL, EINVAL); // then EOPNOTSUPP
    clones = 0;
    const r = await src.copyRange(dst, 0, 0, 16 * MiB);
    expect(clones).toBe(3); // two extents refused with EINVAL, the third's EOPNOTSUPP ends cloning
    expect(r).toMatchObject({ cloned: 0, offloaded: 8 * MiB, holes: 8 * MiB });
    expect(readFileSync(join(dir, 'dst')).equals(model)).toBe(true);
    answers.push(ENOSPC);
    await expect(src.copyRange(dst, 0, 0, 16 * MiB)).rejects.toMatchObject({ code: 'ENOSPC', syscall: 'ioctl(FICLONERANGE)' });
  });

  it('across filesystems (ext4 -> tmpfs /dev/shm): EXDEV falls back to buffers', async () => {
    if (!existsSync('/dev/shm') || statfsSync('/dev/shm').type === statfsSync(dir).type) {
      console.warn('SKIPPED cross-filesystem fallback: no /dev/shm on another filesystem type');
      return;
    }
    const shm = mkdtempSync('/dev/shm/xcopyd-copy-');
    try {
      const model = makeFile(join(dir, 'src'), 8 * MiB, [[MiB, 5 * MiB]]);
      const src = await open('src');
      const dst = await FileStore.open({ path: join(shm, 'dst'), sizeBytes: 8 * MiB });
      try {
        const r = await src.copyRange(dst, 0, 0, 8 * MiB);
        expect(readFileSync(join(shm, 'dst')).equals(model)).toBe(true);
        expect(r.offloaded).toBe(0);
        expect(r.buffered).toBe(5 * MiB);
        expect(r.holes).toBe(3 * MiB);
      } finally {
        await dst.close();
      }
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });

  it('to a block device (loop): copy_file_range refuses (EINVAL), buffers do it, holes become written zeros', async () => {
    if (!isRoot) {
      const msg = 'block-device fallback test SKIPPED: needs root for losetup';
      if (process.env.CI === 'true') throw new Error(`${msg} (CI=true: failing)`);
      console.warn(msg);
      return;
    }
    const img = join(dir, 'blk.img');
    makeFile(img, 16 * MiB, [[0, 16 * MiB]], 7); // old data everywhere
    const dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
    try {
      const model = makeFile(join(dir, 'src'), 16 * MiB, [[4096, 5 * MiB], [8 * MiB, 3 * MiB + 1]]);
      const src = await open('src');
      const blk = await FileStore.open({ path: dev });
      try {
        expect(blk.canPunchHole).toBe(false);
        const r = await src.copyRange(blk, 0, 0, 16 * MiB);
        expect(r.offloaded + r.cloned + r.holes).toBe(0);
        expect(r.buffered).toBe(16 * MiB);
        expect((await blk.read(0, 16 * MiB)).equals(model)).toBe(true);
      } finally {
        await blk.close();
      }
    } finally {
      execFileSync('losetup', ['-d', dev]);
    }
  });

  it('abort takes effect within a chunk: time from abort() to rejection printed', async () => {
    makeFile(join(dir, 'src'), 256 * MiB, [[0, 256 * MiB]]);
    const src = await open('src');
    const dst = await open('dst', { sizeBytes: 256 * MiB });
    const ac = new AbortController();
    let abortedAt = 0;
    // Abort 3 ms after the first chunk ends: while the next 64 MiB copy_file_range is in the kernel.
    const p = src.copyRange(dst, 0, 0, 256 * MiB, { signal: ac.signal, onProgress: () => {
      if (!abortedAt) {
        abortedAt = -1;
        setTimeout(() => { abortedAt = performance.now(); ac.abort(); }, 3);
      }
    } });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    console.log(`abort -> rejection: ${(performance.now() - abortedAt).toFixed(2)} ms (64 MiB chunks)`);
  });

  it('copy onto a read-only store -> EROFS', async () => {
    makeFile(join(dir, 'src'), MiB, [[0, MiB]]);
    makeFile(join(dir, 'ro'), MiB, []);
    const src = await open('src');
    const ro = await open('ro', { readOnly: true });
    await expect(src.copyRange(ro, 0, 0, 4096)).rejects.toMatchObject({ code: 'EROFS' });
  });

  describe('ENOSPC on a 6 MiB tmpfs', () => {
    let mnt: string | undefined;
    beforeAll(() => {
      if (!isRoot) {
        const msg = 'ENOSPC test SKIPPED: needs root to mount a small tmpfs';
        if (process.env.CI === 'true') throw new Error(`${msg} (CI=true: failing)`);
        console.warn(msg);
        return;
      }
      mnt = mkdtempSync(join(tmpdir(), 'xcopyd-enospc-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'xcopyd-enospc', mnt]);
    });
    afterAll(() => {
      if (!mnt) return;
      try {
        execFileSync('umount', [mnt]);
      } finally {
        rmSync(mnt, { recursive: true, force: true });
      }
    });

    it('copy_file_range inside the full filesystem surfaces ENOSPC (kernel path)', async () => {
      if (!mnt) return;
      const dirOnTmpfs = join(mnt, 'k');
      mkdirSync(dirOnTmpfs);
      makeFile(join(dirOnTmpfs, 'src'), 4 * MiB, [[0, 4 * MiB]]);
      const src = await FileStore.open({ path: join(dirOnTmpfs, 'src') });
      const dst = await FileStore.open({ path: join(dirOnTmpfs, 'dst'), sizeBytes: 4 * MiB });
      try {
        const err = await src.copyRange(dst, 0, 0, 4 * MiB).then(() => null, (e) => e);
        expect(err).toMatchObject({ code: 'ENOSPC' });
        console.log(`ENOSPC (kernel path): ${err.message}`);
      } finally {
        await src.close();
        await dst.close();
        rmSync(dirOnTmpfs, { recursive: true, force: true });
      }
    });

    it('the buffered path surfaces ENOSPC too, and returns every buffer', async () => {
      if (!mnt) return;
      makeFile(join(dir, 'src'), 12 * MiB, [[0, 12 * MiB]]);
      const src = await open('src');
      const dst = await FileStore.open({ path: join(mnt, 'dst'), sizeBytes: 12 * MiB });
      const pool = new BufferPool(4, 1 * MiB);
      try {
        await expect(src.copyRange(dst, 0, 0, 12 * MiB, { pool })).rejects.toMatchObject({ code: 'ENOSPC' });
        expect(pool.inUse).toBe(0);
      } finally {
        await dst.close().catch(() => undefined);
        rmSync(join(mnt, 'dst'), { force: true });
      }
    });
  });

  it('1 GiB copy: the event loop keeps turning (max delay printed, not asserted), bytes identical', async () => {
    const path = join(dir, 'big');
    const fd = openSync(path, 'w');
    const block = randomFillSync(Buffer.allocUnsafe(8 * MiB));
    for (let off = 0; off < GiB; off += block.length) {
      block.writeUInt32LE(off / block.length, 0); // every block different
      writeSync(fd, block, 0, block.length, off);
    }
    closeSync(fd);
    const src = await open('big');
    const dst = await open('big.copy', { sizeBytes: GiB });
    const h = monitorEventLoopDelay({ resolution: 1 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    h.enable();
    const t0 = process.hrtime.bigint();
    const r = await src.copyRange(dst, 0, 0, GiB);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    h.disable();
    clearInterval(timer);
    console.log(`1 GiB copyRange: ${ms.toFixed(0)} ms (${(1000 / ms).toFixed(2)} GiB/s), event loop delay max ${(h.max / 1e6).toFixed(2)} ms, ` +
      `p99 ${(h.percentile(99) / 1e6).toFixed(2)} ms, mean ${(h.mean / 1e6).toFixed(2)} ms, 5 ms timer ticks ${ticks}; ${JSON.stringify(r)}`);
    expect(sum(r)).toBe(GiB);
    // Compare in 64 MiB pieces.
    for (let off = 0; off < GiB; off += 64 * MiB) {
      const [a, b] = await Promise.all([src.read(off, 64 * MiB), dst.read(off, 64 * MiB)]);
      if (!a.equals(b)) throw new Error(`1 GiB copy differs in [${off}, ${off + 64 * MiB})`);
    }
  }, 120_000);
});
