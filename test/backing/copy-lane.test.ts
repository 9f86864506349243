/**
 * The copy lane (src/backing/copy-lane.ts): copies' system calls run on a
 * bounded set of worker threads of their own, at a lower CPU priority, never
 * on libuv's thread pool (which small commands need: issue 11 point 4).
 *  - FileStore copies go through it: while copies run, the process has
 *    threads at the lane's nice value, never more than its thread count,
 *    however many copies run at once (before: koffi's async calls, one pool
 *    thread per copy call, no such thread);
 *  - its calls give the kernel's answers (bytes, errno);
 *  - a worker that dies hands its call and every queued one to koffi's
 *    async path, and the copies still complete with the right bytes;
 *  - a call reaches its worker through shared memory, not a message
 *    (issue 12: a postMessage per call cost the event loop ~20 us).
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FileStore } from '../../src/backing/file-store';
import { CopyLane, laneLibC } from '../../src/backing/copy-lane';
import { EBADF, SEEK_DATA, loadLibC, type LibC } from '../../src/backing/libc';

const MiB = 1024 * 1024;
const libc = loadLibC();
const d = process.platform === 'linux' && libc ? describe : describe.skip;

/** Nice values of this process's threads other than the main one. */
function threadNices(): number[] {
  const out: number[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    if (Number(tid) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // fields after the parenthesised comm: state is field 3, nice field 19
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push(Number(rest[16]));
    } catch {
      // the thread ended
    }
  }
  return out;
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xcopyd-copy-lane-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

d('copy lane', () => {
  it('FileStore copies run on at most XCOPYD_COPY_THREADS threads of nice XCOPYD_COPY_NICE, with the right bytes', async () => {
    const size = 24 * MiB;
    const data = randomFillSync(Buffer.allocUnsafe(size));
    writeFileSync(join(dir, 'src.img'), data);
    const src = await FileStore.open({ path: join(dir, 'src.img') });
    const dst = await FileStore.open({ path: join(dir, 'dst.img'), sizeBytes: 16 * size });
    try {
      const lanesBefore = threadNices().filter((n) => n === 10).length;
      let maxLaneThreads = 0;
      const watch = setInterval(() => {
        maxLaneThreads = Math.max(maxLaneThreads, threadNices().filter((n) => n === 10).length - lanesBefore);
      }, 2);
      // 16 copies at once, each in 1 MiB calls: many more calls than lane threads.
      await Promise.all(Array.from({ length: 16 }, (_, i) => src.copyRange(dst, 0, i * size, size, { chunkBytes: MiB })));
      clearInterval(watch);
      maxLaneThreads = Math.max(maxLaneThreads, threadNices().filter((n) => n === 10).length - lanesBefore);
      expect(maxLaneThreads).toBeGreaterThanOrEqual(1);
      expect(maxLaneThreads).toBeLessThanOrEqual(4);
      for (let i = 0; i < 16; i++) expect((await dst.read(i * size, size)).equals(data)).toBe(true);
    } finally {
      await src.close();
      await dst.close();
    }
  });

  it('answers as the kernel does: bytes copied, SEEK_DATA positions, errno', async () => {
    const lane = new CopyLane({ threads: 2, nice: 0, fallback: libc! });
    const a = join(dir, 'a.img');
    const b = join(dir, 'b.img');
    const data = randomFillSync(Buffer.allocUnsafe(3 * MiB));
    writeFileSync(a, data);
    writeFileSync(b, Buffer.alloc(0));
    const fs = await import('node:fs/promises');
    const fa = await fs.open(a, 'r');
    const fb = await fs.open(b, 'r+');
    try {
      const lc = laneLibC(libc!, lane);
      const r = await lc.copyFileRangeAsync(fa.fd, MiB, fb.fd, 0, 2 * MiB);
      expect(r).toEqual({ res: 2 * MiB, errno: 0 });
      expect(readFileSync(b).equals(data.subarray(MiB))).toBe(true);
      expect(await lc.lseekAsync(fa.fd, 4096, SEEK_DATA)).toEqual({ res: 4096, errno: 0 });
      expect(await lc.copyFileRangeAsync(12345, 0, fb.fd, 0, 10)).toEqual({ res: -1, errno: EBADF });
    } finally {
      await fa.close();
      await fb.close();
      await lane.close();
    }
  });

  it('a copy of one chunk of allocated data is one round trip (SEEK_DATA, SEEK_HOLE and copy_file_range in the worker); one with a hole takes the general path', async () => {
    const lane = new CopyLane({ threads: 2, nice: 0, fallback: libc! });
    const calls: string[] = [];
    const inner = laneLibC(libc!, lane);
    const counted: LibC = {
      ...inner,
      lseekAsync: (...a) => (calls.push('lseek'), inner.lseekAsync(...a)),
      copyFileRangeAsync: (...a) => (calls.push('copy_file_range'), inner.copyFileRangeAsync(...a)),
      cloneRangeAsync: (...a) => (calls.push('clone'), inner.cloneRangeAsync(...a)),
      fallocateAsync: (...a) => (calls.push('fallocate'), inner.fallocateAsync(...a)),
      copyDataAsync: (...a) => (calls.push('copyData'), inner.copyDataAsync!(...a)),
    };
    const data = randomFillSync(Buffer.allocUnsafe(4 * MiB));
    writeFileSync(join(dir, 'e.img'), data);
    const src = await FileStore.open({ path: join(dir, 'e.img'), libc: counted });
    const dst = await FileStore.open({ path: join(dir, 'f.img'), sizeBytes: 8 * MiB, libc: counted });
    try {
      for (const size of [64 * 1024, 2 * MiB]) {
        calls.length = 0;
        const r = await src.copyRange(dst, MiB, 0, size);
        // the probe at open said ext4/tmpfs cannot clone: no FICLONERANGE is tried either
        expect(calls).toEqual(src.canClone ? ['clone', 'copy_file_range'] : ['copyData']);
        expect(r).toMatchObject({ bytes: size, offloaded: size, holes: 0 });
        expect((await dst.read(0, size)).equals(data.subarray(MiB, MiB + size))).toBe(true);
      }
      // 1 MiB past the 4 MiB of data: a hole, so the batched call declines and the walk runs
      calls.length = 0;
      const r = await src.copyRange(dst, 3 * MiB, 4 * MiB, 2 * MiB);
      expect(calls[0]).toBe('copyData');
      expect(calls).toContain('lseek');
      expect(r).toMatchObject({ bytes: 2 * MiB, offloaded: MiB });
      expect((await dst.read(4 * MiB, MiB)).equals(data.subarray(3 * MiB))).toBe(true);
      expect((await dst.read(5 * MiB, MiB)).every((x) => x === 0)).toBe(true);
    } finally {
      await src.close();
      await dst.close();
      await lane.close();
    }
  });

  it('a call posts no message to its worker (the call goes through shared memory), and answers right', async () => {
    const lane = new CopyLane({ threads: 2, nice: 0, fallback: libc! });
    const lc = laneLibC(libc!, lane);
    const data = randomFillSync(Buffer.allocUnsafe(2 * MiB));
    writeFileSync(join(dir, 'p.img'), data);
    writeFileSync(join(dir, 'q.img'), Buffer.alloc(2 * MiB));
    const fs = await import('node:fs/promises');
    const fa = await fs.open(join(dir, 'p.img'), 'r');
    const fb = await fs.open(join(dir, 'q.img'), 'r+');
    const posted = jest.spyOn(Worker.prototype, 'postMessage');
    try {
      for (let i = 0; i < 8; i++) {
        // copyData, copy_file_range, lseek: each answers with the kernel's numbers
        expect(await lc.copyDataAsync!(fa.fd, i * 128 * 1024, fb.fd, i * 128 * 1024, 64 * 1024, true)).toEqual({ copied: 64 * 1024, errno: 0 });
        expect(await lc.copyFileRangeAsync(fa.fd, i * 128 * 1024 + 65536, fb.fd, i * 128 * 1024 + 65536, 65536)).toEqual({ res: 65536, errno: 0 });
        expect(await lc.lseekAsync(fa.fd, i * 4096, SEEK_DATA)).toEqual({ res: i * 4096, errno: 0 });
      }
      const many = await Promise.all(Array.from({ length: 6 }, (_, i) => lc.lseekAsync(fa.fd, 3 * MiB + i, SEEK_DATA)));
      for (const r of many) expect(r.errno).toBe(6); // ENXIO past EOF, on whichever worker took it
      expect(posted).not.toHaveBeenCalled();
      expect(lane.working).toBe(true);
      // the first MiB, copied in 64 KiB pieces by the two kinds of call
      expect((await fb.read(Buffer.alloc(MiB), 0, MiB, 0)).buffer.equals(data.subarray(0, MiB))).toBe(true);
    } finally {
      posted.mockRestore();
      await fa.close();
      await fb.close();
      await lane.close();
    }
  });

  it('closing a store waits for the copies that use its fd (their calls run on other threads)', async () => {
    const data = randomFillSync(Buffer.allocUnsafe(32 * MiB));
    writeFileSync(join(dir, 'g.img'), data);
    const src = await FileStore.open({ path: join(dir, 'g.img') });
    const dst = await FileStore.open({ path: join(dir, 'h.img'), sizeBytes: 32 * MiB });
    let copied = false;
    const copy = src.copyRange(dst, 0, 0, 32 * MiB, { chunkBytes: MiB }).then((r) => {
      copied = true;
      return r;
    });
    await dst.close();
    expect(copied).toBe(true);
    expect(await copy).toMatchObject({ bytes: 32 * MiB, offloaded: 32 * MiB, buffered: 0 });
    await src.close();
    expect(readFileSync(join(dir, 'h.img')).equals(data)).toBe(true);
  });

  it('a lane whose workers die hands their calls to koffi\'s async path: every call still answers', async () => {
    const lane = new CopyLane({ threads: 2, nice: 0, fallback: libc! });
    const lc = laneLibC(libc!, lane);
    const a = join(dir, 'c.img');
    const b = join(dir, 'd.img');
    const data = randomFillSync(Buffer.allocUnsafe(8 * MiB));
    writeFileSync(a, data);
    writeFileSync(b, Buffer.alloc(8 * MiB));
    const fs = await import('node:fs/promises');
    const fa = await fs.open(a, 'r');
    const fb = await fs.open(b, 'r+');
    try {
      const calls = Array.from({ length: 8 }, (_, i) => lc.copyFileRangeAsync(fa.fd, i * MiB, fb.fd, i * MiB, MiB));
      expect(lane.waiting).toBe(6); // two on the workers, six in the FIFO
      await lane.terminate();
      const results = await Promise.all(calls);
      expect(lane.working).toBe(false);
      for (const r of results) expect(r).toEqual({ res: MiB, errno: 0 });
      expect(readFileSync(b).equals(data)).toBe(true);
      // and later calls go straight to the fallback
      expect(await lc.copyFileRangeAsync(fa.fd, 0, fb.fd, 0, 4096)).toEqual({ res: 4096, errno: 0 });
    } finally {
      await fa.close();
      await fb.close();
      await lane.close();
    }
  });
});
