/**
 * EXTENDED COPY benchmark (not a test; issue 4, "Done when: Benchmark"). One run prints:
 *
 *  1. a 1 GiB copy of random data LUN 0 -> LUN 1 offloaded through xcopyd
 *     (`qemu-img convert -C -n -m 1`: EXTENDED COPY, copy_file_range in the daemon) against
 *     the same copy without offload (`qemu-img convert -n -m 1`, and with qemu-img's default
 *     8 coroutines, `-n`): the host copy, every byte read and written over the wire, into
 *     LUN 2. Want the offloaded copy at least 5x faster. The loopback counters (`lo` in
 *     /proc/net/dev, rx + tx) show what crossed the wire for each.
 *  2. the offloaded copy against a raw copy_file_range of the same 1 GiB between two files
 *     on the same filesystem (LUN 0's backing file -> a fresh file in the data directory,
 *     64 MiB calls through the daemon's own koffi binding). Want at most 1.25x its time.
 *     The same raw copy in 2 MiB calls is printed too: qemu-img sends one EXTENDED COPY
 *     (one 02h segment) per 2 MiB, one at a time with -m 1, so that is the kernel's share
 *     of the offloaded copy, and the rest is the per-command round trip.
 *  3. p50/p99/max latency of 4 KiB READ(10)s at queue depth 1 on LUN 5, which takes no part
 *     in the copy, while `qemu-img convert -C -n -m 1` copies 4 GiB LUN 3 -> LUN 4: first
 *     into the sparse LUN 4 (the filesystem allocates as the copy goes), then overwriting it
 *     (--big-copies back to back); and the same reads with no copy running (baseline). Want
 *     p99 under 20 ms. The reads come from a small TS initiator (test/support/initiator.ts)
 *     in this process, timed with process.hrtime. One more 4 GiB copy without the reads
 *     shows what the reads cost the copy.
 *
 * LUNs (one target, 512-byte blocks, files in a fresh data directory under the interop
 * output root, on the root filesystem):
 *   0: 1 GiB source   1: 1 GiB offload destination   2: 1 GiB host-copy destination
 *   3: 4 GiB source   4: 4 GiB destination           5: 1 GiB read LUN
 * The sources and the read LUN are filled with random data by writing their backing files
 * before the daemon starts (as an initiator's writes would leave them: in the page cache,
 * then synced); the destinations are created sparse by the daemon.
 *
 * Timing. Each copy is timed as qemu-img runs it (process start, login, copy, close), then
 * the destination is flushed with SYNCHRONIZE CACHE (raw: fdatasync), timed separately.
 * qemu-img sends no flush of its own at the end of a convert to iscsi:// (the flush after a
 * host copy costs what it costs after an offloaded one), so "copy" compares data left in
 * the page cache in every case, and "copy + flush" the same data made durable; both are
 * printed. `qemu-img info` on the same URL is timed too: the process start, login and
 * logout that every qemu-img run pays and a raw copy_file_range does not; the offloaded
 * copy minus that is printed as an estimate of the copy itself.
 * One warm-up round is not counted (it also warms the daemon's JIT and allocates the
 * destinations, so every counted copy overwrites); the counted rounds interleave the
 * methods, order reversed every other round; medians are printed with the minimums.
 * `sync` runs between copies, outside the timing. The load average is printed: on a shared
 * machine it explains most of the spread, and the lo counters see every process's loopback
 * traffic, not only ours.
 *
 * Everything is on 127.0.0.1, every loop and child process is bounded, the daemon is stopped
 * by its PID, and the data directory (~13 GiB) is removed at the end (logs are kept). Exit
 * status 1 only when a copy's data is wrong; a missed target is printed as MISSED.
 *
 *   npx ts-node --transpile-only test/bench/xcopy-bench.ts [--rounds N] [--size-mib N]
 *       [--big-gib N] [--big-copies N] [--baseline-s N] [--keep]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import { cpus, loadavg } from 'node:os';
import * as path from 'node:path';
import { errnoError, loadLibC } from '../../src/backing/libc';
import { cdb, openSession, Prng, type TestInitiator } from '../support/initiator';
import { b2b, e4, lid1, xcopyCdb } from '../scsi/copy/helpers';
import {
  DEFAULT_IQN,
  REPO_ROOT,
  freePort,
  makeRunDir,
  requireTarget,
  requireTools,
  run,
  shellQuote,
  tail,
  waitForPort,
  within,
  loopbackBytes as harnessLoopbackBytes,
} from '../interop/harness';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const BLOCK = 512;

const args = process.argv.slice(2);
const opt = (name: string, dflt: number, lo: number, hi: number): number => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  return Number.isFinite(v) ? Math.max(lo, Math.min(hi, Math.floor(v))) : dflt;
};
const ROUNDS = opt('--rounds', 3, 1, 10);
const SIZE = opt('--size-mib', 1024, 16, 8192) * MiB;
const BIG = opt('--big-gib', 4, 1, 16) * GiB;
const BIG_COPIES = opt('--big-copies', 1, 1, 5);
const BASELINE_MS = opt('--baseline-s', 10, 1, 120) * 1000;
const KEEP = args.includes('--keep');

const LUN = { src: 0, dstOffload: 1, dstHost: 2, bigSrc: 3, bigDst: 4, read: 5 } as const;
const CFR_CHUNK = 64 * MiB;
/** What qemu-img convert asks for at a time (its 2 MiB buffer): one EXTENDED COPY per 2 MiB. */
const QEMU_REQUEST = 2 * MiB;
const READ_SIZE = 4 * KiB;
const QEMU_TIMEOUT_MS = 600_000;
const SYNC_TIMEOUT_MS = 300_000;
/** Bounds of the read loops, whatever the copy does. */
const MAX_READS = 2_000_000;
const MAX_LOADED_MS = 900_000;

// ---------------------------------------------------------------------------------------
// small helpers

/** rx + tx bytes of lo as a number (the harness counts them as a bigint). */
const loopbackBytes = (): number => Number(harnessLoopbackBytes());

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function median(xs: number[]): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Nearest-rank percentile of a sorted array. */
function pct(sorted: Float64Array, p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

function sizeText(n: number): string {
  return n % GiB === 0 ? `${n / GiB}GiB` : `${n}`;
}

/** `size` bytes of random data (64 MiB writes), synced. */
function writeRandom(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    const buf = Buffer.allocUnsafe(64 * MiB);
    for (let off = 0; off < size; off += buf.length) {
      const n = Math.min(buf.length, size - off);
      randomFillSync(buf, 0, n);
      let w = 0;
      while (w < n) w += fs.writeSync(fd, buf, w, n - w, off + w);
    }
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** First differing byte offset of two files over `size` bytes, or -1 if identical. */
function firstDifference(a: string, b: string, size: number): number {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    const ba = Buffer.allocUnsafe(64 * MiB);
    const bb = Buffer.allocUnsafe(64 * MiB);
    for (let off = 0; off < size; off += ba.length) {
      const n = Math.min(ba.length, size - off);
      const ra = fs.readSync(fa, ba, 0, n, off);
      const rb = fs.readSync(fb, bb, 0, n, off);
      if (ra !== n || rb !== n) return off + Math.min(ra, rb);
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) {
        for (let i = 0; i < n; i++) if (ba[i] !== bb[i]) return off + i;
      }
    }
    return -1;
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}

function globalSync(): void {
  execFileSync('sync', [], { timeout: SYNC_TIMEOUT_MS });
}

// ---------------------------------------------------------------------------------------
// the daemon, with our own configuration (the harness's startTarget writes two LUNs only)

interface Daemon {
  port: number;
  pid: number;
  logFile: string;
  url(lun: number): string;
  alive(): boolean;
  stop(): Promise<void>;
  child: ChildProcess;
}

async function startDaemon(runDir: string, dataDir: string, configFile: string): Promise<Daemon> {
  let lastError = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    const logFile = path.join(runDir, `xcopyd-${attempt}.log`);
    const port = await freePort();
    const argv = ['-r', 'ts-node/register/transpile-only', path.join('src', 'main.ts')];
    argv.push('--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--config', configFile);
    const fd = fs.openSync(logFile, 'a');
    fs.writeSync(fd, `# ${process.execPath} ${argv.map(shellQuote).join(' ')}\n`);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, argv, { cwd: REPO_ROOT, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    let exited = false;
    const exitP = new Promise<void>((resolve) => {
      child.on('exit', () => ((exited = true), resolve()));
      child.on('error', () => ((exited = true), resolve()));
    });
    const stop = async () => {
      if (exited) return;
      child.kill('SIGTERM');
      if ((await within(exitP.then(() => true), 15_000)) === undefined) {
        child.kill('SIGKILL');
        await within(exitP, 5_000);
      }
    };
    if (await waitForPort(port, 60_000, () => !exited)) {
      return {
        port,
        pid: child.pid ?? -1,
        logFile,
        url: (lun) => `iscsi://127.0.0.1:${port}/${DEFAULT_IQN}/${lun}`,
        alive: () => !exited,
        stop,
        child,
      };
    }
    await stop();
    lastError = `xcopyd did not start (log ${logFile}):\n${tail(logFile, 30)}`;
    if (!/EADDRINUSE/.test(tail(logFile, 30))) break;
  }
  throw new Error(lastError);
}

// ---------------------------------------------------------------------------------------
// the measurements

interface CopySample {
  /** Copy as the client runs it (qemu-img: process start to exit). */
  copyMs: number;
  /** The destination flushed afterwards (SYNCHRONIZE CACHE / fdatasync). */
  flushMs: number;
  /** lo rx + tx during the copy (not the flush). */
  loBytes: number;
}

type Method = 'offload' | 'offload-big' | 'host-m1' | 'host-m8' | 'raw' | 'raw-2m';
const METHODS: Method[] = ['offload', 'offload-big', 'host-m1', 'host-m8', 'raw', 'raw-2m'];
const LABEL: Record<Method, string> = {
  offload: 'offloaded: qemu-img convert -C -n -m 1',
  'offload-big': 'offloaded: EXTENDED COPY, 16 MiB segments',
  'host-m1': 'host copy: qemu-img convert -n -m 1',
  'host-m8': 'host copy: qemu-img convert -n (-m 8)',
  raw: 'raw copy_file_range, 64 MiB calls',
  'raw-2m': 'raw copy_file_range, 2 MiB calls',
};

async function syncCache(ini: TestInitiator, lun: number): Promise<number> {
  const c = Buffer.alloc(10);
  c[0] = 0x35; // SYNCHRONIZE CACHE(10), LBA 0, NUMBER OF BLOCKS 0: the whole LU
  const t0 = nowMs();
  const r = await ini.command(lun, c, { timeoutMs: SYNC_TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`SYNCHRONIZE CACHE on LUN ${lun}: status ${r.status}`);
  return nowMs() - t0;
}

async function qemuCopy(d: Daemon, ini: TestInitiator, flags: string[], src: number, dst: number, logFile: string): Promise<CopySample> {
  const lo0 = loopbackBytes();
  const t0 = nowMs();
  const r = await run('qemu-img', ['convert', ...flags, '-f', 'raw', '-O', 'raw', d.url(src), d.url(dst)], { timeoutMs: QEMU_TIMEOUT_MS, logFile });
  const copyMs = nowMs() - t0;
  const loBytes = loopbackBytes() - lo0;
  if (r.code !== 0) {
    throw new Error(`qemu-img convert ${flags.join(' ')} ${src} -> ${dst}: ${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${(r.stderr || r.stdout).trim()}`);
  }
  const flushMs = await syncCache(ini, dst);
  return { copyMs, flushMs, loBytes };
}

/** The NAA designator of a LUN (VPD 83h, association LU, type NAA). */
async function naaOf(ini: TestInitiator, lun: number): Promise<Buffer> {
  const r = await ini.command(lun, cdb.inquiry(1024, true, 0x83), { read: 1024 });
  const page = r.data;
  for (let off = 4; off + 4 <= page.length; ) {
    const len = page[off + 3];
    if ((page[off + 1] & 0x0f) === 3 && ((page[off + 1] >> 4) & 3) === 0) return Buffer.from(page.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  throw new Error(`LUN ${lun}: no NAA designator in VPD 83h`);
}

/**
 * The copy as a client that sends large segments does it: EXTENDED COPY(LID1)
 * commands of up to 64 segments of 32768 blocks (16 MiB), so 1 GiB is one
 * command. qemu-img -C sends one 2 MiB segment per command instead, which
 * measures the per-command round trip more than the copy.
 */
async function bigSegmentCopy(ini: TestInitiator, src: number, dst: number, size: number): Promise<CopySample> {
  const naaSrc = await naaOf(ini, src);
  const naaDst = await naaOf(ini, dst);
  const perSeg = 32768;
  const lo0 = loopbackBytes();
  const t0 = nowMs();
  const totalBlocks = size / BLOCK;
  for (let lba = 0, listId = 1; lba < totalBlocks; listId++) {
    const segs: Buffer[] = [];
    for (let i = 0; i < 64 && lba < totalBlocks; i++) {
      const n = Math.min(perSeg, totalBlocks - lba);
      segs.push(b2b(0, 1, n, lba, lba));
      lba += n;
    }
    const list = lid1([e4(naaSrc), e4(naaDst)], segs, { listId: listId & 0xff });
    const r = await ini.command(dst, xcopyCdb(0, list.length), { dataOut: list, timeoutMs: QEMU_TIMEOUT_MS });
    if (r.status !== 0) throw new Error(`EXTENDED COPY: status ${r.status} sense ${r.sense?.toString('hex')}`);
  }
  const copyMs = nowMs() - t0;
  const loBytes = loopbackBytes() - lo0;
  const flushMs = await syncCache(ini, dst);
  return { copyMs, flushMs, loBytes };
}

async function rawCopy(srcFile: string, dstFile: string, size: number, chunk: number): Promise<CopySample> {
  const libc = loadLibC()!;
  const a = await fs.promises.open(srcFile, 'r');
  const b = await fs.promises.open(dstFile, 'r+');
  try {
    const lo0 = loopbackBytes();
    const t0 = nowMs();
    for (let off = 0, calls = 0; off < size; calls++) {
      if (calls > size / 4096 + 16) throw new Error('copy_file_range: no progress');
      const { res, errno } = await libc.copyFileRangeAsync(a.fd, off, b.fd, off, Math.min(chunk, size - off));
      if (res <= 0) throw res === 0 ? new Error('copy_file_range: short source') : errnoError('copy_file_range', errno, dstFile);
      off += res;
    }
    const copyMs = nowMs() - t0;
    const loBytes = loopbackBytes() - lo0;
    const t1 = nowMs();
    await b.datasync();
    return { copyMs, flushMs: nowMs() - t1, loBytes };
  } finally {
    await a.close();
    await b.close();
  }
}

interface ReadStats {
  n: number;
  ms: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  errors: number;
}

/**
 * 4 KiB READ(10)s at queue depth 1 at random 4 KiB-aligned offsets of `lun` until `stop()`
 * says so, `maxMs` passes or MAX_READS were issued; per-command latency in ms.
 */
async function readLoop(ini: TestInitiator, lun: number, lunBytes: number, rng: Prng, stop: () => boolean, maxMs: number): Promise<ReadStats> {
  const lat = new Float64Array(MAX_READS);
  const slots = Math.floor(lunBytes / READ_SIZE);
  const blocks = READ_SIZE / BLOCK;
  let n = 0;
  let errors = 0;
  const start = nowMs();
  while (n < MAX_READS && !stop() && nowMs() - start < maxMs) {
    const lba = Math.floor(rng.next() * slots) * blocks;
    const t0 = process.hrtime.bigint();
    const r = await ini.command(lun, cdb.read10(lba, blocks), { read: READ_SIZE, timeoutMs: 30_000 });
    lat[n++] = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0 || r.data.length !== READ_SIZE) errors++;
  }
  const ms = nowMs() - start;
  const s = lat.subarray(0, n).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i];
  return { n, ms, p50: pct(s, 50), p99: pct(s, 99), p999: pct(s, 99.9), max: n ? s[n - 1] : NaN, mean: n ? sum / n : NaN, errors };
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (!requireTools([['qemu-img', 'qemu-utils']]) || !requireTarget('xcopyd')) return 1;
  if (!loadLibC()) {
    console.error('xcopy-bench: needs Linux and koffi (src/backing/libc.ts)');
    return 1;
  }
  const runDir = makeRunDir('xcopy-bench');
  const dataDir = path.join(runDir, 'data');
  const qemuLog = path.join(runDir, 'qemu-img.log');
  fs.mkdirSync(dataDir, { recursive: true });
  const file = (lun: number) => path.join(dataDir, `lun${lun}.img`);
  const rawDst = path.join(dataDir, 'raw-dst.img');
  const sizes: Record<number, number> = {
    [LUN.src]: SIZE, [LUN.dstOffload]: SIZE, [LUN.dstHost]: SIZE, [LUN.bigSrc]: BIG, [LUN.bigDst]: BIG, [LUN.read]: GiB,
  };
  const configFile = path.join(runDir, 'xcopyd.yaml');
  fs.writeFileSync(configFile, [
    'targets:',
    `  - iqn: ${DEFAULT_IQN}`,
    '    luns:',
    ...Object.entries(sizes).map(([lun, size]) => `      - { lun: ${lun}, path: lun${lun}.img, size: ${sizeText(size)}, blockSize: ${BLOCK} }`),
    '',
  ].join('\n'));

  let daemon: Daemon | undefined;
  let ini: TestInitiator | undefined;
  const cleanup = () => {
    if (!KEEP) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  const onSignal = () => {
    if (daemon?.alive()) daemon.child.kill('SIGKILL');
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const load0 = loadavg();
  const samples = new Map<Method, CopySample[]>(METHODS.map((m) => [m, []]));
  const infoMs: number[] = [];
  const loaded: Array<{ name: string; reads: ReadStats; copies: CopySample[] }> = [];
  let baseline: ReadStats | undefined;
  let bigAlone: CopySample | undefined;
  const checks: string[] = [];
  try {
    console.log(`xcopy-bench: ${mib(SIZE)} copy, ${ROUNDS} rounds (+1 warm-up); ${BIG_COPIES} x ${BIG / GiB} GiB copy for the read latency`);
    console.log(`run dir ${runDir} (data ${dataDir}, removed at the end${KEEP ? ' unless --keep: kept' : ''})`);
    console.log(`load average at start ${load0.map((x) => x.toFixed(2)).join(' ')} on ${cpus().length} CPUs`);

    process.stdout.write('filling the sources and the read LUN with random data ... ');
    const t0 = nowMs();
    writeRandom(file(LUN.src), SIZE);
    writeRandom(file(LUN.bigSrc), BIG);
    writeRandom(file(LUN.read), GiB);
    fs.writeFileSync(rawDst, '');
    fs.truncateSync(rawDst, SIZE); // sparse, as the daemon creates a LUN
    globalSync();
    console.log(`${((nowMs() - t0) / 1000).toFixed(1)} s`);

    daemon = await startDaemon(runDir, dataDir, configFile);
    const d = daemon;
    ini = await openSession(d.port, { initiatorName: 'iqn.2026-11.org.xcopyd:xcopy-bench' });
    for (const lun of Object.keys(sizes).map(Number)) {
      for (let i = 0; i < 8 && (await ini.command(lun, cdb.testUnitReady())).status !== 0; i++); // unit attentions
    }
    console.log(`xcopyd pid ${d.pid} on 127.0.0.1:${d.port} (log ${d.logFile})`);

    // ---- 1 and 2: the 1 GiB copy five ways
    const one = async (m: Method): Promise<CopySample> => {
      switch (m) {
        case 'offload': return qemuCopy(d, ini!, ['-C', '-n', '-m', '1'], LUN.src, LUN.dstOffload, qemuLog);
        case 'offload-big': return bigSegmentCopy(ini!, LUN.src, LUN.dstOffload, SIZE);
        case 'host-m1': return qemuCopy(d, ini!, ['-n', '-m', '1'], LUN.src, LUN.dstHost, qemuLog);
        case 'host-m8': return qemuCopy(d, ini!, ['-n'], LUN.src, LUN.dstHost, qemuLog);
        case 'raw': return rawCopy(file(LUN.src), rawDst, SIZE, CFR_CHUNK);
        case 'raw-2m': return rawCopy(file(LUN.src), rawDst, SIZE, QEMU_REQUEST);
      }
    };
    for (let round = 0; round <= ROUNDS; round++) {
      const order = round % 2 ? METHODS : [...METHODS].reverse();
      const line: string[] = [];
      for (const m of order) {
        if (!d.alive()) throw new Error(`xcopyd died:\n${tail(d.logFile, 30)}`);
        const s = await one(m);
        globalSync();
        if (round > 0) samples.get(m)!.push(s);
        line.push(`${m} ${s.copyMs.toFixed(0)}+${s.flushMs.toFixed(0)} ms`);
      }
      const i0 = nowMs();
      const info = await run('qemu-img', ['info', '-f', 'raw', d.url(LUN.src)], { timeoutMs: 60_000, logFile: qemuLog });
      if (info.code === 0 && round > 0) infoMs.push(nowMs() - i0);
      console.log(`  ${round === 0 ? 'warm-up' : `round ${round}`}: ${line.join(', ')} (copy+flush)`);
    }

    // the copies are right (the daemon writes through the page cache: the files show it)
    for (const [what, a, b, n] of [
      ['LUN 1 (offloaded)', file(LUN.src), file(LUN.dstOffload), SIZE],
      ['LUN 2 (host copy)', file(LUN.src), file(LUN.dstHost), SIZE],
      ['raw destination', file(LUN.src), rawDst, SIZE],
    ] as Array<[string, string, string, number]>) {
      const at = firstDifference(a, b, n);
      checks.push(`${what} ${at < 0 ? 'identical to LUN 0' : `DIFFERS from LUN 0 at byte ${at}`}`);
    }
    fs.rmSync(rawDst, { force: true });

    // ---- 3: 4 KiB reads on LUN 5 with no copy running, then while 4 GiB copies run
    const bigCopy = async (): Promise<CopySample> => {
      const lo0 = loopbackBytes();
      const t1 = nowMs();
      const r = await run('qemu-img', ['convert', '-C', '-n', '-m', '1', '-f', 'raw', '-O', 'raw', d.url(LUN.bigSrc), d.url(LUN.bigDst)], {
        timeoutMs: QEMU_TIMEOUT_MS, logFile: qemuLog,
      });
      const s = { copyMs: nowMs() - t1, flushMs: NaN, loBytes: loopbackBytes() - lo0 };
      if (r.code !== 0) throw new Error(`qemu-img convert -C (${BIG / GiB} GiB): ${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${(r.stderr || r.stdout).trim()}`);
      return s;
    };
    const rng = new Prng(0x5eed4b1d);
    await readLoop(ini, LUN.read, GiB, rng, () => false, 1_000); // warm-up
    globalSync();
    baseline = await readLoop(ini, LUN.read, GiB, rng, () => false, BASELINE_MS);
    /** `n` back-to-back copies with the reads running until the last one ends; then flush and sync. */
    const loadedPhase = async (name: string, n: number): Promise<void> => {
      const copies: CopySample[] = [];
      let copying = true;
      const p = (async () => {
        for (let i = 0; i < n; i++) copies.push(await bigCopy());
      })().finally(() => (copying = false));
      p.catch(() => undefined); // rethrown by the await below, after the reads stop
      const reads = await readLoop(ini!, LUN.read, GiB, rng, () => !copying, MAX_LOADED_MS);
      await p;
      copies[copies.length - 1].flushMs = await syncCache(ini!, LUN.bigDst);
      globalSync();
      loaded.push({ name, reads, copies });
    };
    // The first copy fills the sparse LUN 4 (the filesystem allocates as it goes); the next
    // ones overwrite, like the counted 1 GiB copies. Then one more with no reads: what the
    // reads cost the copy.
    await loadedPhase('copy into sparse LUN 4', 1);
    await loadedPhase('copy overwriting LUN 4', BIG_COPIES);
    bigAlone = await bigCopy();
    bigAlone.flushMs = await syncCache(ini, LUN.bigDst);
    const at = firstDifference(file(LUN.bigSrc), file(LUN.bigDst), BIG);
    checks.push(`LUN 4 ${at < 0 ? 'identical to LUN 3' : `DIFFERS from LUN 3 at byte ${at}`}`);
  } finally {
    if (ini) {
      try {
        await within(ini.logout(), 5_000);
      } catch {
        /* the daemon may be gone */
      }
      ini.close();
    }
    if (daemon) await daemon.stop();
    cleanup();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }

  // ---- report
  const load1 = loadavg();
  const med = (m: Method, k: keyof CopySample | 'total') =>
    median(samples.get(m)!.map((s) => (k === 'total' ? s.copyMs + s.flushMs : s[k])));
  const min = (m: Method, k: 'copyMs' | 'total') => Math.min(...samples.get(m)!.map((s) => (k === 'total' ? s.copyMs + s.flushMs : s.copyMs)));
  const gibs = (ms: number) => (SIZE / GiB) / (ms / 1000);
  console.log('');
  console.log(`== ${mib(SIZE)} of random data, LUN 0 -> LUN 1 (offloaded) / LUN 2 (host copy); median of ${ROUNDS} (min)`);
  const w = Math.max(...METHODS.map((m) => LABEL[m].length));
  console.log(`${'method'.padEnd(w)} | ${'copy ms'.padStart(16)} ${'GiB/s'.padStart(6)} | ${'+flush ms'.padStart(9)} | ${'copy+flush ms'.padStart(16)} ${'GiB/s'.padStart(6)} | lo rx+tx during copy`);
  for (const m of METHODS) {
    const lo = med(m, 'loBytes');
    console.log(
      `${LABEL[m].padEnd(w)} | ${`${f1(med(m, 'copyMs'))} (${f1(min(m, 'copyMs'))})`.padStart(16)} ${f2(gibs(med(m, 'copyMs'))).padStart(6)} |` +
        ` ${f1(med(m, 'flushMs')).padStart(9)} | ${`${f1(med(m, 'total'))} (${f1(min(m, 'total'))})`.padStart(16)} ${f2(gibs(med(m, 'total'))).padStart(6)} |` +
        ` ${mib(lo)} (${((lo / SIZE) * 100).toFixed(2)} % of the copy)`,
    );
  }
  console.log(`qemu-img info on the same URL (process start + login + close, paid by every qemu-img run): median ${f1(median(infoMs))} ms`);
  console.log(`all runs (copy+flush ms): ${METHODS.map((m) => `${m} [${samples.get(m)!.map((s) => `${s.copyMs.toFixed(0)}+${s.flushMs.toFixed(0)}`).join(', ')}]`).join('; ')}`);

  const ratio = (a: number, b: number) => a / b;
  const rows: Array<[string, number, number, string, boolean]> = [];
  const r1 = ratio(med('host-m1', 'copyMs'), med('offload', 'copyMs'));
  const r1d = ratio(med('host-m1', 'total'), med('offload', 'total'));
  const r1b = ratio(med('host-m8', 'copyMs'), med('offload', 'copyMs'));
  const r1bd = ratio(med('host-m8', 'total'), med('offload', 'total'));
  const r2 = ratio(med('offload', 'copyMs'), med('raw', 'copyMs'));
  const r2d = ratio(med('offload', 'total'), med('raw', 'total'));
  const r2min = ratio(min('offload', 'copyMs'), min('raw', 'copyMs'));
  // Judged on the copy column: no method flushes in it (the flush is the same disk writeback
  // for every method, so adding it pulls every ratio towards 1).
  rows.push(['host copy (-m 1) / offloaded', r1, r1d, '>= 5', r1 >= 5]);
  rows.push(['host copy (-m 8) / offloaded', r1b, r1bd, '>= 5', r1b >= 5]);
  rows.push(['offloaded / raw copy_file_range', r2, r2d, '<= 1.25', r2 <= 1.25]);
  const r3 = ratio(med('host-m1', 'copyMs'), med('offload-big', 'copyMs'));
  const r3d = ratio(med('host-m1', 'total'), med('offload-big', 'total'));
  const r4 = ratio(med('offload-big', 'copyMs'), med('raw', 'copyMs'));
  const r4d = ratio(med('offload-big', 'total'), med('raw', 'total'));
  rows.push(['host (-m 1) / offloaded, 16 MiB segs', r3, r3d, '>= 5', r3 >= 5]);
  rows.push(['offloaded 16 MiB segs / raw', r4, r4d, '<= 1.25', r4 <= 1.25]);
  console.log('');
  console.log(`${'ratio (medians)'.padEnd(32)} | ${'copy'.padStart(7)} | ${'copy+flush'.padStart(10)} | want (on copy)`);
  for (const [name, a, b, want, ok] of rows) {
    console.log(`${name.padEnd(32)} | ${f2(a).padStart(6)}x | ${f2(b).padStart(9)}x | ${want}  ${ok ? 'ok' : 'MISSED'}`);
  }
  console.log(`offloaded / raw copy_file_range by minimums: ${f3(r2min)}x (copy)`);
  const cmds = SIZE / QEMU_REQUEST;
  console.log(`offloaded / raw copy_file_range in 2 MiB calls: ${f2(ratio(med('offload', 'copyMs'), med('raw-2m', 'copyMs')))}x (copy); ` +
    `${cmds} EXTENDED COPY commands, ${f3((med('offload', 'copyMs') - median(infoMs) - med('raw-2m', 'copyMs')) / cmds)} ms each over the kernel's copy`);
  const est = med('offload', 'copyMs') - median(infoMs);
  console.log(`estimate without qemu-img's process start and login (offloaded copy ${f1(med('offload', 'copyMs'))} - qemu-img info ${f1(median(infoMs))} ms): ` +
    `${f1(est)} ms, ${f2(est / med('raw', 'copyMs'))}x raw (copy), ${f2((est + med('offload', 'flushMs')) / med('raw', 'total'))}x (copy+flush)`);

  console.log('');
  console.log(`== 4 KiB READ(10) at QD1, random offsets of LUN 5 (1 GiB of random data), while qemu-img convert -C -n -m 1 copies ${BIG / GiB} GiB LUN 3 -> LUN 4`);
  const bigText = (b: CopySample) =>
    `${b.copyMs.toFixed(0)} ms (${((BIG / GiB) / (b.copyMs / 1000)).toFixed(2)} GiB/s, lo rx+tx ${mib(b.loBytes)})` +
    (Number.isFinite(b.flushMs) ? `, then SYNCHRONIZE CACHE ${f1(b.flushMs)} ms` : '');
  for (const l of loaded) {
    // Each read is a 48-byte command and a 48-byte Data-In header with 4 KiB, counted on rx and tx.
    const probe = l.reads.n * (READ_SIZE + 2 * 48) * 2;
    const lo = l.copies.reduce((a, b) => a + b.loBytes, 0);
    console.log(`${l.name}, with the reads: ${l.copies.map(bigText).join('; ')}` +
      ` [lo: ~${mib(probe)} the reads, ${mib(Math.max(0, lo - probe))} the copy and the rest of the machine]`);
  }
  if (bigAlone) console.log(`copy overwriting LUN 4, no reads: ${bigText(bigAlone)}`);
  console.log(`${'reads'.padEnd(34)} | ${'n'.padStart(7)} | ${'s'.padStart(5)} | ${'IOPS'.padStart(6)} | ${'p50 ms'.padStart(7)} | ${'p99 ms'.padStart(7)} | ${'p99.9 ms'.padStart(8)} | ${'max ms'.padStart(7)} | ${'mean ms'.padStart(7)} | errors | p99 < 20 ms`);
  const readRows: Array<[string, ReadStats | undefined]> = [['no copy (baseline)', baseline], ...loaded.map((l) => [`during the ${l.name}`, l.reads] as [string, ReadStats])];
  for (const [name, s] of readRows) {
    if (!s) continue;
    const ok = s === baseline ? '' : s.p99 < 20 && s.errors === 0 ? 'ok' : 'MISSED';
    console.log(
      `${name.padEnd(34)} | ${String(s.n).padStart(7)} | ${(s.ms / 1000).toFixed(1).padStart(5)} | ${((s.n / s.ms) * 1000).toFixed(0).padStart(6)} |` +
        ` ${f3(s.p50).padStart(7)} | ${f3(s.p99).padStart(7)} | ${f3(s.p999).padStart(8)} | ${f2(s.max).padStart(7)} | ${f3(s.mean).padStart(7)} | ${String(s.errors).padStart(6)} | ${ok}`,
    );
  }
  if (baseline) {
    for (const l of loaded) {
      console.log(`p99 during the ${l.name}: ${f2(l.reads.p99 / baseline.p99)}x the baseline's, p50 ${f2(l.reads.p50 / baseline.p50)}x`);
    }
    console.log(`(the loaded reads include the ~${f1(median(infoMs))} ms of qemu-img start and login before its first EXTENDED COPY)`);
  }
  console.log('');
  console.log(`checks: ${checks.join('; ')}`);
  console.log(`load average at end ${load1.map((x) => x.toFixed(2)).join(' ')} on ${cpus().length} CPUs (shared machine: other work shifts every number)`);

  const results = path.join(runDir, 'results.json');
  fs.writeFileSync(results, JSON.stringify({
    date: new Date().toISOString(), size: SIZE, big: BIG, bigCopies: BIG_COPIES, rounds: ROUNDS, loadavg: { start: load0, end: load1 },
    samples: Object.fromEntries(samples), qemuInfoMs: infoMs, ratios: { hostM1: [r1, r1d], hostM8: [r1b, r1bd], offloadVsRaw: [r2, r2d, r2min] },
    reads: { baseline, loaded }, bigAlone, checks,
  }, null, 2));
  console.log(`results: ${results}`);
  // A missed target is printed (MISSED), not an error: this is a benchmark. Wrong data is.
  return checks.every((c) => !/DIFFERS/.test(c)) ? 0 : 1;
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
