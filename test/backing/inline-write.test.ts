/**
 * Inline writes (src/backing/file-store.ts, INLINE_WRITE_MAX): a small whole-page write is
 * done on the event loop when nothing else is writing, else it goes to the write lane or the
 * thread pool as before. What must hold whichever path a write takes: order with writes
 * already queued, FUA flushed before the write resolves, the same errors (code and sense), and
 * the event loop handed back to the lane when pwrite turns slow.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FileStore, INLINE_BACKOFF_MS, INLINE_SLOW_MS, INLINE_STALL_MS, INLINE_WRITE_MAX } from '../../src/backing/file-store';
import { storeErrorToSense } from '../../scsi/mutation';
import { SenseError } from '../../scsi/sense';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The next turn of the event loop (the one-inline-write-per-turn rule starts over). */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

let dir: string;
const stores: FileStore[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-inline-'));
  // A clock that never moves: no write looks slow (a preempted pwrite on a loaded machine would
  // turn inline writes off and make the path counts below wrong); the last describe drives it.
  jest.spyOn(performance, 'now').mockReturnValue(1e12);
});
afterEach(async () => {
  jest.restoreAllMocks();
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});
async function open(size = 8 * MiB, p = path.join(dir, 'lun.img')): Promise<FileStore> {
  const s = await FileStore.open({ path: p, sizeBytes: size });
  stores.push(s);
  await nextTurn();
  return s;
}
const pattern = (n: number, seed: number) => crypto.createHash('sha256').update(String(seed)).digest().toString('hex').repeat(Math.ceil(n / 64)).slice(0, n);
const bytes = (n: number, seed: number) => Buffer.from(pattern(n, seed), 'latin1');

describe('which path a write takes', () => {
  it('a whole-page write up to INLINE_WRITE_MAX with nothing in flight is written on the event loop, before write() returns', async () => {
    const s = await open();
    const file = path.join(dir, 'lun.img');
    for (const len of [4 * KiB, INLINE_WRITE_MAX]) {
      const data = bytes(len, len);
      const p = s.write(8 * 4096, data);
      // Already in the file: the pwrite ran synchronously inside write().
      const fd = fs.openSync(file, 'r');
      const now = Buffer.alloc(len);
      fs.readSync(fd, now, 0, len, 8 * 4096);
      fs.closeSync(fd);
      expect(now.equals(data)).toBe(true);
      await p;
      await nextTurn();
    }
    expect(s.writePaths).toEqual({ inline: 2, lane: 0, pool: 0 });
  });

  it('not inline: part of a page, larger than INLINE_WRITE_MAX, or a second write in the same turn of the event loop', async () => {
    const s = await open();
    await s.write(512, bytes(512, 1)); // part of a page: lane
    await nextTurn();
    await s.write(0, bytes(INLINE_WRITE_MAX + 4096, 2)); // too large for inline (and the lane): pool
    await nextTurn();
    const a = s.write(0, bytes(4096, 3)); // inline
    const b = s.write(4096, bytes(4096, 4)); // same turn: lane
    await Promise.all([a, b]);
    expect(s.writePaths).toEqual({ inline: 1, lane: 2, pool: 1 });
    expect((await s.read(0, 8192)).equals(Buffer.concat([bytes(4096, 3), bytes(4096, 4)]))).toBe(true);
  });
});

describe('order', () => {
  it('a write issued while an earlier one is queued on the lane is not written before it (same bytes: the later one wins)', async () => {
    const s = await open();
    await nextTurn();
    const first = s.write(0, bytes(512, 10)); // lane (part of a page)
    const second = s.write(0, bytes(4096, 11)); // would be inline if it did not wait for the first
    await Promise.all([first, second]);
    expect(s.writePaths.inline).toBe(0);
    expect((await s.read(0, 4096)).equals(bytes(4096, 11))).toBe(true);
  });

  it('a write issued while a thread-pool write of the same store is in flight does not go inline', async () => {
    const s = await open();
    // Hold the pool write in flight until the small one was issued (else it may finish first).
    const fh = (s as unknown as { fh: fs.promises.FileHandle }).fh;
    const proto = Object.getPrototypeOf(fh) as { write: (...a: unknown[]) => Promise<unknown> };
    const realWrite = proto.write;
    let open_: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open_ = r));
    jest.spyOn(proto, 'write').mockImplementation(async function (this: unknown, ...a: unknown[]) {
      await gate;
      return realWrite.apply(this, a);
    });
    const big = s.write(0, bytes(256 * KiB, 12)); // pool
    await nextTurn(); // a new turn: only the in-flight write keeps the next one off the event loop
    const small = s.write(512 * KiB, bytes(4096, 13));
    open_();
    await Promise.all([big, small]);
    expect(s.writePaths).toEqual({ inline: 0, lane: 1, pool: 1 });
    expect((await s.read(0, 256 * KiB)).equals(bytes(256 * KiB, 12))).toBe(true);
    expect((await s.read(512 * KiB, 4096)).equals(bytes(4096, 13))).toBe(true);
  });

  it('many writes racing (inline, lane and pool mixed, two stores): every byte where it was asked', async () => {
    const a = await open(4 * MiB, path.join(dir, 'a.img'));
    const b = await open(4 * MiB, path.join(dir, 'b.img'));
    const expectA = Buffer.alloc(4 * MiB);
    const expectB = Buffer.alloc(4 * MiB);
    const sizes = [4 * KiB, 512, 8 * KiB, 64 * KiB, 128 * KiB, 4 * KiB];
    // Disjoint ranges (the SCSI range lock orders overlapping ones), issued in bursts with turns between.
    let off = 0;
    for (let round = 0; round < 24; round++) {
      const burst: Array<Promise<void>> = [];
      for (let k = 0; k < 1 + (round % 4); k++) {
        const len = sizes[(round + k) % sizes.length];
        const store = (round + k) % 2 ? a : b;
        const into = store === a ? expectA : expectB;
        const data = bytes(len, round * 10 + k);
        data.copy(into, off);
        burst.push(store.write(off, data));
        off += len;
      }
      if (round % 3 === 0) await Promise.all(burst);
      else await nextTurn();
    }
    await a.flush();
    await b.flush();
    await nextTurn();
    expect((await a.read(0, 4 * MiB)).equals(expectA)).toBe(true);
    expect((await b.read(0, 4 * MiB)).equals(expectB)).toBe(true);
    const sum = (k: 'inline' | 'lane' | 'pool') => a.writePaths[k] + b.writePaths[k];
    expect(sum('inline')).toBeGreaterThan(0);
    expect(sum('lane')).toBeGreaterThan(0);
    expect(sum('pool')).toBeGreaterThan(0);
  });
});

describe('FUA', () => {
  it('an inline FUA write resolves only after fdatasync of the file completed', async () => {
    const s = await open();
    const events: string[] = [];
    // The module object itself (the `import * as` namespace forwards to it, read-only).
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const nodeFs = require('node:fs') as typeof fs;
    const realWrite = nodeFs.writeSync;
    jest.spyOn(nodeFs, 'writeSync').mockImplementation(((...a: Parameters<typeof fs.writeSync>) => {
      events.push('pwrite');
      return (realWrite as (...x: unknown[]) => number)(...a);
    }) as typeof fs.writeSync);
    const fh = (s as unknown as { fh: fs.promises.FileHandle }).fh;
    const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
    const realSync = proto.datasync;
    jest.spyOn(proto, 'datasync').mockImplementation(async function (this: fs.promises.FileHandle) {
      events.push('datasync');
      await realSync.call(this);
      events.push('synced');
    });
    await s.write(0, bytes(4096, 20), { fua: true });
    events.push('resolved');
    expect(s.writePaths.inline).toBe(1);
    expect(events).toEqual(['pwrite', 'datasync', 'synced', 'resolved']);
    events.length = 0;
    await nextTurn();
    await s.write(4096, bytes(4096, 21)); // no FUA: no flush
    expect(events).toEqual(['pwrite']);
  });
});

describe('errors: the same whichever path', () => {
  const isRoot = process.getuid?.() === 0;
  let mnt: string | undefined;
  beforeAll(() => {
    if (!isRoot) {
      const msg = 'ENOSPC test SKIPPED: needs root to mount a small tmpfs';
      if (process.env.CI === 'true') throw new Error(`${msg} (CI=true: failing)`);
      console.warn(msg);
      return;
    }
    mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-inline-enospc-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'xcopyd-inline-enospc', mnt]);
  });
  afterAll(() => {
    if (!mnt) return;
    try {
      execFileSync('umount', [mnt]);
    } finally {
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  });

  it('ENOSPC on a full 1 MiB tmpfs: code ENOSPC, errno -28 and the same sense (7/27/07) inline, on the lane and on the pool', async () => {
    if (!mnt) return;
    const s = await open(16 * MiB, path.join(mnt, 'lun.img'));
    // Fill it through the pool (large writes) until it refuses.
    let off = 0;
    for (; off < 16 * MiB; off += 256 * KiB) {
      const err = await s.write(off, bytes(256 * KiB, off)).then(() => null, (e: NodeJS.ErrnoException) => e);
      if (err) break;
    }
    expect(off).toBeLessThan(16 * MiB);
    const tries: Array<[string, () => Promise<void>]> = [
      ['inline', () => s.write(8 * MiB, bytes(4096, 1))],
      ['lane', () => s.write(8 * MiB + 4096 + 512, bytes(512, 2))],
      ['pool', () => s.write(10 * MiB, bytes(128 * KiB, 3))],
    ];
    for (const [kind, attempt] of tries) {
      await nextTurn();
      const before = { ...s.writePaths };
      const err = (await attempt().then(() => null, (e: NodeJS.ErrnoException) => e)) as NodeJS.ErrnoException | null;
      expect([kind, err?.code, err?.errno]).toEqual([kind, 'ENOSPC', -28]);
      expect(s.writePaths[kind as 'inline' | 'lane' | 'pool']).toBe(before[kind as 'inline' | 'lane' | 'pool'] + 1);
      const sense = storeErrorToSense(err, true);
      expect(sense).toBeInstanceOf(SenseError);
      expect((sense as SenseError).reason).toBe('SPACE_ALLOCATION_FAILED_WRITE_PROTECT');
    }
  });

  it('EFBIG (past the filesystem\'s largest offset): the same code inline and on the pool', async () => {
    const s = await open();
    const far = 2 ** 53 - 2 ** 20; // past any Linux filesystem's s_maxbytes, still an exact number
    await nextTurn();
    const inline = await s.write(far, bytes(4096, 1)).then(() => null, (e: NodeJS.ErrnoException) => e);
    await nextTurn();
    const pool = await s.write(far, bytes(128 * KiB, 2)).then(() => null, (e: NodeJS.ErrnoException) => e);
    expect(s.writePaths).toEqual({ inline: 1, lane: 0, pool: 1 });
    expect(inline?.code).toBeDefined();
    expect(inline?.code).toBe(pool?.code);
    expect(inline?.errno).toBe(pool?.errno);
  });
});

describe('slow pwrite: back to the lane', () => {
  /** performance.now() as seen by the store: each call returns the next value. */
  function clock(values: number[]) {
    let last = values[0];
    jest.spyOn(performance, 'now').mockImplementation(() => (last = values.length ? values.shift()! : last));
  }

  it('two slow inline writes in a row turn inline writes off for INLINE_BACKOFF_MS; one alone does not', async () => {
    const s = await open();
    const slow = INLINE_SLOW_MS + 0.5;
    let t = 1e7;
    // Each inline write reads the clock: mayInline (only while backing off), then before and after the pwrite.
    clock([t, t + slow]); // slow #1
    await s.write(0, bytes(4096, 1));
    await nextTurn();
    t += 100;
    clock([t, t + 0.01]); // fast: the count starts over
    await s.write(4096, bytes(4096, 2));
    await nextTurn();
    t += 100;
    clock([t, t + slow]); // slow #1
    await s.write(8192, bytes(4096, 3));
    await nextTurn();
    expect(s.writePaths).toEqual({ inline: 3, lane: 0, pool: 0 });
    t += 100;
    clock([t, t + slow]); // slow #2: off
    await s.write(12288, bytes(4096, 4));
    await nextTurn();
    const off = t + slow;
    clock([off + INLINE_BACKOFF_MS - 1]); // still off: lane
    await s.write(16384, bytes(4096, 5));
    await nextTurn();
    expect(s.writePaths).toEqual({ inline: 4, lane: 1, pool: 0 });
    clock([off + INLINE_BACKOFF_MS + 1, off + INLINE_BACKOFF_MS + 2, off + INLINE_BACKOFF_MS + 2.01]); // on again
    await s.write(20480, bytes(4096, 6));
    await nextTurn();
    expect(s.writePaths).toEqual({ inline: 5, lane: 1, pool: 0 });
    expect((await s.read(0, 6 * 4096)).equals(Buffer.concat([1, 2, 3, 4, 5, 6].map((i) => bytes(4096, i))))).toBe(true);
  });

  it('one write that stalled longer than INLINE_STALL_MS turns them off at once', async () => {
    const s = await open();
    const t = 2e7;
    clock([t, t, t + INLINE_STALL_MS + 1]); // mayInline (the switch was off before), then the pwrite
    await s.write(0, bytes(4096, 1));
    await nextTurn();
    clock([t + INLINE_STALL_MS + 2]);
    await s.write(4096, bytes(4096, 2));
    await nextTurn();
    expect(s.writePaths).toEqual({ inline: 1, lane: 1, pool: 0 });
    clock([t + 10 * INLINE_BACKOFF_MS]); // leave the switch on for the tests after
    await s.write(8192, bytes(4096, 3));
    expect(s.writePaths.inline).toBe(2);
  });
});
