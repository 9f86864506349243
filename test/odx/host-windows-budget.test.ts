/**
 * Issue 11 point 3, Windows' 4-second budget on slow storage. classpnp stops issuing WRITE
 * USING TOKEN once about 4 s have passed for a copy; a command that ends later is a failed
 * offload (and a host copy), one that ends in time with COPY ABORTED, COPY TARGET DEVICE DATA
 * UNDERRUN (A/0D/04) and INFORMATION = the blocks written is resumed with OFFSET INTO ROD.
 *
 * Slow storage, for real: the LUN files sit on a filesystem of their own on a loop device, and
 * the daemon process (started by the interop harness, so it is a process of its own) is put in
 * a block I/O cgroup limited to 10 MB/s on that device (test/support/throttle.ts: io.max under
 * cgroup v2, blkio.throttle under v1). The page cache would absorb the writes, so the source is
 * made uncached and the throttled reads of it pace the copy (128 MiB: about 13 s of reading).
 *
 *  - ext4: one 128 MiB WUT (IMMED=0, no DEL_TKN) from a PT of LUN 0 ends within 4 s with
 *    A/0D/04 and INFORMATION > 0 (RRTI: 03h, the same count); WUTs with OFFSET INTO ROD =
 *    the blocks done so far copy the rest, each within 4 s; the bytes arrive.
 *  - XFS reflink=1: POPULATE TOKEN of 64 ranges of 2 MiB that are not 4 KiB aligned (so not
 *    clonable: the point-in-time image has to be read) ends within 4 s.
 *
 * "Within 4 s" is the budget the issue names (a host's own deadline), measured at the client.
 * Needs root, losetup, mkfs.ext4, mkfs.xfs and a block I/O cgroup: skips loudly without,
 * fails under CI=true. Mounts, loop devices and cgroups made here are removed in afterAll.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_IQN, describeIf, missingPrerequisite, requireTarget, requireTools, startTarget, xcopydConfigYaml, type Target } from '../interop/harness';
import { fastPattern } from '../support/host-xcopy';
import { dropFileCache, makeIoThrottle, makeLoopFs, throttleSupport, type IoThrottle, type LoopFs } from '../support/throttle';
import {
  BS, expectGood, populateToken, populateTokenCdb, ptParams, readBlocks, rrti, senseOf, session, writeUsingToken, type Range, type TestInitiator,
} from './odx';

const MiB = 1024 * 1024;
const BUDGET_MS = 4000;
const RATE = 10 * 1000 * 1000; // 10 MB/s
const LUN_SIZE = 256 * MiB;
const COPY_BYTES = 128 * MiB;
const COPY_BLOCKS = COPY_BYTES / BS;
/** WUTs allowed to finish the copy: at 10 MB/s and ~3 s per WUT about five are needed. */
const MAX_WUTS = 30;

const support = throttleSupport();
const ready =
  ((process.env.INTEROP_TARGET ?? 'xcopyd') !== 'tgt' || missingPrerequisite('xcopyd as the target', 'unset INTEROP_TARGET')) &&
  (!('missing' in support) || missingPrerequisite(support.missing, 'run as root on Linux with cgroups')) &&
  requireTools([
    ['losetup', 'mount'],
    ['lsblk', 'util-linux'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['mkfs.xfs', 'xfsprogs'],
    ['dd', 'coreutils'],
  ]) &&
  requireTarget('xcopyd');

/** Write `data` at `offset` of a backing file, bypassing the daemon (before it read those blocks). */
function writeFileAt(file: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function ms(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6;
}

/** A loop filesystem, a daemon on it, one session, and the throttle; all undone in afterAll. */
function slowStorage(fsType: 'ext4' | 'xfs') {
  const s: { lfs?: LoopFs; t?: Target; c?: TestInitiator; thr?: IoThrottle } = {};
  beforeAll(async () => {
    s.lfs = makeLoopFs({ bytes: 1024 * MiB, fs: fsType, name: `xcopyd-budget-${fsType}` });
    const dataDir = path.join(s.lfs.mnt, 'data');
    fs.mkdirSync(dataDir);
    s.t = await startTarget({ name: `host-windows-budget-${fsType}`, configYaml: xcopydConfigYaml(DEFAULT_IQN, LUN_SIZE), dataDir, lunSize: LUN_SIZE }, 'xcopyd');
    s.c = await session(s.t.port);
    s.thr = makeIoThrottle('xcopyd-budget', s.lfs.majMin, RATE);
  }, 120_000);
  afterAll(async () => {
    const errors: unknown[] = [];
    const attempt = async (f: () => unknown) => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    };
    await attempt(() => s.c?.close());
    await attempt(() => s.thr?.destroy());
    await attempt(async () => {
      if (s.t) await s.t.stop();
    });
    await attempt(() => s.lfs?.destroy());
    if (errors.length) console.error('host-windows-budget cleanup:', errors);
  }, 60_000);
  return s;
}

describeIf(ready)('Windows 4 s budget: WRITE USING TOKEN on 10 MB/s storage (ext4 on a throttled loop device)', () => {
  const s = slowStorage('ext4');

  // Issue 11 point 3: failed before dc2cefd: the deadline was checked only between 64 MiB steps
  // and the first step always ran, so the first WUT ended after 6.9-7.3 s (64 MiB at 10 MB/s).
  // At dc2cefd (steps paced by an average throughput) WUTs still overran: 4.0-9.4 s; since 42281b5
  // (the slowest throughput seen) 15 WUTs in three runs took 3.0-3.34 s (load 8-11).
  it('one 128 MiB WUT ends within 4 s with A/0D/04 and INFORMATION > 0; WUTs with OFFSET INTO ROD copy the rest, each within 4 s; the bytes arrive', async () => {
    const { c, t, thr } = s as Required<typeof s>;
    const source = fastPattern(COPY_BYTES, 31);
    writeFileAt(path.join(t.dataDir!, 'lun0.img'), 0, source);
    dropFileCache(path.join(t.dataDir!, 'lun0.img'));
    thr.add(t.pid);
    let listId = 0; // one counter, as classpnp's
    const ptId = listId++;
    const p0 = process.hrtime.bigint();
    expectGood(await populateToken(c, 0, ptId, [[0, COPY_BLOCKS]]), 'POPULATE TOKEN');
    const ptMs = ms(p0);
    const token = (await rrti(c, 0, ptId)).token!;
    expect(token).toBeDefined();

    const rounds: Array<{ ms: number; information: number; status: string }> = [];
    let done = 0;
    try {
      while (done < COPY_BLOCKS) {
        if (rounds.length >= MAX_WUTS) throw new Error(`not done after ${MAX_WUTS} WUTs: ${done} of ${COPY_BLOCKS} blocks (${JSON.stringify(rounds)})`);
        const id = listId++;
        const w0 = process.hrtime.bigint();
        const r = await writeUsingToken(c, 1, id, token, [[done, COPY_BLOCKS - done]], { offset: done });
        const took = ms(w0);
        const info = await rrti(c, 1, id);
        if (r.status === 0) {
          rounds.push({ ms: took, information: Number(info.transferCount), status: 'GOOD' });
          expect([info.status, Number(info.transferCount)]).toEqual([1, COPY_BLOCKS - done]);
          done = COPY_BLOCKS;
        } else {
          const sense = senseOf(r);
          rounds.push({ ms: took, information: sense.information, status: `${sense.key.toString(16)}/${sense.asc.toString(16)}/${sense.ascq.toString(16)}` });
          // SBC-4: COPY ABORTED, COPY TARGET DEVICE DATA UNDERRUN, INFORMATION = TRANSFER COUNT (> 0: progress)
          expect([sense.key, sense.asc, sense.ascq, sense.valid]).toEqual([0xa, 0x0d, 0x04, true]);
          expect(sense.information).toBeGreaterThan(0);
          expect([info.status, Number(info.transferCount)]).toEqual([3, sense.information]);
          done += sense.information;
        }
        console.log(`[host-windows-budget] WUT ${rounds.length}: ${took.toFixed(0)} ms, ${rounds[rounds.length - 1].status}, INFORMATION ${rounds[rounds.length - 1].information} blocks (${done}/${COPY_BLOCKS} done)`);
        expect(took).toBeLessThan(BUDGET_MS);
      }
    } finally {
      thr.release(t.pid);
      console.log(`[host-windows-budget] ${thr.kind} at ${RATE / 1e6} MB/s: PT ${ptMs.toFixed(0)} ms; WUTs ${JSON.stringify(rounds)}`);
    }
    expect(rounds[0].status).toBe('a/d/4'); // 128 MiB cannot move in 4 s at 10 MB/s: the first WUT is partial
    expect((await readBlocks(c, 1, 0, COPY_BLOCKS)).equals(source)).toBe(true);

    // The same WUT unthrottled and uncached again, for the closing figures.
    dropFileCache(path.join(t.dataDir!, 'lun0.img'));
    const u0 = process.hrtime.bigint();
    expectGood(await writeUsingToken(c, 1, listId++, token, [[COPY_BLOCKS, COPY_BLOCKS]]), 'unthrottled WUT');
    console.log(`[host-windows-budget] the same 128 MiB WUT without the throttle (uncached source): ${ms(u0).toFixed(0)} ms`);
  }, 240_000);
});

describeIf(ready)('Windows 4 s budget: POPULATE TOKEN of 64 unaligned 2 MiB ranges on 10 MB/s storage (XFS reflink=1 on a throttled loop device)', () => {
  const s = slowStorage('xfs');

  // Issue 11 point 3: failed before dc2cefd: POPULATE TOKEN had no deadline and ranges that could
  // not be cloned (not 4 KiB aligned) were copied into the side file whole, 128 MiB at 10 MB/s
  // (13.5-14.5 s). Since: 0.6-2.0 s (each range congruent to its source mod 64 KiB, so it clones).
  it('the PT ends within 4 s (GOOD, or a partial count), and its token delivers the bytes it represents', async () => {
    const { c, t, thr } = s as Required<typeof s>;
    const RANGES = 64;
    const RANGE_BLOCKS = (2 * MiB) / BS;
    const STRIDE = (4 * MiB) / BS;
    const ranges: Range[] = Array.from({ length: RANGES }, (_, k) => [k * STRIDE + 1, RANGE_BLOCKS]); // +1 block: 512 bytes off 4 KiB
    const lun0 = path.join(t.dataDir!, 'lun0.img');
    const datas = ranges.map(([lba], k) => {
      const d = fastPattern(RANGE_BLOCKS * BS, 200 + k);
      writeFileAt(lun0, lba * BS, d);
      return d;
    });
    dropFileCache(lun0);
    thr.add(t.pid);
    let took = NaN;
    let ptStatus = '';
    let info: Awaited<ReturnType<typeof rrti>> | undefined;
    try {
      const p0 = process.hrtime.bigint();
      const params = ptParams(ranges); // IMMED=0, INACTIVITY TIMEOUT 0
      const r = await c.command(0, populateTokenCdb(0, params.length), { dataOut: params, timeoutMs: 60_000 });
      took = ms(p0);
      if (r.status === 0) ptStatus = 'GOOD';
      else {
        const sense = senseOf(r);
        ptStatus = `${sense.key.toString(16)}/${sense.asc.toString(16)}/${sense.ascq.toString(16)} INFORMATION ${sense.information}`;
        // SBC-4 allows a PT to end short: COPY ABORTED, 0D/04, INFORMATION = TRANSFER COUNT > 0
        expect([sense.key, sense.asc, sense.ascq]).toEqual([0xa, 0x0d, 0x04]);
        expect(sense.information).toBeGreaterThan(0);
      }
      info = await rrti(c, 0, 0);
    } finally {
      thr.release(t.pid);
    }
    console.log(`[host-windows-budget] ${thr.kind} at ${RATE / 1e6} MB/s: PT of ${RANGES} unaligned 2 MiB ranges on XFS: ${took.toFixed(0)} ms, ${ptStatus}, RRTI status ${info?.status}, ${info?.transferCount} blocks`);
    expect(took).toBeLessThan(BUDGET_MS);
    expect([1, 3]).toContain(info!.status);
    expect(info!.token).toBeDefined();
    const represented = Number(info!.transferCount);
    expect(represented).toBeGreaterThan(0);

    // The token's bytes, unthrottled now: WUTs resumed by OFFSET INTO ROD until all represented blocks are written.
    let done = 0;
    for (let i = 0; done < represented; i++) {
      if (i >= MAX_WUTS) throw new Error(`WUTs did not finish: ${done}/${represented}`);
      const r = await writeUsingToken(c, 1, 100 + i, info!.token!, [[done, represented - done]], { offset: done });
      done += r.status === 0 ? represented - done : senseOf(r).information;
    }
    const want = Buffer.concat(datas).subarray(0, represented * BS);
    expect((await readBlocks(c, 1, 0, represented)).equals(want)).toBe(true);

    // The same PT unthrottled and uncached again, for the closing figures.
    dropFileCache(lun0);
    const u0 = process.hrtime.bigint();
    const again = ptParams(ranges);
    expectGood(await c.command(0, populateTokenCdb(1, again.length), { dataOut: again, timeoutMs: 60_000 }), 'unthrottled PT');
    console.log(`[host-windows-budget] the same PT without the throttle (uncached source): ${ms(u0).toFixed(0)} ms`);
  }, 240_000);
});
