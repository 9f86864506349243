/**
 * Benchmark (not a test): xcopyd against Debian's tgtd, same client, same run (issue 12).
 *
 *   npm run bench [-- --repeat N] [--scale F] [--only xcopyd|tgt]
 *                    [--only-section writes|reads|copy[,...]] [--metrics KEY[,...]]
 *                    [--copy-count N] [--budget-min M]
 *
 * --metrics: only these metrics of the chosen sections (keys as in results.json, e.g.
 * seq4k-write-qd1,rand4k-write-qd1).
 *
 * Client: `qemu-img bench` (QEMU's iSCSI driver, libiscsi) on iscsi://127.0.0.1 URLs.
 * Sections:
 *   writes: 4 KiB sequential and "random" writes at queue depth 1, 16 and 32 (commands/s),
 *     1 MiB sequential writes at queue depth 8 and 16 (MB/s, 10^6 bytes/s).
 *   reads: 4 KiB random read at QD1 and QD16 (commands/s), 1 MiB sequential read at QD16 (MB/s).
 *   copy (xcopyd only; tgtd has no EXTENDED COPY): 1 GiB `qemu-img convert -C -n -m 1` vs a
 *     raw copy_file_range of the same files vs a host copy (`qemu-img convert -n` over
 *     iscsi://), and the per-command cost of EXTENDED COPY and PT+RRTI+WUT of 64 KiB, 2 MiB and
 *     64 MiB over the kernel's own copy_file_range of the same size (test/bench/copy-section.ts).
 * "Random": qemu-img bench only walks with a fixed step, so the step is 104729 blocks of
 * 4 KiB (a prime, coprime with the LUN's block count): each request lands ~400 MiB from the
 * previous one, modulo the LUN size.
 * Same terms for both targets: tgtd is set (tgtadm --op update) to offer no digests and the
 * same burst and segment sizes xcopyd offers (TGT_SAME_TERMS below), and before the runs the
 * Login PDUs of one `qemu-img info` per target are captured (strace) and the keys each target
 * answered are printed side by side (and kept in results.json), so a ratio never hides a
 * header digest or 8 KiB PDUs on one side.
 * Order: a warm-up pass writes each whole LUN once (so reads hit allocated blocks on both
 * targets, and the copy section copies allocated data); then for each metric the two targets
 * alternate (order swapped every other round), repeated N times; `sync` runs before each
 * run, outside the timing; the median is reported with the ratio xcopyd/tgtd and the median
 * 1-minute load average. Every qemu-img run has a hard time limit (RUN_TIMEOUT_MS). At the
 * end one markdown table (for a closing note) and results.json in the run directory.
 * Default run: about 5-10 min on a quiet 2-core machine (estimate); --scale 0.1 for a quick
 * look. Bounded: past --budget-min (default 14) every remaining metric runs once instead of N
 * times and the copy rounds once, so a loaded machine gets fewer samples, not hours.
 */
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { findInPath, makeRunDir, requireTarget, requireTools, run, startTarget, type Target, type TargetKind } from '../interop/harness';
import { copyWhole, median, perCommand, sizeText, type CopyRow, type OverheadRow } from './copy-section';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const STRIDE_4K = 104_729 * 4096;
const RUN_TIMEOUT_MS = 120_000;
type Section = 'writes' | 'reads' | 'copy';
const SECTIONS: Section[] = ['writes', 'reads', 'copy'];

interface Metric {
  key: string;
  label: string;
  unit: string;
  section: Section;
  write: boolean;
  size: number;
  depth: number;
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
  const sectionArg = get('--only-section');
  const sections = sectionArg ? (sectionArg.split(',') as Section[]) : SECTIONS;
  for (const x of sections) if (!SECTIONS.includes(x)) throw new Error(`--only-section: ${x}? (writes, reads, copy)`);
  const copyCount = Math.max(3, Math.min(2000, Number(get('--copy-count') ?? 100)));
  const budgetMin = Math.max(1, Number(get('--budget-min') ?? 14));
  const metricKeys = get('--metrics')?.split(',');
  return { repeat, scale, only, sections, copyCount, budgetMin, metricKeys };
}

function metrics(scale: number): Metric[] {
  // Counts sized so that each run takes a few seconds on a quiet 2-core machine.
  const n = (x: number) => Math.max(16, Math.round(x * scale));
  const m4k = (kind: 'seq' | 'rand', depth: number, write: boolean, count: number): Metric => ({
    key: `${kind}4k-${write ? 'write' : 'read'}-qd${depth}`,
    label: `4 KiB ${kind === 'seq' ? 'sequential' : 'random'} ${write ? 'write' : 'read'}, QD${depth}`,
    unit: 'cmd/s', section: write ? 'writes' : 'reads', write, size: 4 * KiB, depth,
    ...(kind === 'rand' ? { step: STRIDE_4K } : {}), count: n(count),
  });
  const m1m = (depth: number, write: boolean): Metric => ({
    key: `seq1m-${write ? 'write' : 'read'}-qd${depth}`,
    label: `1 MiB sequential ${write ? 'write' : 'read'}, QD${depth}`,
    unit: 'MB/s', section: write ? 'writes' : 'reads', write, size: MiB, depth, count: n(2048),
  });
  return [
    m4k('seq', 1, true, 10_000),
    m4k('seq', 16, true, 100_000),
    m4k('seq', 32, true, 100_000),
    m4k('rand', 1, true, 10_000),
    m4k('rand', 16, true, 100_000),
    m4k('rand', 32, true, 100_000),
    m1m(8, true),
    m1m(16, true),
    m4k('rand', 1, false, 10_000),
    m4k('rand', 16, false, 100_000),
    m1m(16, false),
  ];
}

function benchArgs(m: { write: boolean; size: number; depth: number; step?: number; count: number }, url: string): string[] {
  const a = ['bench', '-f', 'raw', '-t', 'none', '-c', String(m.count), '-d', String(m.depth), '-s', String(m.size)];
  if (m.step) a.push('-S', String(m.step));
  if (m.write) a.push('-w', '--pattern=165');
  a.push(url);
  return a;
}

/**
 * tgtd's keys set to what xcopyd offers (iscsi/ login defaults: no digests, 256 KiB bursts and
 * segments, InitialR2T=No, ImmediateData=Yes). The harness offers "CRC32C,None" digests on tgtd
 * (for digest-requiring initiators) and tgtd then answers CRC32C to libiscsi's "None,CRC32C";
 * its MaxRecvDataSegmentLength default is 8 KiB. Both would cost tgtd, not us.
 */
export const TGT_SAME_TERMS: Array<[string, string]> = [
  ['HeaderDigest', 'None'],
  ['DataDigest', 'None'],
  ['MaxRecvDataSegmentLength', '262144'],
  ['MaxXmitDataSegmentLength', '262144'],
  ['FirstBurstLength', '262144'],
  ['MaxBurstLength', '262144'],
  ['InitialR2T', 'No'],
  ['ImmediateData', 'Yes'],
];

/** Apply TGT_SAME_TERMS to the harness's tgtd (target id 1); returns the keys tgtadm refused. */
export async function tgtSameTerms(t: Target, logFile: string): Promise<string[]> {
  const refused: string[] = [];
  for (const [name, value] of TGT_SAME_TERMS) {
    const r = await run('tgtadm', ['-C', String(t.port), '--lld', 'iscsi', '--op', 'update', '--mode', 'target', '--tid', '1',
      '--name', name, '--value', value], { timeoutMs: 10_000, logFile });
    if (r.code !== 0) refused.push(`${name}=${value} (${(r.stderr || r.stdout).trim()})`);
  }
  return refused;
}

/** The operational keys a login negotiates: what the client offered, and what the target answered. */
export interface LoginKeys {
  offer: Record<string, string>;
  answer: Record<string, string>;
}

export const LOGIN_KEYS = ['HeaderDigest', 'DataDigest', 'InitialR2T', 'ImmediateData', 'FirstBurstLength', 'MaxBurstLength',
  'MaxRecvDataSegmentLength', 'MaxOutstandingR2T'];

/** The Login PDUs' text keys of one `qemu-img info` against `t` (strace of the client's socket calls); null without strace. */
export async function loginKeys(t: Target, dir: string): Promise<LoginKeys | null> {
  if (!findInPath('strace')) return null;
  const trace = path.join(dir, `login-${t.kind}.strace`);
  await run('strace', ['-f', '-s', '8192', '-e', 'trace=sendto,sendmsg,write,writev,recvfrom,recvmsg,read', '-o', trace,
    'qemu-img', 'info', '-f', 'raw', t.url(t.dataLuns[0])], { timeoutMs: 60_000 });
  if (!fs.existsSync(trace)) return null;
  const offer: Record<string, string> = {};
  const answer: Record<string, string> = {};
  for (const line of fs.readFileSync(trace, 'utf8').split('\n')) {
    const m = /^\d+\s+(\w+)\(/.exec(line);
    if (!m) continue;
    const into = /^(send|write)/.test(m[1]) ? offer : /^(recv|read)/.test(m[1]) ? answer : undefined;
    if (!into) continue;
    for (const kv of line.matchAll(/([A-Z][A-Za-z0-9]+)=([^\\"]*)\\0/g)) into[kv[1]] = kv[2];
  }
  return { offer, answer };
}

/**
 * What each key comes to on each side (the answer, or the RFC 7143 default when the target did not answer a
 * declarative key: MaxRecvDataSegmentLength 8192), one line per key.
 */
export function negotiatedTable(keys: Map<TargetKind, LoginKeys | null>): string[] {
  const kinds = [...keys.keys()];
  const lines = [`| login key (libiscsi offers) | ${kinds.map((k) => `${k} answers`).join(' | ')} |`, `|---|${kinds.map(() => '---').join('|')}|`];
  for (const key of LOGIN_KEYS) {
    const offer = [...keys.values()].find((k) => k?.offer[key] !== undefined)?.offer[key] ?? '-';
    const cells = kinds.map((k) => {
      const lk = keys.get(k);
      if (!lk) return '(no strace)';
      const a = lk.answer[key];
      if (a !== undefined) return a;
      return key === 'MaxRecvDataSegmentLength' ? 'not declared: 8192' : '(not answered)';
    });
    lines.push(`| ${key} (${offer}) | ${cells.join(' | ')} |`);
  }
  return lines;
}

interface Sample {
  value: number; // in the metric's unit; NaN if the run failed
  seconds: number;
  load?: number; // 1-minute load average when the run started
  error?: string;
}

async function bench(t: Target, m: Metric, logFile: string): Promise<Sample> {
  execFileSync('sync', [], { stdio: 'ignore', timeout: 120_000 });
  const load = loadavg()[0];
  const r = await run('qemu-img', benchArgs(m, t.url(t.dataLuns[0])), { timeoutMs: RUN_TIMEOUT_MS, logFile });
  const s = /Run completed in ([\d.]+) seconds/.exec(r.stdout);
  if (r.code !== 0 || !s) {
    const why = r.timedOut ? `timed out after ${RUN_TIMEOUT_MS / 1000} s` : `exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').pop()}`;
    return { value: NaN, seconds: NaN, load, error: why };
  }
  const seconds = Number(s[1]);
  const value = m.unit === 'MB/s' ? (m.count * m.size) / seconds / 1e6 : m.count / seconds;
  return { value, seconds, load };
}

function fmt(x: number, unit: string): string {
  if (!Number.isFinite(x)) return 'n/a';
  return unit === 'MB/s' ? x.toFixed(0) : Math.round(x).toLocaleString('en-US');
}

function ratioText(r: number | undefined): string {
  return r !== undefined && Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a';
}

async function main(): Promise<number> {
  const { repeat, scale, only, sections, copyCount, budgetMin, metricKeys } = parseArgs(process.argv.slice(2));
  const wantCopy = sections.includes('copy') && only !== 'tgt';
  const all = metrics(scale);
  for (const k of metricKeys ?? []) if (!all.some((m) => m.key === k)) throw new Error(`--metrics: ${k}? (${all.map((m) => m.key).join(', ')})`);
  const ms = all.filter((m) => sections.includes(m.section) && (!metricKeys || metricKeys.includes(m.key)));
  const kinds: TargetKind[] = only ? [only] : ms.length ? ['xcopyd', 'tgt'] : ['xcopyd'];
  if (!requireTools([['qemu-img', 'qemu-utils']])) return 1;
  for (const k of kinds) if (!requireTarget(k)) return 1;

  const runDir = makeRunDir('bench');
  const logFile = path.join(runDir, 'qemu-img-bench.log');
  const targets = new Map<TargetKind, Target>();
  const samples = new Map<string, Sample[]>(); // `${kind}/${metric}`
  const loginKeyMap = new Map<TargetKind, LoginKeys | null>();
  let copyRows: CopyRow[] = [];
  let overheadRows: OverheadRow[] = [];
  const extraErrors: string[] = [];
  const started = Date.now();
  let budgetNoted = false;
  try {
    for (const k of kinds) targets.set(k, await startTarget({ name: 'bench', lunSize: GiB }, k));
    const tgtd = targets.get('tgt');
    if (tgtd) {
      const refused = await tgtSameTerms(tgtd, logFile);
      if (refused.length) console.log(`tgtadm refused: ${refused.join('; ')}`);
    }
    for (const [k, t] of targets) loginKeyMap.set(k, await loginKeys(t, runDir));
    console.log(
      `qemu-img bench on iscsi://127.0.0.1, 1 GiB LUN, median of ${repeat}, sections ${sections.join(',')}` +
        ` (logs: ${runDir}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')})`,
    );
    for (const [k, t] of targets) {
      process.stdout.write(`warm-up: writing the whole LUN on ${k} ... `);
      const w = await bench(t, { key: 'fill', label: 'fill', unit: 'MB/s', section: 'writes', write: true, size: MiB, depth: 16, count: GiB / MiB }, logFile);
      console.log(w.error ? `FAILED (${w.error})` : `${w.value.toFixed(0)} MB/s`);
    }
    console.log(`negotiated (Login PDUs of qemu-img info, strace):\n${negotiatedTable(loginKeyMap).join('\n')}`);
    // The time budget: past it, each remaining metric runs once (and the copy rounds once).
    const overBudget = () => Date.now() - started > budgetMin * 60_000;
    for (const m of ms) {
      for (let i = 0; i < repeat; i++) {
        if (i > 0 && overBudget()) {
          if (!budgetNoted) console.log(`  (past the ${budgetMin} min budget: one run per remaining metric)`);
          budgetNoted = true;
          break;
        }
        const order = i % 2 ? [...targets].reverse() : [...targets];
        for (const [k, t] of order) {
          const key = `${k}/${m.key}`;
          if (!t.alive()) {
            samples.set(key, [...(samples.get(key) ?? []), { value: NaN, seconds: NaN, error: 'target died' }]);
            continue;
          }
          const s = await bench(t, m, logFile);
          samples.set(key, [...(samples.get(key) ?? []), s]);
          process.stdout.write(`  ${m.key} #${i + 1} ${k}: ${s.error ?? `${fmt(s.value, m.unit)} ${m.unit}`} (load ${s.load?.toFixed(1)})\n`);
        }
      }
    }
    const x = targets.get('xcopyd');
    if (wantCopy && x) {
      // The copy section alone on the machine: tgtd is idle but stopped anyway.
      const tg = targets.get('tgt');
      if (tg) {
        await tg.stop();
        targets.delete('tgt');
      }
      console.log('copy: 1 GiB LUN 0 -> LUN 1');
      try {
        copyRows = await copyWhole(x, overBudget() ? 1 : repeat, logFile);
      } catch (e) {
        extraErrors.push(`copy: ${(e as Error).message}`);
      }
      console.log(`copy: per command (up to ${copyCount} commands per size and kind)`);
      try {
        overheadRows = await perCommand(x, { count: copyCount });
      } catch (e) {
        extraErrors.push(`per-command: ${(e as Error).message}`);
      }
    }
  } finally {
    for (const t of targets.values()) await t.stop();
  }

  const rows = ms.map((m) => {
    const ss = (k: TargetKind) => samples.get(`${k}/${m.key}`) ?? [];
    const x = median(ss('xcopyd').map((s) => s.value));
    const g = median(ss('tgt').map((s) => s.value));
    const load = median([...ss('xcopyd'), ...ss('tgt')].map((s) => s.load ?? NaN));
    const n = Math.min(...(['xcopyd', 'tgt'] as TargetKind[]).map((k) => ss(k).filter((s) => Number.isFinite(s.value)).length));
    return { metric: m.key, label: `${m.label} (${m.unit})`, xcopyd: x, tgtd: g, ratio: x / g, unit: m.unit, load, n };
  });
  const minutes = (Date.now() - started) / 60_000;
  const md: string[] = [];
  md.push(`Benchmark (\`npm run bench\`, test/bench/run.ts), ${new Date().toISOString().slice(0, 16)}Z, ` +
    `median of ${repeat}, scale ${scale}, ${minutes.toFixed(1)} min; load = median 1-min load average at the runs' start.`);
  if (rows.length) {
    md.push('', ...negotiatedTable(loginKeyMap));
    md.push('', '| pattern (qemu-img bench) | xcopyd | tgtd | xcopyd/tgtd | runs | load |', '|---|---:|---:|---:|---:|---:|');
    for (const r of rows) md.push(`| ${r.label} | ${fmt(r.xcopyd, r.unit)} | ${fmt(r.tgtd, r.unit)} | ${ratioText(r.ratio)} | ${r.n} | ${r.load.toFixed(1)} |`);
  }
  if (copyRows.length) {
    md.push('', '| 1 GiB copy, LUN 0 -> LUN 1 (xcopyd) | ms | vs raw copy_file_range (64 MiB calls) | load |', '|---|---:|---:|---:|');
    for (const r of copyRows) md.push(`| ${r.label} | ${Number.isFinite(r.ms) ? r.ms.toFixed(0) : 'n/a'} | ${r.ratio === undefined ? '1.00x' : ratioText(r.ratio)} | ${r.load.toFixed(1)} |`);
  }
  if (overheadRows.length) {
    md.push('', '| one copy command (xcopyd, TS initiator) | size | n | command us | kernel copy_file_range us | overhead us | load |',
      '|---|---:|---:|---:|---:|---:|---:|');
    for (const r of overheadRows) {
      md.push(`| ${r.kind} | ${sizeText(r.size)} | ${r.n} | ${r.cmdUs.toFixed(0)} | ${r.kernelUs.toFixed(0)} | ${r.overheadUs.toFixed(0)} | ${r.load.toFixed(1)} |`);
    }
  }
  console.log('\n' + md.join('\n'));
  const errors = [
    ...[...samples.entries()].flatMap(([k, ss]) => ss.filter((s) => s.error).map((s) => `${k}: ${s.error}`)),
    ...extraErrors,
  ];
  if (errors.length) console.log(`\nerrors:\n  ${errors.join('\n  ')}`);
  const resultFile = path.join(runDir, 'results.json');
  fs.writeFileSync(
    resultFile,
    JSON.stringify({ date: new Date().toISOString(), repeat, scale, sections, login: Object.fromEntries(loginKeyMap), rows, copyRows, overheadRows, samples: Object.fromEntries(samples) }, null, 2),
  );
  fs.writeFileSync(path.join(runDir, 'results.md'), md.join('\n') + '\n');
  console.log(`\nresults: ${resultFile}`);
  return errors.length ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (rc) => process.exit(rc),
    (e) => {
      console.error(e);
      process.exit(2);
    },
  );
}
