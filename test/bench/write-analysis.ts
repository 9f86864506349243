/**
 * Write-gap analysis (issue 12; not a test, asserts nothing): what xcopyd and tgtd do per
 * write command, measured in quantities that do not depend on the machine's load.
 *
 *  1. Login: the operational keys qemu-img's libiscsi offers and each target answers
 *     (`strace -f -s 4096` on `qemu-img info`, the text segments of the Login PDUs), and
 *     from them the R2T round trips one 4 KiB and one 1 MiB WRITE needs.
 *  2. CPU per command: utime + stime of every thread of the target (/proc/PID/task/STAT,
 *     summed by thread name) before and after a fixed number of commands, and the client's
 *     (qemu-img, /usr/bin/time) for the same run.
 *  3. Syscalls per command: `strace -c -f -p PID` attached to the target for a fixed number
 *     of commands (strace slows the target down a lot; only the counts are used).
 *
 * Patterns: 4 KiB sequential write QD16 and 1 MiB sequential write QD8 (the two the issue
 * measured behind tgtd), and 4 KiB random write QD16 for contrast. Every child process has
 * a hard time limit; the targets are stopped by their PIDs.
 *
 *  4. With --perf: `perf record -g` of each target during each pattern (xcopyd started with
 *     NODE_OPTIONS=--perf-basic-prof so JIT frames have names), the top symbols printed.
 *
 *  5. Thread switches per command: voluntary context switches (a thread went to sleep and
 *     was woken: one wake-up each) and involuntary ones, summed over the target's threads from
 *     /proc/PID/task/TID/status before and after the same fixed-count run.
 *
 * --patterns KEY,... picks patterns (default: the three above; QD1 ones: 4k-seq-write-qd1,
 * 4k-rand-write-qd1, 4k-rand-read-qd1). --rounds N repeats each pattern's CPU run N times, rotating
 * the targets' order. --ab-env NAME=VALUE starts a second xcopyd with that
 * variable set (e.g. XCOPYD_INLINE_WRITES=0) measured in the same run, for a before/after.
 *
 *   npx ts-node --transpile-only test/bench/write-analysis.ts [--count4k N] [--count1m N] [--no-strace] [--perf]
 *       [--patterns KEY,...] [--ab-env NAME=VALUE] [--no-login] [--rounds N]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { findInPath, makeRunDir, requireTarget, run, sleep, startTarget, type Target, type TargetKind } from '../interop/harness';
import { LOGIN_KEYS, loginKeys, tgtSameTerms } from './run';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TIMEOUT_MS = 180_000;
const args = process.argv.slice(2);
const opt = (name: string, d: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const COUNT_4K = opt('--count4k', 20_000);
const COUNT_1M = opt('--count1m', 1024);
const STRACE = !args.includes('--no-strace') && !!findInPath('strace');
/** perf record of the target during each pattern (xcopyd started with --perf-basic-prof for JIT names). */
const PERF = args.includes('--perf') && !!findInPath('perf');
const TICK_US = 1e6 / 100; // USER_HZ

interface Pattern {
  key: string;
  size: number;
  depth: number;
  step?: number;
  count: number;
  read?: boolean;
}
const STRIDE_4K = 104_729 * 4096;
const ALL_PATTERNS: Pattern[] = [
  { key: '4k-seq-write-qd16', size: 4 * KiB, depth: 16, count: COUNT_4K },
  { key: '1m-seq-write-qd8', size: MiB, depth: 8, count: COUNT_1M },
  { key: '4k-rand-write-qd16', size: 4 * KiB, depth: 16, step: STRIDE_4K, count: COUNT_4K },
  { key: '4k-seq-write-qd1', size: 4 * KiB, depth: 1, count: Math.round(COUNT_4K / 4) },
  { key: '4k-rand-write-qd1', size: 4 * KiB, depth: 1, step: STRIDE_4K, count: Math.round(COUNT_4K / 4) },
  { key: '4k-rand-read-qd1', size: 4 * KiB, depth: 1, step: STRIDE_4K, count: Math.round(COUNT_4K / 4), read: true },
];
const patternArg = args.includes('--patterns') ? args[args.indexOf('--patterns') + 1].split(',') : undefined;
for (const k of patternArg ?? []) if (!ALL_PATTERNS.some((p) => p.key === k)) throw new Error(`--patterns: ${k}? (${ALL_PATTERNS.map((p) => p.key).join(', ')})`);
const PATTERNS = patternArg ? ALL_PATTERNS.filter((p) => patternArg.includes(p.key)) : ALL_PATTERNS.slice(0, 3);
/** A second xcopyd with this environment variable set, measured beside the first. */
const AB_ENV = args.includes('--ab-env') ? args[args.indexOf('--ab-env') + 1] : undefined;
const LOGIN = !args.includes('--no-login');
const ROUNDS = Math.max(1, Math.min(10, opt('--rounds', 1)));

const load1 = () => loadavg()[0].toFixed(1);

function benchArgs(p: Pattern, url: string, count = p.count): string[] {
  const a = ['bench', '-f', 'raw', '-t', 'none', ...(p.read ? [] : ['-w', '--pattern=165']), '-c', String(count), '-d', String(p.depth), '-s', String(p.size)];
  if (p.step) a.push('-S', String(p.step));
  a.push(url);
  return a;
}

/** Ticks (utime + stime) of each thread of `pid`, by `name/tid` (Node names most of its threads "node"). */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  const dir = `/proc/${pid}/task`;
  for (const tid of fs.readdirSync(dir)) {
    let stat: string;
    try {
      stat = fs.readFileSync(`${dir}/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread went
    }
    const close = stat.lastIndexOf(')');
    const name = `${stat.slice(stat.indexOf('(') + 1, close)}/${tid === String(pid) ? 'main' : tid}`;
    const f = stat.slice(close + 2).split(' ');
    // fields after the comm: state(3) ... utime(14) stime(15) -> index 11, 12 here
    out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
  }
  return out;
}

/** Voluntary context switches (wake-ups) by thread (`name/tid`), and involuntary ones summed, of `pid`. */
function threadSwitches(pid: number): { voluntary: Map<string, number>; involuntary: number } {
  const voluntary = new Map<string, number>();
  let involuntary = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let st: string;
    try {
      st = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    } catch {
      continue; // the thread went
    }
    const name = `${/^Name:\s+(.*)$/m.exec(st)?.[1] ?? '?'}/${tid === String(pid) ? 'main' : tid}`;
    voluntary.set(name, Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0));
    involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
  }
  return { voluntary, involuntary };
}

function diff(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of b) d.set(k, v - (a.get(k) ?? 0));
  return d;
}

async function cpuPerCommand(t: Target, p: Pattern, logFile: string) {
  // no writeback of an earlier run's dirty pages (2 GiB after the fills) inside this one
  await run('sync', [], { timeoutMs: 120_000 });
  const before = threadTicks(t.pid);
  const sw0 = threadSwitches(t.pid);
  const r = await run('/usr/bin/time', ['-f', 'CLIENTCPU %U %S', 'qemu-img', ...benchArgs(p, t.url(t.dataLuns[0]))], { timeoutMs: TIMEOUT_MS, logFile });
  const after = threadTicks(t.pid);
  const sw1 = threadSwitches(t.pid);
  const secs = /Run completed in ([\d.]+) seconds/.exec(r.stdout)?.[1];
  const c = /CLIENTCPU ([\d.]+) ([\d.]+)/.exec(r.stderr);
  const perThread = [...diff(before, after)].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  const total = perThread.reduce((s, [, v]) => s + v, 0);
  return {
    seconds: secs ? Number(secs) : NaN,
    targetUsPerCmd: (total * TICK_US) / p.count,
    perThread: perThread.map(([k, v]) => `${k} ${((v * TICK_US) / p.count).toFixed(1)}`).join(', '),
    clientUsPerCmd: c ? ((Number(c[1]) + Number(c[2])) * 1e6) / p.count : NaN,
    wakeupsPerCmd: [...diff(sw0.voluntary, sw1.voluntary).values()].reduce((a, b) => a + b, 0) / p.count,
    wakeups: [...diff(sw0.voluntary, sw1.voluntary)].filter(([, v]) => v / p.count >= 0.05).sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${(v / p.count).toFixed(2)}`).join(', '),
    preemptionsPerCmd: (sw1.involuntary - sw0.involuntary) / p.count,
  };
}

async function syscallsPerCommand(t: Target, p: Pattern, dir: string, logFile: string) {
  const out = path.join(dir, `strace-c-${t.kind}-${t.port}-${p.key}.txt`);
  const count = Math.max(64, Math.round(p.count / 4));
  const child = spawn('strace', ['-c', '-f', '-p', String(t.pid), '-o', out], { stdio: 'ignore' });
  try {
    await sleep(1500); // attached to every thread
    await run('qemu-img', benchArgs(p, t.url(t.dataLuns[0]), count), { timeoutMs: TIMEOUT_MS, logFile });
  } finally {
    child.kill('SIGINT');
    await new Promise((r) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        r(undefined);
      }, 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        r(undefined);
      });
    });
  }
  const per: Array<[string, number]> = [];
  for (const line of fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n') : []) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') per.push([m[2], Number(m[1]) / count]);
  }
  per.sort((a, b) => b[1] - a[1]);
  const total = per.reduce((s, [, v]) => s + v, 0);
  return { count, total, top: per.filter(([, v]) => v >= 0.05).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ') };
}

async function perfTop(t: Target, p: Pattern, dir: string, logFile: string): Promise<string> {
  const data = path.join(dir, `perf-${t.kind}-${t.port}-${p.key}.data`);
  const child = spawn('perf', ['record', '-F', '499', '-g', '-p', String(t.pid), '-o', data], { stdio: 'ignore' });
  try {
    await sleep(1000);
    await run('qemu-img', benchArgs(p, t.url(t.dataLuns[0]), Math.round(p.count / 2)), { timeoutMs: TIMEOUT_MS, logFile });
  } finally {
    child.kill('SIGINT');
    await new Promise((r) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        r(undefined);
      }, 20_000);
      child.once('exit', () => {
        clearTimeout(timer);
        r(undefined);
      });
    });
  }
  const rep = await run('perf', ['report', '-i', data, '--no-children', '--sort', 'dso,symbol', '--stdio', '-g', 'none', '--percent-limit', '1.5'],
    { timeoutMs: 120_000 });
  fs.writeFileSync(`${data}.txt`, rep.stdout);
  return rep.stdout.split('\n').filter((l) => /^\s+[\d.]+%/.test(l)).slice(0, 25).map((l) => `    ${l.trim()}`).join('\n');
}

async function main(): Promise<number> {
  for (const k of ['xcopyd', 'tgt'] as TargetKind[]) if (!requireTarget(k)) return 1;
  const dir = makeRunDir('write-analysis');
  const logFile = path.join(dir, 'qemu-img.log');
  const targets: Target[] = [];
  const label = new Map<Target, string>();
  try {
    if (PERF) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --perf-basic-prof`.trim();
    targets.push(await startTarget({ name: 'write-analysis', lunSize: GiB }, 'xcopyd'));
    label.set(targets[0], 'xcopyd');
    if (AB_ENV) {
      const [name, value] = AB_ENV.split('=');
      const saved = process.env[name];
      process.env[name] = value;
      try {
        const t = await startTarget({ name: 'write-analysis', lunSize: GiB }, 'xcopyd');
        targets.push(t);
        label.set(t, `xcopyd ${AB_ENV}`);
      } finally {
        if (saved === undefined) delete process.env[name];
        else process.env[name] = saved;
      }
    }
    if (PERF) process.env.NODE_OPTIONS = process.env.NODE_OPTIONS?.replace('--perf-basic-prof', '').trim();
    const tg = await startTarget({ name: 'write-analysis', lunSize: GiB }, 'tgt');
    targets.push(tg);
    label.set(tg, 'tgtd');
    const refused = await tgtSameTerms(tg, logFile);
    if (refused.length) console.log(`tgtadm refused: ${refused.join('; ')}`);
    console.log(`# write-analysis (${dir}), load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    for (const t of targets) {
      // allocate the whole LUN first, as the bench's warm-up does
      await run('qemu-img', benchArgs({ key: 'fill', size: MiB, depth: 16, count: GiB / MiB }, t.url(t.dataLuns[0])), { timeoutMs: TIMEOUT_MS, logFile });
      // and warm the 4 KiB path (JIT) so the first pattern measured does not pay for it
      await run('qemu-img', benchArgs(ALL_PATTERNS[2], t.url(t.dataLuns[0]), 10_000), { timeoutMs: TIMEOUT_MS, logFile });
      const lk = LOGIN ? await loginKeys(t, dir) : null;
      console.log(`\n## ${label.get(t)} (pid ${t.pid})`);
      if (lk) {
        console.log('login keys, offer -> answer:');
        for (const k of LOGIN_KEYS) console.log(`  ${k}: ${lk.offer[k] ?? '-'} -> ${lk.answer[k] ?? '(not answered: default)'}`);
      }
    }
    for (const p of PATTERNS) {
      console.log(`\n## ${p.key}, ${p.count} commands`);
      // --rounds N: the CPU/wake-up runs N times, the targets' order rotated each round.
      const order = Array.from({ length: ROUNDS * targets.length }, (_, i) => targets[(i + Math.floor(i / targets.length)) % targets.length]);
      for (const t of order) {
        const c = await cpuPerCommand(t, p, logFile);
        console.log(`  ${label.get(t)}: ${c.seconds} s (load ${load1()}); target CPU ${c.targetUsPerCmd.toFixed(1)} us/cmd [${c.perThread}]; ` +
          `wake-ups ${c.wakeupsPerCmd.toFixed(2)}/cmd [${c.wakeups}], preemptions ${c.preemptionsPerCmd.toFixed(2)}/cmd; client CPU ${c.clientUsPerCmd.toFixed(1)} us/cmd`);
      }
      if (STRACE) {
        for (const t of targets) {
          const s = await syscallsPerCommand(t, p, dir, logFile);
          console.log(`  ${label.get(t)}: syscalls per command (strace -c, ${s.count} commands): ${s.total.toFixed(2)} [${s.top}]`);
        }
      }
      if (PERF) {
        for (const t of targets) console.log(`  ${label.get(t)}: perf top symbols (self):\n${await perfTop(t, p, dir, logFile)}`);
      }
    }
  } finally {
    for (const t of targets) await t.stop();
  }
  console.log(`\nraw output: ${dir}`);
  return 0;
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
