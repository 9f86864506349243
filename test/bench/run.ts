/**
 * Benchmark (not a test): xcopyd against Debian's tgtd, same client, same run.
 *
 *   npm run bench [-- --repeat N] [--scale F] [--only xcopyd|tgt]
 *
 * Client: `qemu-img bench` (QEMU's iSCSI driver, libiscsi) on iscsi://127.0.0.1 URLs.
 * Metrics, each read and write:
 *   - 4 KiB "random" at queue depth 16, in commands/s. qemu-img bench only walks with a fixed
 *     step, so the step is 104729 blocks of 4 KiB (a prime, coprime with the LUN's block
 *     count): each request lands ~400 MiB from the previous one, modulo the LUN size.
 *   - 1 MiB sequential at queue depth 16, in MB/s (10^6 bytes/s).
 * Order: a warm-up pass writes each whole LUN once (so reads hit allocated blocks on both
 * targets); then for each metric the two targets alternate, repeated N times; the median is
 * reported with the ratio xcopyd/tgtd. Every qemu-img run has a hard time limit.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeRunDir, requireTarget, requireTools, run, startTarget, type Target, type TargetKind } from '../interop/harness';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const DEPTH = 16;
const STRIDE_4K = 104_729 * 4096;
const RUN_TIMEOUT_MS = 180_000;

interface Metric {
  key: string;
  label: string;
  unit: string;
  write: boolean;
  size: number;
  step?: number;
  count: number;
}

function parseArgs(argv: string[]) {
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const repeat = Math.max(1, Math.min(20, Number(get('--repeat') ?? 3)));
  const scale = Math.max(0.01, Math.min(10, Number(get('--scale') ?? 1)));
  const only = get('--only') as TargetKind | undefined;
  return { repeat, scale, only };
}

function metrics(scale: number): Metric[] {
  const n4k = Math.round(100_000 * scale);
  const n1m = Math.round(2048 * scale);
  return [
    { key: 'rand4k-read', label: '4 KiB random read, QD16', unit: 'cmd/s', write: false, size: 4 * KiB, step: STRIDE_4K, count: n4k },
    { key: 'rand4k-write', label: '4 KiB random write, QD16', unit: 'cmd/s', write: true, size: 4 * KiB, step: STRIDE_4K, count: n4k },
    { key: 'seq1m-read', label: '1 MiB sequential read, QD16', unit: 'MB/s', write: false, size: MiB, count: n1m },
    { key: 'seq1m-write', label: '1 MiB sequential write, QD16', unit: 'MB/s', write: true, size: MiB, count: n1m },
  ];
}

function benchArgs(m: { write: boolean; size: number; step?: number; count: number }, url: string): string[] {
  const a = ['bench', '-f', 'raw', '-t', 'none', '-c', String(m.count), '-d', String(DEPTH), '-s', String(m.size)];
  if (m.step) a.push('-S', String(m.step));
  if (m.write) a.push('-w', '--pattern=165');
  a.push(url);
  return a;
}

interface Sample {
  value: number; // in the metric's unit; NaN if the run failed
  seconds: number;
  error?: string;
}

async function bench(t: Target, m: Metric, logFile: string): Promise<Sample> {
  const r = await run('qemu-img', benchArgs(m, t.url(t.dataLuns[0])), { timeoutMs: RUN_TIMEOUT_MS, logFile });
  const s = /Run completed in ([\d.]+) seconds/.exec(r.stdout);
  if (r.code !== 0 || !s) {
    const why = r.timedOut ? `timed out after ${RUN_TIMEOUT_MS / 1000} s` : `exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').pop()}`;
    return { value: NaN, seconds: NaN, error: why };
  }
  const seconds = Number(s[1]);
  const value = m.unit === 'MB/s' ? (m.count * m.size) / seconds / 1e6 : m.count / seconds;
  return { value, seconds };
}

function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function fmt(x: number, unit: string): string {
  if (!Number.isFinite(x)) return 'n/a';
  return unit === 'MB/s' ? x.toFixed(0) : Math.round(x).toLocaleString('en-US');
}

async function main(): Promise<number> {
  const { repeat, scale, only } = parseArgs(process.argv.slice(2));
  const kinds: TargetKind[] = only ? [only] : ['xcopyd', 'tgt'];
  if (!requireTools([['qemu-img', 'qemu-utils']])) return 1;
  for (const k of kinds) if (!requireTarget(k)) return 1;

  const runDir = makeRunDir('bench');
  const logFile = path.join(runDir, 'qemu-img-bench.log');
  const ms = metrics(scale);
  const targets = new Map<TargetKind, Target>();
  const samples = new Map<string, Sample[]>(); // `${kind}/${metric}`
  try {
    for (const k of kinds) targets.set(k, await startTarget({ name: 'bench', lunSize: GiB }, k));
    console.log(
      `qemu-img bench on iscsi://127.0.0.1, ${GiB / GiB} GiB LUN, depth ${DEPTH}, median of ${repeat}` +
        ` (logs: ${runDir})`,
    );
    for (const [k, t] of targets) {
      process.stdout.write(`warm-up: writing the whole LUN on ${k} ... `);
      const w = await bench(t, { key: 'fill', label: 'fill', unit: 'MB/s', write: true, size: MiB, count: GiB / MiB }, logFile);
      console.log(w.error ? `FAILED (${w.error})` : `${w.value.toFixed(0)} MB/s`);
    }
    for (const m of ms) {
      for (let i = 0; i < repeat; i++) {
        for (const [k, t] of targets) {
          if (!t.alive()) {
            samples.set(`${k}/${m.key}`, [...(samples.get(`${k}/${m.key}`) ?? []), { value: NaN, seconds: NaN, error: 'target died' }]);
            continue;
          }
          const s = await bench(t, m, logFile);
          samples.set(`${k}/${m.key}`, [...(samples.get(`${k}/${m.key}`) ?? []), s]);
          process.stdout.write(`  ${m.key} #${i + 1} ${k}: ${s.error ?? `${fmt(s.value, m.unit)} ${m.unit}`}\n`);
        }
      }
    }
  } finally {
    for (const t of targets.values()) await t.stop();
  }

  const rows = ms.map((m) => {
    const med = (k: TargetKind) => median((samples.get(`${k}/${m.key}`) ?? []).map((s) => s.value));
    const x = med('xcopyd');
    const g = med('tgt');
    return { metric: m.key, label: `${m.label} (${m.unit})`, xcopyd: x, tgtd: g, ratio: x / g, unit: m.unit };
  });
  const w = Math.max(...rows.map((r) => r.label.length));
  console.log('');
  console.log(`${'metric'.padEnd(w)}  ${'xcopyd'.padStart(10)}  ${'tgtd'.padStart(10)}  ${'xcopyd/tgtd'.padStart(11)}`);
  for (const r of rows) {
    const ratio = Number.isFinite(r.ratio) ? `${r.ratio.toFixed(2)}x` : 'n/a';
    console.log(`${r.label.padEnd(w)}  ${fmt(r.xcopyd, r.unit).padStart(10)}  ${fmt(r.tgtd, r.unit).padStart(10)}  ${ratio.padStart(11)}`);
  }
  const errors = [...samples.entries()].flatMap(([k, ss]) => ss.filter((s) => s.error).map((s) => `${k}: ${s.error}`));
  if (errors.length) console.log(`\nerrors:\n  ${errors.join('\n  ')}`);
  const resultFile = path.join(runDir, 'results.json');
  fs.writeFileSync(
    resultFile,
    JSON.stringify({ date: new Date().toISOString(), depth: DEPTH, repeat, scale, rows, samples: Object.fromEntries(samples) }, null, 2),
  );
  console.log(`\nresults: ${resultFile}`);
  return errors.length ? 1 : 0;
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
