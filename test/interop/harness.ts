/**
 * Interop harness: starts a target (xcopyd, or Debian tgtd as a reference) on a free
 * 127.0.0.1 port with a fresh data directory, waits for it, stops it by PID, and keeps its
 * log for failure diagnostics. Also: tool discovery that skips loudly (or fails under
 * CI=true) and a bounded child-process runner.
 *
 * Every wait here is bounded in time; every process is stopped by the PID we started.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const DEFAULT_IQN = 'iqn.2026-11.org.xcopyd:default';
export const IS_CI = process.env.CI === 'true' || process.env.CI === '1';

/** Where logs of daemons and tool runs go; kept after the run for diagnostics. */
export const OUT_ROOT = process.env.XCOPYD_INTEROP_OUT ?? path.join(os.tmpdir(), 'xcopyd-interop');

/** The shared Linux-initiator VM tool; in CI it sits next to the repo at ../shared. */
export const LINUX_INITIATOR_DIR =
  process.env.LINUX_INITIATOR_DIR ?? path.resolve(REPO_ROOT, '..', 'shared', 'tools', 'linux-initiator');

export type TargetKind = 'xcopyd' | 'tgt';
/** INTEROP_TARGET=tgt runs the interop suites against tgtd, to check the harness itself. */
export const TARGET_KIND: TargetKind = process.env.INTEROP_TARGET === 'tgt' ? 'tgt' : 'xcopyd';

const GiB = 1024 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// tools

/**
 * rx + tx bytes of the loopback interface (/proc/net/dev): machine-wide, so the offload checks
 * read it around windows in which only their own copy runs.
 */
export function loopbackBytes(): bigint {
  for (const line of fs.readFileSync('/proc/net/dev', 'utf8').split('\n')) {
    const m = /^\s*lo:\s*(.*)$/.exec(line);
    if (m) {
      const f = m[1].trim().split(/\s+/);
      return BigInt(f[0]) + BigInt(f[8]);
    }
  }
  throw new Error('no lo in /proc/net/dev');
}

/** Absolute path of an executable on PATH (plus the sbin directories), or undefined. */
export function findInPath(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/local/sbin']);
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function banner(lines: string[]): string {
  const bar = '!'.repeat(78);
  return ['', bar, ...lines.map((l) => `!!  ${l}`), bar, ''].join('\n');
}

/**
 * Report a missing prerequisite: loudly skip locally, fail under CI=true.
 * Returns false (so the caller can `describe.skip`) or throws in CI.
 */
export function missingPrerequisite(what: string, fix: string): false {
  const msg = `interop prerequisite missing: ${what}`;
  if (IS_CI) throw new Error(`${msg} (CI=true, so this is a failure, not a skip). Fix: ${fix}`);
  console.warn(banner([`SKIPPING: ${msg}`, `fix: ${fix}`, 'under CI=true this is a FAILURE']));
  return false;
}

/** True if `name` is on PATH; otherwise a loud skip (false), or a thrown error under CI=true. */
export function requireTool(name: string, debianPackage: string): boolean {
  if (findInPath(name)) return true;
  return missingPrerequisite(`'${name}' not found on PATH`, `apt-get install -y ${debianPackage}`);
}

/** All tools at once; reports every missing one before deciding. */
export function requireTools(tools: Array<[name: string, debianPackage: string]>): boolean {
  const missing = tools.filter(([n]) => !findInPath(n));
  if (missing.length === 0) return true;
  return missingPrerequisite(
    `${missing.map(([n]) => `'${n}'`).join(', ')} not found on PATH`,
    `apt-get install -y ${[...new Set(missing.map(([, p]) => p))].join(' ')}`,
  );
}

/** The daemon must exist before an interop test can run (it is being written alongside). */
export function requireTarget(kind: TargetKind = TARGET_KIND): boolean {
  if (kind === 'tgt') {
    return requireTools([
      ['tgtd', 'tgt'],
      ['tgtadm', 'tgt'],
    ]) && requireFile(path.join(LINUX_INITIATOR_DIR, 'tgt', 'start-tgt.sh'), 'the shared linux-initiator tool');
  }
  return requireFile(path.join(REPO_ROOT, 'src', 'main.ts'), 'the daemon entry point (src/main.ts)');
}

export function requireFile(file: string, what: string): boolean {
  if (fs.existsSync(file)) return true;
  return missingPrerequisite(`${what}: ${file} does not exist`, `provide ${file}`);
}

/** `describe` or `describe.skip`, decided at collection time. */
/** Path of the Linux-initiator VM runner (../shared/tools/linux-initiator/run.sh). */
export const LINUX_INITIATOR_RUN_SH = path.join(LINUX_INITIATOR_DIR, 'run.sh');

/**
 * Everything a Linux-initiator VM test needs: the tool, root (run.sh uses
 * `unshare -n` for the VM's network namespace), QEMU and the relay tools, and
 * a target to test. Missing pieces skip loudly, or fail under CI=true.
 */
export function requireLinuxInitiatorVm(): boolean {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return (
    requireFile(LINUX_INITIATOR_RUN_SH, 'the linux-initiator tool (../shared/tools/linux-initiator)') &&
    (isRoot || missingPrerequisite('root (run.sh needs unshare -n for the VM network namespace)', 'run as root')) &&
    requireTools([
      ['qemu-system-x86_64', 'qemu-system-x86'],
      ['socat', 'socat'],
      ['cpio', 'cpio'],
      ['unshare', 'util-linux'],
      ['ip', 'iproute2'],
    ]) &&
    requireTarget()
  );
}

export function describeIf(ok: boolean): jest.Describe {
  return ok ? describe : describe.skip;
}

// ---------------------------------------------------------------------------------------
// child processes

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

/**
 * Run a command to completion with a hard time limit (SIGTERM, then SIGKILL 5 s later).
 * Output is kept in memory (capped) and optionally tee'd to a log file.
 */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv; logFile?: string; input?: string } = {
    timeoutMs: 60_000,
  },
): Promise<RunResult> {
  const started = Date.now();
  const cap = 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const log = opts.logFile ? fs.createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    log?.write(`$ ${cmd} ${args.map(shellQuote).join(' ')}\n`);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout!.on('data', (b: Buffer) => {
      if (outLen < cap) out.push(b), (outLen += b.length);
      log?.write(b);
    });
    child.stderr!.on('data', (b: Buffer) => {
      if (errLen < cap) err.push(b), (errLen += b.length);
      log?.write(b);
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    }, opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      log?.end();
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      const res: RunResult = {
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        ms: Date.now() - started,
      };
      if (log) {
        log.end(`\n[exit code=${code} signal=${signal} timedOut=${timedOut} ms=${res.ms}]\n`);
      }
      resolve(res);
    });
  });
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------
// ports and directories

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A free port in [lo, hi] on 127.0.0.1 (tgtd's -C control index must stay below 32768). */
export async function freePortInRange(lo: number, hi: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = lo + Math.floor(Math.random() * (hi - lo + 1));
    const ok = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.unref();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error(`no free port in ${lo}..${hi}`);
}

function tryConnect(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Poll a TCP connect to 127.0.0.1:port until it succeeds, `alive()` turns false, or time runs out. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (!alive()) return false;
    if (await tryConnect(port, 1_000)) return true;
    await sleep(100);
  }
  return false;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `p`, or undefined after `ms`; the timer is cleared either way (no handle left behind). */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A fresh directory for one test run under OUT_ROOT (kept for diagnostics). */
export function makeRunDir(name: string): string {
  fs.mkdirSync(OUT_ROOT, { recursive: true });
  return fs.mkdtempSync(path.join(OUT_ROOT, `${name}-${new Date().toISOString().replace(/[:.]/g, '')}-`));
}

export function tail(file: string, lines = 60): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return `(no log at ${file})`;
  }
}

// ---------------------------------------------------------------------------------------
// targets

export interface ChapSecret {
  user: string;
  secret: string;
}

export interface TargetOptions {
  /** Name used for the run directory. */
  name: string;
  /** CHAP (one-way) required for logins to the target. */
  chap?: ChapSecret;
  /** Size of each LUN (bytes). xcopyd's default is 1 GiB; used by tgt and the xcopyd config. */
  lunSize?: number;
  /** Max time to wait for the portal to accept connections. */
  startTimeoutMs?: number;
  /** xcopyd only: reuse this data directory (e.g. to check that data survives a restart). */
  dataDir?: string;
  /** xcopyd only: physical block size of the LUNs (4096 makes 512e LUNs, LBPPB 8). */
  physicalBlockSize?: number;
  /**
   * xcopyd only: a whole config file (targets, ACLs, CHAP...) instead of the generated one;
   * `listen` and `dataDir` still come from the command line (a free port, the run's data
   * directory). Backing paths in it are relative to the data directory.
   */
  configYaml?: string;
  /** The IQN that `Target.iqn` and `url()` name (default DEFAULT_IQN); for `configYaml`. */
  iqn?: string;
}

export interface StopResult {
  /** Exit code (null if it died from a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True if SIGTERM was not enough and we had to SIGKILL. */
  killed: boolean;
  ms: number;
}

export interface Target {
  kind: TargetKind;
  port: number;
  iqn: string;
  /** LUN numbers of the two data LUNs (xcopyd: 0 and 1; tgt: 1 and 2, LUN 0 is its controller). */
  dataLuns: [number, number];
  lunSize: number;
  pid: number;
  runDir: string;
  logFile: string;
  /** xcopyd: its --data-dir. */
  dataDir?: string;
  chap?: ChapSecret;
  /** iscsi://[user%secret@]127.0.0.1:PORT/IQN/LUN for libiscsi-based clients. */
  url(lun: number, withChap?: boolean): string;
  logTail(lines?: number): string;
  alive(): boolean;
  stop(): Promise<StopResult>;
}

const STOP_TERM_WAIT_MS = 15_000;
const STOP_KILL_WAIT_MS = 5_000;

export async function startTarget(opts: TargetOptions, kind: TargetKind = TARGET_KIND): Promise<Target> {
  return kind === 'tgt' ? startTgt(opts) : startXcopyd(opts);
}

function makeUrl(port: number, iqn: string, chap: ChapSecret | undefined) {
  return (lun: number, withChap = true) => {
    const cred = chap && withChap ? `${encodeURIComponent(chap.user)}%${encodeURIComponent(chap.secret)}@` : '';
    return `iscsi://${cred}127.0.0.1:${port}/${iqn}/${lun}`;
  };
}

/** The YAML config contract assumed for `--config` (see README / report). */
export function xcopydConfigYaml(iqn: string, lunSize: number, chap?: ChapSecret, physicalBlockSize?: number): string {
  const size = lunSize % GiB === 0 ? `${lunSize / GiB}GiB` : `${lunSize}`;
  const pbs = physicalBlockSize ? `, physicalBlockSize: ${physicalBlockSize}` : '';
  return [
    'targets:',
    `  - iqn: ${iqn}`,
    ...(chap ? [`    chap: { user: ${chap.user}, secret: ${chap.secret} }`] : []),
    '    luns:',
    `      - { lun: 0, path: lun0.img, size: ${size}${pbs} }`,
    `      - { lun: 1, path: lun1.img, size: ${size}${pbs} }`,
    '',
  ].join('\n');
}

async function startXcopyd(opts: TargetOptions): Promise<Target> {
  const lunSize = opts.lunSize ?? GiB;
  const startTimeoutMs = opts.startTimeoutMs ?? Number(process.env.XCOPYD_START_TIMEOUT_MS ?? 30_000);
  let lastError = '';
  // A port from freePort() can be taken by someone else before the daemon binds it: retry.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const runDir = makeRunDir(`${opts.name}-xcopyd`);
    const dataDir = opts.dataDir ?? path.join(runDir, 'data');
    fs.mkdirSync(dataDir, { recursive: true });
    const logFile = path.join(runDir, 'xcopyd.log');
    const port = await freePort();
    const args = ['-r', 'ts-node/register/transpile-only', path.join('src', 'main.ts')];
    args.push('--listen', `127.0.0.1:${port}`, '--data-dir', dataDir);
    if (opts.configYaml || opts.chap || lunSize !== GiB || opts.physicalBlockSize) {
      const cfg = path.join(runDir, 'xcopyd.yaml');
      fs.writeFileSync(cfg, opts.configYaml ?? xcopydConfigYaml(DEFAULT_IQN, lunSize, opts.chap, opts.physicalBlockSize));
      args.push('--config', cfg);
    }
    const fd = fs.openSync(logFile, 'a');
    fs.writeSync(fd, `# ${process.execPath} ${args.map(shellQuote).join(' ')}\n`);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, {
        cwd: REPO_ROOT,
        // A session of its own, as tgt/start-tgt.sh gives tgtd (setsid): with the kernel's
        // autogroup scheduling each session shares the CPUs as one group, so the benchmark
        // compares the two targets on the same footing as each other and as their client.
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, NODE_ENV: process.env.NODE_ENV ?? 'test' },
      });
    } finally {
      fs.closeSync(fd);
    }
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        resolve(exited);
      });
      child.on('error', (e) => {
        fs.appendFileSync(logFile, `\n# spawn error: ${e.message}\n`);
        exited = { code: -1, signal: null };
        resolve(exited);
      });
    });
    const ready = await waitForPort(port, startTimeoutMs, () => exited === undefined);
    const pid = child.pid ?? -1;
    const iqn = opts.iqn ?? DEFAULT_IQN;
    const stop = async (): Promise<StopResult> => {
      const t0 = Date.now();
      if (exited) return { ...exited, killed: false, ms: 0 };
      child.kill('SIGTERM');
      const term = await within(exitPromise, STOP_TERM_WAIT_MS);
      if (term) return { ...term, killed: false, ms: Date.now() - t0 };
      fs.appendFileSync(logFile, `\n# harness: no exit ${STOP_TERM_WAIT_MS} ms after SIGTERM, sending SIGKILL\n`);
      child.kill('SIGKILL');
      const k = await within(exitPromise, STOP_KILL_WAIT_MS);
      return { ...(k ?? { code: null, signal: null }), killed: true, ms: Date.now() - t0 };
    };
    suiteRuns.push({ runDir, dataDir, stop });
    if (ready) {
      return {
        kind: 'xcopyd',
        port,
        iqn,
        dataLuns: [0, 1],
        lunSize,
        pid,
        runDir,
        logFile,
        dataDir,
        chap: opts.chap,
        url: makeUrl(port, iqn, opts.chap),
        logTail: (n) => tail(logFile, n),
        alive: () => exited === undefined,
        stop,
      };
    }
    await stop();
    const log = tail(logFile, 40);
    lastError = exited
      ? `xcopyd exited before listening (code=${exited.code} signal=${exited.signal}); log ${logFile}:\n${log}`
      : `xcopyd did not accept connections on 127.0.0.1:${port} within ${startTimeoutMs} ms; log ${logFile}:\n${log}`;
    if (!/EADDRINUSE/.test(log)) break;
  }
  throw new Error(lastError);
}

/** Debian tgtd through the shared tool's start-tgt.sh/stop-tgt.sh (which stop it by its saved PID). */
async function startTgt(opts: TargetOptions): Promise<Target> {
  const lunSize = opts.lunSize ?? GiB;
  const iqn = 'iqn.2025-01.local.harness:tgt';
  const runDir = makeRunDir(`${opts.name}-tgt`);
  const tgtDir = path.join(runDir, 'tgt');
  const logFile = path.join(runDir, 'tgt-scripts.log');
  const port = await freePortInRange(20_000, 32_000);
  const env = { ...process.env, TGT_DIR: tgtDir, TGT_FILL_MIB: '0' };
  const tools = path.join(LINUX_INITIATOR_DIR, 'tgt');
  const start = await run(path.join(tools, 'start-tgt.sh'), [String(port), iqn, String(lunSize)], {
    timeoutMs: 30_000,
    env,
    logFile,
  });
  let stopping: Promise<StopResult> | undefined;
  const stop = (): Promise<StopResult> =>
    (stopping ??= (async () => {
      const t0 = Date.now();
      const r = await run(path.join(tools, 'stop-tgt.sh'), [String(port), '-r'], { timeoutMs: 20_000, env, logFile });
      return { code: r.code, signal: r.signal, killed: false, ms: Date.now() - t0 };
    })());
  suiteRuns.push({ runDir, stop });
  if (start.code !== 0) {
    await stop();
    throw new Error(`start-tgt.sh failed (${start.code}): ${start.stdout}\n${start.stderr}`);
  }
  const pid = Number(fs.readFileSync(path.join(tgtDir, 'tgtd.pid'), 'utf8').trim());
  const a = ['-C', String(port), '--lld', 'iscsi'];
  // tgt offers no digests by default; offer both so a digest-requiring initiator can log in.
  const setup = [
    [...a, '--op', 'update', '--mode', 'target', '--tid', '1', '--name', 'HeaderDigest', '--value', 'CRC32C,None'],
    [...a, '--op', 'update', '--mode', 'target', '--tid', '1', '--name', 'DataDigest', '--value', 'CRC32C,None'],
  ];
  if (opts.chap) {
    setup.push(
      [...a, '--op', 'new', '--mode', 'account', '--user', opts.chap.user, '--password', opts.chap.secret],
      [...a, '--op', 'bind', '--mode', 'account', '--tid', '1', '--user', opts.chap.user],
    );
  }
  for (const args of setup) {
    const r = await run('tgtadm', args, { timeoutMs: 10_000, logFile });
    if (r.code !== 0) {
      await stop();
      throw new Error(`tgtadm ${args.join(' ')} failed: ${r.stderr}`);
    }
  }
  if (!(await waitForPort(port, opts.startTimeoutMs ?? 20_000))) {
    await stop();
    throw new Error(`tgtd did not accept connections on ${port}`);
  }
  const tgtLog = path.join(tgtDir, 'tgtd.log');
  return {
    kind: 'tgt',
    port,
    iqn,
    dataLuns: [1, 2],
    lunSize,
    pid,
    runDir,
    logFile: tgtLog,
    chap: opts.chap,
    url: makeUrl(port, iqn, opts.chap),
    logTail: (n) => tail(tgtLog, n),
    alive: () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    },
    stop,
  };
}

// ---------------------------------------------------------------------------------------
// disk housekeeping: a suite's bulky data goes when the suite passed

interface SuiteRun {
  runDir: string;
  /** xcopyd's data directory (LUN files, identity.json): removed whole. */
  dataDir?: string;
  stop: () => Promise<StopResult>;
}

/** Targets this test file started (jest gives each test file its own copy of this module). */
const suiteRuns: SuiteRun[] = [];
const suiteData: string[] = [];

/** Files and directories this suite made that can go when it passed (besides its targets' data). */
export function removeWhenSuitePasses(p: string): void {
  suiteData.push(p);
}

type CircusBlock = { type?: string; errors?: unknown[]; children?: CircusBlock[] };
interface CircusState {
  rootDescribeBlock?: CircusBlock;
  unhandledErrors?: unknown[];
  hasStarted?: boolean;
}

/** jest-circus's run state of this test file (kept on the sandbox's global), if there is one. */
function circusState(): CircusState | undefined {
  const sym = Object.getOwnPropertySymbols(globalThis).find((s) => s.description === 'JEST_STATE_SYMBOL');
  return sym ? (globalThis as unknown as Record<symbol, CircusState | undefined>)[sym] : undefined;
}

/**
 * Did a test, a hook or the file itself fail? Read from jest-circus's run state (the tree of
 * describe blocks and their tests' errors); undefined when that state cannot be found, which
 * the caller treats as "failed" (keep everything).
 */
export function suiteFailed(): boolean | undefined {
  const state = circusState();
  if (!state?.rootDescribeBlock?.children) return undefined;
  const failed = (b: CircusBlock): boolean =>
    b.type === 'test' ? (b.errors?.length ?? 0) > 0 : (b.children ?? []).some(failed);
  return (state.unhandledErrors?.length ?? 0) > 0 || failed(state.rootDescribeBlock);
}

/** Regular files of a run directory that are data, not logs: >= 1 MiB and not *.log/*.txt. */
function bulkyFiles(dir: string, out: string[] = []): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) bulkyFiles(p, out);
    else if (e.isFile() && !/\.(log|txt)$/.test(e.name) && fs.statSync(p).size >= 1024 * 1024) out.push(p);
  }
  return out;
}

function diskBytes(p: string): number {
  try {
    const st = fs.statSync(p);
    if (!st.isDirectory()) return st.blocks * 512;
    return fs.readdirSync(p).reduce((n, e) => n + diskBytes(path.join(p, e)), 0);
  } catch {
    return 0;
  }
}

/**
 * After the last test of a file: when every test passed, stop what is still running (by the
 * PIDs the harness started) and delete the LUN files and other bulky data (data directories,
 * random input files, the VM payload copies), keeping the logs. When anything failed, keep
 * everything for diagnosis. XCOPYD_INTEROP_KEEP=1 keeps everything anyway.
 */
export async function cleanUpSuiteData(): Promise<{ removed: string[]; bytes: number } | undefined> {
  if (suiteRuns.length === 0 && suiteData.length === 0) return { removed: [], bytes: 0 };
  const failed = suiteFailed();
  if (failed !== false || process.env.XCOPYD_INTEROP_KEEP === '1') {
    const dirs = suiteRuns.map((r) => r.runDir).join(', ');
    console.log(`[harness] ${failed === false ? 'XCOPYD_INTEROP_KEEP=1' : 'suite failed'}: keeping its data in ${dirs || suiteData.join(', ')}`);
    return undefined;
  }
  for (const r of suiteRuns) await r.stop();
  const doomed = [
    ...suiteRuns.flatMap((r) => (r.dataDir ? [r.dataDir] : [])),
    ...suiteData,
    ...suiteRuns.flatMap((r) => bulkyFiles(r.runDir)),
  ];
  let bytes = 0;
  const removed: string[] = [];
  for (const p of [...new Set(doomed)]) {
    if (!fs.existsSync(p)) continue;
    bytes += diskBytes(p);
    fs.rmSync(p, { recursive: true, force: true });
    removed.push(p);
  }
  suiteRuns.length = 0;
  suiteData.length = 0;
  return { removed, bytes };
}

// Registered when a test file imports the harness, so on the root describe block: it runs
// after every describe's own afterAll (which stop their targets). Outside jest (bench, soak
// scripts) there is no afterAll and nothing is removed; a file that imports the harness only
// once its tests run (harness.test.ts) registers nothing either (jest refuses hooks then).
if (typeof afterAll === 'function' && circusState()?.hasStarted === false) {
  afterAll(async () => {
    const r = await cleanUpSuiteData();
    if (r && r.removed.length > 0) {
      console.log(`[harness] suite passed: removed ${r.removed.length} data paths, ${(r.bytes / 1048576).toFixed(1)} MiB on disk (logs kept)`);
    }
  }, 60_000);
}

/** Run `fn` with a started target; the target is always stopped (by PID) afterwards. */
export async function withTarget<T>(opts: TargetOptions, fn: (t: Target) => Promise<T>, kind?: TargetKind): Promise<T> {
  const t = await startTarget(opts, kind);
  try {
    return await fn(t);
  } finally {
    await t.stop();
  }
}

// ---------------------------------------------------------------------------------------
// the Linux-initiator VM

export interface VmRunOptions {
  /** Names the run directory (`<runDir>/vm-<name>`) and the run.sh log. */
  name: string;
  /** Command list (a guest/*.sh file). */
  script: string;
  /** Extra run.sh options (-i IQN, -t IQN, -u USER:PASS, -L, -e LINE, ...). */
  args?: string[];
  /** Shell variables for the command list (run.sh -E). */
  env?: Record<string, string>;
  /** Files or directories copied into the guest's /harness/files (run.sh -f). */
  files?: string[];
  /** Hard limit for the VM (run.sh -T); the host waits 60 s more. Default 300. */
  timeoutS?: number;
}

export interface VmRun extends RunResult {
  /** "@@NAME value" lines of the guest, every value of each NAME in order. */
  markers: Map<string, string[]>;
  /** The last value of a marker. */
  marker(name: string): string | undefined;
  /** The tail of the guest output, run.sh's stderr and the target's log, for failure messages. */
  diag(lines?: number): string;
}

/**
 * One run of the Linux-initiator VM against `t` (run.sh -p PORT), bounded in time. Does not
 * throw on a failing command list: callers check `code` and the @@DONE/@@FAIL markers.
 */
export async function runLinuxInitiatorVm(t: Target, o: VmRunOptions): Promise<VmRun> {
  const timeoutS = o.timeoutS ?? 300;
  const args = ['-p', String(t.port), '-T', String(timeoutS), '-o', path.join(t.runDir, `vm-${o.name}`)];
  for (const f of o.files ?? []) args.push('-f', f);
  for (const [k, v] of Object.entries(o.env ?? {})) args.push('-E', `${k}=${v}`);
  args.push(...(o.args ?? []), o.script);
  const r = await run(LINUX_INITIATOR_RUN_SH, args, {
    timeoutMs: (timeoutS + 60) * 1000,
    logFile: path.join(t.runDir, `run-sh-${o.name}.log`),
  });
  const markers = new Map<string, string[]>();
  for (const m of r.stdout.matchAll(/^@@([A-Z_0-9]+)(?: (.*))?$/gm)) {
    const list = markers.get(m[1]) ?? [];
    list.push((m[2] ?? '').trim());
    markers.set(m[1], list);
  }
  return {
    ...r,
    markers,
    marker: (name) => markers.get(name)?.at(-1),
    diag: (lines = 100) =>
      `run.sh exit ${r.code}${r.timedOut ? ' (timed out)' : ''}; ${markers.get('FAIL')?.join('; ') ?? (markers.has('DONE') ? '@@DONE' : 'no @@DONE')}\n` +
      `${r.stdout.split('\n').slice(-lines).join('\n')}\n--- run.sh stderr ---\n${r.stderr.slice(-3000)}\n` +
      `--- target log tail (${t.logFile}) ---\n${t.logTail(40)}`,
  };
}

/**
 * `fn()` again every 100 ms until `ok` accepts its value or `ms` pass; returns the last value
 * (for the caller to assert on). The daemon's log reaches the file a little after the event.
 */
export async function pollUntil<T>(fn: () => T, ok: (v: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = fn();
  for (let i = 0; i < 10_000 && !ok(v) && Date.now() < deadline; i++) {
    await sleep(100);
    v = fn();
  }
  return v;
}

/** The daemon's JSON log lines (pino), parsed; lines that are not JSON are skipped. */
export function daemonLog(t: Target): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of fs.readFileSync(t.logFile, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* a partial last line */
    }
  }
  return out;
}

export interface LoginOutcome {
  conn: number;
  initiator: string;
  sessionType: string;
  /** The target of an admitted Normal session. */
  target?: string;
  /** 'admitted' (full feature phase), the refusal's status as 'CCDD' hex (e.g. '0201'), or
   *  'abandoned' (the initiator went away, e.g. when the target failed mutual CHAP). */
  outcome: string;
  /** ms from the login's first request to its refusal (the failed-login delay). */
  ms?: number;
}

/** Login outcomes in the daemon's log, one per connection that got as far as naming its initiator. */
export function loginOutcomes(t: Target): LoginOutcome[] {
  const byConn = new Map<number, LoginOutcome & { t0: number }>();
  const hex = (n: unknown) => Number(n).toString(16).padStart(2, '0');
  for (const l of daemonLog(t)) {
    const conn = l.conn as number | undefined;
    if (conn === undefined) continue;
    const o = byConn.get(conn);
    if (l.msg === 'login' && typeof l.initiator === 'string') {
      byConn.set(conn, { conn, initiator: l.initiator, sessionType: String(l.sessionType), outcome: 'abandoned', t0: Number(l.time) });
    } else if (o && l.msg === 'login rejected') {
      o.outcome = `${hex(l.statusClass)}${hex(l.statusDetail)}`;
      o.ms = Number(l.time) - o.t0;
    } else if (o && l.msg === 'full feature phase') {
      o.outcome = 'admitted';
      if (typeof l.target === 'string') o.target = l.target;
    }
  }
  return [...byConn.values()].map(({ t0: _t0, ...o }) => o);
}

/** Random bytes file of `size` bytes (written in 1 MiB chunks). */
export function writeRandomFile(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (let off = 0; off < size; off += chunk.length) {
      const n = Math.min(chunk.length, size - off);
      randomFillSync(chunk, 0, n);
      fs.writeSync(fd, chunk, 0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}

export function md5File(file: string): string {
  return createHash('md5').update(fs.readFileSync(file)).digest('hex');
}

/** Used by tests that shell out synchronously for a quick probe. */
export function probe(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}
