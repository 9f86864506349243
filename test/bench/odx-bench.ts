/**
 * ODX benchmark (not a test; prints ratios, asserts nothing):
 *   (1) a 1 GiB ODX copy LUN 0 -> LUN 1 over iSCSI (PT, RRTI, WUT resumed at
 *       each deadline until done) vs raw copy_file_range of the same file, in
 *       the same run (issue 5 wants <= 1.25x);
 *   (2) POPULATE TOKEN latency for one 256 MiB range (point in time);
 *   (3) WRITE throughput (1 MiB commands) on a range under a live
 *       point-in-time token vs on a free range: the copy-on-write cost.
 * The LUN files sit in /var/tmp (the root filesystem): where it does not
 * clone, tokens are copy-on-write.
 *
 *   npx ts-node --transpile-only test/bench/odx-bench.ts [--rounds N]
 */
import { randomFillSync } from 'node:crypto';
import { promises as fsp, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Daemon } from '../../src/daemon';
import { validateConfig } from '../../src/config';
import { loadLibC } from '../../src/backing/libc';
import { session, populateToken, rrti, tokenFor, writeUsingToken, expectGood, BS } from '../odx/odx';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const args = process.argv.slice(2);
const ROUNDS = (() => {
  const i = args.indexOf('--rounds');
  return i >= 0 ? Number(args[i + 1]) : 3;
})();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function fill(path: string, size: number): Promise<void> {
  const fh = await fsp.open(path, 'w');
  const block = Buffer.allocUnsafe(8 * MiB);
  for (let off = 0; off < size; off += block.length) {
    randomFillSync(block);
    await fh.write(block, 0, block.length, off);
  }
  await fh.datasync();
  await fh.close();
}

async function rawCopy(src: string, dst: string, size: number): Promise<number> {
  const libc = loadLibC()!;
  const a = await fsp.open(src, 'r');
  const b = await fsp.open(dst, 'w');
  const t0 = performance.now();
  for (let off = 0; off < size; ) {
    const { res } = await libc.copyFileRangeAsync(a.fd, off, b.fd, off, Math.min(64 * MiB, size - off));
    if (res <= 0) throw new Error(`copy_file_range: ${res}`);
    off += res;
  }
  const ms = performance.now() - t0;
  await b.datasync();
  await a.close();
  await b.close();
  await fsp.rm(dst);
  return ms;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync('/var/tmp/xcopyd-odx-bench-');
  try {
    await fill(join(dataDir, 'lun0.img'), GiB);
    const config = validateConfig({
      listen: ['127.0.0.1:0'],
      dataDir,
      logLevel: 'silent',
      targets: [{ iqn: 'iqn.2026-11.org.xcopyd:default', luns: [{ lun: 0, path: 'lun0.img', size: '1GiB' }, { lun: 1, path: 'lun1.img', size: '1GiB' }] }],
    });
    const daemon = new Daemon(config, pino({ level: 'silent' }));
    await daemon.start();
    const c = await session(daemon.ports[0]);
    const blocks = GiB / BS;
    let id = 1;
    const odx: number[] = [];
    const raw: number[] = [];
    let commands = 0;
    for (let r = 0; r < ROUNDS + 1; r++) {
      // ODX 1 GiB
      const t0 = performance.now();
      const token = await tokenFor(c, 0, id++, [[0, blocks]]);
      for (let done = 0; done < blocks; ) {
        const lid = id++;
        await writeUsingToken(c, 1, lid, token, [[done, blocks - done]], { offset: done });
        const info = await rrti(c, 1, lid);
        done += Number(info.transferCount);
        commands++;
        if (info.transferCount === 0n) throw new Error('no progress');
      }
      const ms = performance.now() - t0;
      const tr = await rawCopy(join(dataDir, 'lun0.img'), join(dataDir, 'raw.img'), GiB);
      if (r > 0) {
        odx.push(ms);
        raw.push(tr);
      }
    }
    console.log(`1 GiB ODX copy LUN0->LUN1 (PT+RRTI+WUT over iSCSI): median ${median(odx).toFixed(0)} ms (${(1024 / (median(odx) / 1000)).toFixed(0)} MiB/s), WUT commands/round ${(commands / (ROUNDS + 1)).toFixed(1)}`);
    console.log(`1 GiB raw copy_file_range:                         median ${median(raw).toFixed(0)} ms (${(1024 / (median(raw) / 1000)).toFixed(0)} MiB/s)`);
    console.log(`ratio ODX / raw: ${(median(odx) / median(raw)).toFixed(2)}x (issue 5 wants <= 1.25x)`);

    // PT latency for 256 MiB
    const pt: number[] = [];
    for (let r = 0; r < 10; r++) {
      const t0 = performance.now();
      expectGood(await populateToken(c, 0, id++, [[r * 1000, (256 * MiB) / BS]]));
      pt.push(performance.now() - t0);
    }
    console.log(`POPULATE TOKEN, one 256 MiB range: median ${median(pt).toFixed(2)} ms, max ${Math.max(...pt).toFixed(2)} ms (tokens: ${daemon.rodTokens!.tokens()[0]?.mode})`);
    for (const t of daemon.rodTokens!.tokens()) daemon.rodTokens!.invalidate(t, 'deleted');

    // WRITE throughput under a live PIT token vs a free range
    const region = 64 * MiB;
    const chunk = Buffer.alloc(MiB, 0x5a);
    const writeRegion = async (lba0: number): Promise<number> => {
      const t0 = performance.now();
      for (let off = 0; off < region; off += MiB) {
        const cdb = Buffer.alloc(16);
        cdb[0] = 0x8a;
        cdb.writeBigUInt64BE(BigInt(lba0 + off / BS), 2);
        cdb.writeUInt32BE(MiB / BS, 10);
        expectGood(await c.command(0, cdb, { dataOut: chunk }));
      }
      return performance.now() - t0;
    };
    const free: number[] = [];
    const guarded: number[] = [];
    for (let r = 0; r < ROUNDS + 1; r++) {
      const a = (256 * MiB) / BS;
      const b = (512 * MiB) / BS;
      const tf = await writeRegion(a);
      await tokenFor(c, 0, id++, [[b, region / BS]]);
      const tg = await writeRegion(b);
      for (const t of daemon.rodTokens!.tokens()) daemon.rodTokens!.invalidate(t, 'deleted');
      if (r > 0) {
        free.push(tf);
        guarded.push(tg);
      }
    }
    const mbps = (ms: number) => (64 / (ms / 1000)).toFixed(0);
    console.log(`WRITE 64 MiB in 1 MiB commands, free range:        median ${median(free).toFixed(0)} ms (${mbps(median(free))} MiB/s)`);
    console.log(`WRITE 64 MiB in 1 MiB commands, under a PIT token: median ${median(guarded).toFixed(0)} ms (${mbps(median(guarded))} MiB/s)`);
    console.log(`copy-on-write cost: ${(median(guarded) / median(free)).toFixed(2)}x the time of a free range (first write of each extent saves it in the kernel)`);
    c.close();
    await daemon.stop();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
