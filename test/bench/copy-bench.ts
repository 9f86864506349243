/**
 * Copy engine benchmark (not a test): 1 GiB of random, non-sparse data copied
 *   (a) raw: copy_file_range through the same koffi binding, one loop, nothing else;
 *   (b) FileStore.copyRange (64 MiB chunks, hole walk, progress, abort checks);
 *   (c) a plain buffered copy: FileHandle read/write, 8 MiB at a time;
 *   (d) FileStore.copyRange forced onto its buffered fallback (pooled, pipelined);
 * on the root filesystem (/var/tmp), then on XFS reflink=1 in a loop device
 * when root. One warm-up round is not counted; the rounds interleave the
 * methods (order reversed every other round); medians and minimums are
 * printed with ratios against the raw copy measured in the same run (want
 * b/a <= 1.25), and the event loop's max delay during each method next to
 * the max delay of an idle loop over the same time (the machine's own
 * jitter). The load average is printed too: on a shared machine it explains
 * most of the spread.
 *
 * The destination is a fresh file each time; after each run it is fdatasync'ed
 * and removed, outside the timing, so dirty-page writeback of one run does not
 * land in the next. The source stays warm in the page cache (as a LUN's hot
 * data would).
 *
 *   npx ts-node --transpile-only test/bench/copy-bench.ts [--rounds N] [--size-mib N] [--no-xfs]
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { promises as fsp, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { FileStore } from '../../src/backing/file-store';
import { loadLibC, errnoError } from '../../src/backing/libc';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ROUNDS = opt('--rounds', 5);
const SIZE = opt('--size-mib', 1024) * MiB;
const libc = loadLibC();
if (!libc) {
  console.error('copy-bench: needs Linux and koffi (libc)');
  process.exit(1);
}

type Method = 'raw' | 'copyRange' | 'plain' | 'copyRange-buffered';
const METHODS: Method[] = ['raw', 'copyRange', 'plain', 'copyRange-buffered'];

async function makeSource(path: string, size: number): Promise<void> {
  const fh = await fsp.open(path, 'w');
  const block = Buffer.allocUnsafe(8 * MiB);
  for (let off = 0; off < size; off += block.length) {
    randomFillSync(block);
    await fh.write(block, 0, Math.min(block.length, size - off), off);
  }
  await fh.datasync();
  await fh.close();
}

/** One method, opened and ready: run() is what is timed, done() (close, datasync) is not. */
interface Prepared {
  run(): Promise<string | void>;
  done(): Promise<void>;
}

async function prepare(m: Method, src: string, dst: string, size: number): Promise<Prepared> {
  if (m === 'copyRange' || m === 'copyRange-buffered') {
    const s = await FileStore.open({ path: src, readOnly: true });
    const d = await FileStore.open({ path: dst, sizeBytes: size });
    return {
      run: async () => JSON.stringify(await s.copyRange(d, 0, 0, size, { mode: m === 'copyRange' ? 'auto' : 'buffered' })),
      done: async () => { await s.close(); await d.close(); },
    };
  }
  const a = await fsp.open(src, 'r');
  const b = await fsp.open(dst, 'w');
  const done = async () => { await a.close(); await b.datasync(); await b.close(); };
  if (m === 'raw') {
    return {
      run: async () => {
        for (let off = 0; off < size; ) {
          const { res, errno } = await libc!.copyFileRangeAsync(a.fd, off, b.fd, off, size - off);
          if (res <= 0) throw res === 0 ? new Error('short source') : errnoError('copy_file_range', errno, dst);
          off += res;
        }
      },
      done,
    };
  }
  const buf = Buffer.allocUnsafe(8 * MiB);
  return {
    run: async () => {
      for (let off = 0; off < size; ) {
        const { bytesRead } = await a.read(buf, 0, Math.min(buf.length, size - off), off);
        if (bytesRead === 0) throw new Error('short source');
        let w = 0;
        while (w < bytesRead) w += (await b.write(buf, w, bytesRead - w, off + w)).bytesWritten;
        off += bytesRead;
      }
    },
    done,
  };
}

interface Sample { ms: number; maxDelayMs: number; note?: string }

async function timed(fn: () => Promise<string | void>): Promise<Sample> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = process.hrtime.bigint();
  const note = await fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  h.disable();
  return { ms, maxDelayMs: h.max / 1e6, note: note || undefined };
}

async function settle(dst: string): Promise<void> {
  await fsp.rm(dst, { force: true });
  execFileSync('sync'); // no writeback left over for the next run
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

async function benchOn(label: string, dir: string): Promise<void> {
  const src = join(dir, 'src.img');
  const dst = join(dir, 'dst.img');
  console.log(`\n== ${label}: ${SIZE / MiB} MiB random, ${ROUNDS} rounds, dir ${dir}`);
  await makeSource(src, SIZE);
  const samples = new Map<Method, Sample[]>(METHODS.map((m) => [m, []]));
  const idle: Sample[] = [];
  for (let round = -1; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? METHODS : [...METHODS].reverse();
    for (const m of order) {
      const p = await prepare(m, src, dst, SIZE);
      const s = await timed(() => p.run());
      await p.done(); // close; the destination's fdatasync is outside the timing
      if (round >= 0) samples.get(m)!.push(s);
      await settle(dst);
      if (m === 'copyRange' && round >= 0) {
        // The idle loop over as long as the copy took: what the machine does to us anyway.
        idle.push(await timed(() => new Promise<void>((r) => setTimeout(r, Math.max(50, s.ms)))));
      }
    }
  }
  const gib = SIZE / (1024 * MiB);
  const rawMs = median(samples.get('raw')!.map((s) => s.ms));
  const rawMin = Math.min(...samples.get('raw')!.map((s) => s.ms));
  console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} on ${cpus().length} CPUs`);
  console.log('method               median ms  GiB/s  vs raw |   min ms  GiB/s  vs raw | event-loop max delay ms (median, worst) | all runs ms');
  for (const m of METHODS) {
    const ss = samples.get(m)!;
    const ms = median(ss.map((s) => s.ms));
    const min = Math.min(...ss.map((s) => s.ms));
    const delays = ss.map((s) => s.maxDelayMs);
    console.log(`${m.padEnd(20)} ${ms.toFixed(1).padStart(9)} ${(gib / (ms / 1000)).toFixed(2).padStart(6)} ${(ms / rawMs).toFixed(2).padStart(6)}x |` +
      ` ${min.toFixed(1).padStart(8)} ${(gib / (min / 1000)).toFixed(2).padStart(6)} ${(min / rawMin).toFixed(2).padStart(6)}x |` +
      ` ${median(delays).toFixed(2).padStart(6)} ${Math.max(...delays).toFixed(2).padStart(6)}` +
      `                          | ${ss.map((s) => s.ms.toFixed(0)).join(', ')}`);
  }
  const idleDelays = idle.map((s) => s.maxDelayMs);
  console.log(`idle loop, same durations as copyRange: max delay median ${median(idleDelays).toFixed(2)} ms, worst ${Math.max(...idleDelays).toFixed(2)} ms`);
  const ours = median(samples.get('copyRange')!.map((s) => s.ms));
  const buffered = median(samples.get('plain')!.map((s) => s.ms));
  const oursMin = Math.min(...samples.get('copyRange')!.map((s) => s.ms));
  console.log(`ratio copyRange/raw = ${(ours / rawMs).toFixed(3)} by medians, ${(oursMin / rawMin).toFixed(3)} by minimums (want <= 1.25); ` +
    `plain buffered/copyRange = ${(buffered / ours).toFixed(2)}x`);
  console.log(`copyRange result: ${samples.get('copyRange')![0].note}`);
  await fsp.rm(src, { force: true });
}

async function main(): Promise<void> {
  const base = mkdtempSync('/var/tmp/xcopyd-bench-');
  try {
    await benchOn('root filesystem', base);
    if (process.getuid?.() === 0 && !args.includes('--no-xfs')) {
      const img = join(base, 'xfs.img');
      const mnt = join(base, 'xfs');
      mkdirSync(mnt);
      let dev = '';
      let mounted = false;
      try {
        execFileSync('truncate', ['-s', `${Math.ceil((SIZE * 3) / MiB) + 512}M`, img]);
        dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
        execFileSync('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', dev]);
        execFileSync('mount', [dev, mnt]);
        mounted = true;
        await benchOn('XFS reflink=1 (loop device on the root filesystem)', mnt);
      } catch (err) {
        console.error('XFS part failed or unavailable:', (err as Error).message);
      } finally {
        if (mounted) execFileSync('umount', [mnt]);
        if (dev) execFileSync('losetup', ['-d', dev]);
      }
    } else {
      console.log('\n(XFS reflink part skipped: not root or --no-xfs)');
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
