/**
 * configs/xcopyd.service (issue 6, "a systemd unit with sandboxing options"):
 *  - systemd accepts it (systemd-analyze verify), and the user it names is
 *    declared in configs/xcopyd.sysusers.conf;
 *  - ExecStart runs dist/src/main.js (what tsc makes of src/main.ts, and what
 *    package.json's bin runs in an install without ts-node) from WorkingDirectory, with --config under
 *    ConfigurationDirectory= and --data-dir the StateDirectory=;
 *  - the sandbox agrees with what the daemon needs: the only writable path
 *    is the data directory, the socket families of the portal, metrics and
 *    control socket, the system calls of the copy data mover (expanded by
 *    systemd-analyze syscall-filter), no W^X ban for V8, no sd_notify type
 *    the daemon would never satisfy, reload by SIGHUP;
 *  - the unit's own command lines, on a build laid out as the unit expects
 *    it (WorkingDirectory/dist/src/main.js), run inside an emulation of its
 *    sandbox (root only: a private mount namespace with / read-only except
 *    the data directory, an unprivileged user with no capabilities and
 *    no_new_privs, the unit's UMask, Environment and WorkingDirectory):
 *    check-config, start (READY=1 on a NOTIFY_SOCKET once the portal accepts),
 *    I/O, an EXTENDED COPY in the kernel, ExecReload adds a LUN (RELOADING=1,
 *    READY=1), status over the socket, KillSignal stops it (STOPPING=1) with status 0.
 * The emulation leaves out seccomp, the device cgroup and address-family
 * restrictions, which need systemd itself.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { DEFAULT_LIMITS } from '../iscsi/types';
import { controlRequest } from '../src/control';
import type { StatusReport } from '../src/status';
import { describeIf, findInPath, freePort, missingPrerequisite } from './interop/harness';
import { cdb, clearUnitAttentions, openSession } from './support/initiator';
import { captureOutput, notifyReceiver } from './support/daemon';
import { b2b, e4, lid1, xcopyCdb } from './scsi/copy/helpers';
import { expectGood, pattern, readBlocks, writeBlocks } from './odx/odx';

const REPO = path.join(__dirname, '..');
const UNIT_FILE = path.join(REPO, 'configs', 'xcopyd.service');
const SYSUSERS_FILE = path.join(REPO, 'configs', 'xcopyd.sysusers.conf');

type Unit = Map<string, Array<[string, string]>>;

/** systemd.syntax(7), as much as a unit file here uses: sections, Key=value, comments, continuation lines. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Array<[string, string]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[([^\]]+)\]$/.exec(line);
    if (s) {
      section = [];
      if (unit.has(s[1])) throw new Error(`section [${s[1]}] twice`);
      unit.set(s[1], section);
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`not a unit file line: ${raw}`);
    section.push([kv[1], kv[2]]);
  }
  return unit;
}

/** Values of a list setting as systemd sees them: an empty assignment resets the list. */
function values(unit: Unit, section: string, key: string): string[] {
  let out: string[] = [];
  for (const [k, v] of unit.get(section) ?? []) if (k === key) out = v === '' ? [] : [...out, v];
  return out;
}

/** The last assignment of a single-valued setting (undefined when never set). */
function value(unit: Unit, section: string, key: string): string | undefined {
  const all = (unit.get(section) ?? []).filter(([k]) => k === key);
  return all.length ? all[all.length - 1][1] : undefined;
}

/** A command line setting's argv, without systemd's special prefixes (-, @, +, !, :). */
function argv(command: string): string[] {
  return command.replace(/^[-@+!:]+/, '').trim().split(/\s+/);
}

const yes = (v: string | undefined) => v !== undefined && ['yes', 'true', 'on', '1'].includes(v);
const unit = parseUnit(fs.readFileSync(UNIT_FILE, 'utf8'));
const svc = (key: string) => value(unit, 'Service', key);
const exec = argv(svc('ExecStart')!);
/** tsconfig's outDir/rootDir applied to src/main.ts: what `npm run build` makes of it (dist/src/main.js). */
const BUILT_MAIN = (() => {
  const tsconfig = JSON.parse(fs.readFileSync(path.join(REPO, 'tsconfig.json'), 'utf8')) as { compilerOptions: { outDir: string; rootDir: string } };
  return path.join(tsconfig.compilerOptions.outDir, path.relative(tsconfig.compilerOptions.rootDir, 'src/main.ts')).replace(/\.ts$/, '.js');
})();
const flag = (args: string[], name: string) => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
};

describe('configs/xcopyd.service', () => {
  it('has the sections and the settings systemd needs to run it', () => {
    expect([...unit.keys()]).toEqual(['Unit', 'Service', 'Install']);
    expect(value(unit, 'Install', 'WantedBy')).toBe('multi-user.target');
    expect(svc('ExecStart')).toBeDefined();
    expect(values(unit, 'Service', 'ExecStart')).toHaveLength(1);
  });

  it('ExecStart runs what tsc builds from src/main.ts from WorkingDirectory', () => {
    expect(fs.existsSync(path.join(REPO, 'src', 'main.ts'))).toBe(true);
    expect(fs.readFileSync(path.join(REPO, 'src', 'main.ts'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(path.isAbsolute(exec[0])).toBe(true);
    expect(path.basename(exec[0])).toBe('node');
    const workdir = svc('WorkingDirectory')!;
    expect(path.isAbsolute(workdir)).toBe(true);
    expect(exec[1]).toBe(path.join(workdir, BUILT_MAIN)); // test/cli-bin: package.json's bin runs this file when ts-node is absent
    // The pre-check runs the same entry point on the same file.
    const pre = argv(svc('ExecStartPre')!);
    expect(pre.slice(0, 2)).toEqual(exec.slice(0, 2));
    expect(flag(pre, '--check-config')).toBe(flag(exec, '--config'));
  });

  it('reads its configuration from ConfigurationDirectory= and keeps its data in StateDirectory=, the only writable place', () => {
    expect(svc('ConfigurationDirectory')).toBe('xcopyd');
    expect(svc('ConfigurationDirectoryMode')).toBe('0750'); // root:xcopyd, secrets inside
    expect(svc('StateDirectory')).toBe('xcopyd');
    expect(flag(exec, '--config')).toBe('/etc/xcopyd/xcopyd.yaml');
    expect(flag(exec, '--data-dir')).toBe('/var/lib/xcopyd');
    expect(svc('ProtectSystem')).toBe('strict');
    expect(values(unit, 'Service', 'ReadWritePaths')).toEqual([]); // the data directory is enough (LUN files, sockets, side files)
    expect(svc('StateDirectoryMode')).toBe('0700');
    expect(svc('UMask')).toBe('0077');
    expect(yes(svc('ProtectHome'))).toBe(true);
    expect(yes(svc('PrivateTmp'))).toBe(true);
  });

  it('runs as the user configs/xcopyd.sysusers.conf declares, with nothing it does not use', () => {
    const user = svc('User')!;
    const decl = fs
      .readFileSync(SYSUSERS_FILE, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('u '))
      .map((l) => l.split(/\s+/));
    expect(decl.map((d) => d[1])).toEqual([user]);
    expect(decl[0].slice(-2)).toEqual(['/var/lib/xcopyd', '/usr/sbin/nologin']);
    expect(svc('Group')).toBe(user);
    expect(yes(svc('NoNewPrivileges'))).toBe(true);
    // The default portal (3260) and metrics ports are not privileged: no capability at all.
    expect(values(unit, 'Service', 'CapabilityBoundingSet')).toEqual([]);
    expect(values(unit, 'Service', 'AmbientCapabilities')).toEqual([]);
    expect(fs.readFileSync(path.join(REPO, 'configs', 'default.yaml'), 'utf8')).toMatch(/listen: \["127\.0\.0\.1:3260"\]/);
    // Block devices: readable through the disk group, reachable through the device ACL, not hidden.
    expect(values(unit, 'Service', 'SupplementaryGroups')).toEqual(['disk']);
    expect(yes(svc('PrivateDevices'))).toBe(false);
    expect(svc('DevicePolicy')).toBe('closed');
    expect(values(unit, 'Service', 'DeviceAllow')).toEqual(expect.arrayContaining(['block-sd rw', 'block-blkext rw', 'block-device-mapper rw']));
  });

  it('lets the daemon use its sockets and V8, and reload and stop the way it expects', () => {
    expect(svc('RestrictAddressFamilies')!.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_UNIX']);
    expect(yes(svc('MemoryDenyWriteExecute'))).toBe(false); // V8's JIT
    expect(yes(svc('PrivateNetwork'))).toBe(false);
    // Type=notify: the daemon sends READY=1 (test/sd-notify checks when), and WATCHDOG=1 for WatchdogSec=.
    const main = fs.readFileSync(path.join(REPO, 'src', 'main.ts'), 'utf8');
    const notify = fs.readFileSync(path.join(REPO, 'src', 'sd-notify.ts'), 'utf8');
    expect(svc('Type')).toBe('notify');
    expect(svc('NotifyAccess') ?? 'main').toBe('main'); // the datagrams come from the main process itself
    expect(notify).toContain('NOTIFY_SOCKET');
    expect(main).toMatch(/READY=1/);
    expect(main).toMatch(/STOPPING=1/);
    if (svc('WatchdogSec') !== undefined) {
      expect(main).toMatch(/WATCHDOG=1/);
      expect(notify).toContain('WATCHDOG_USEC');
      expect(Number.parseInt(svc('WatchdogSec')!, 10)).toBeGreaterThanOrEqual(10); // far above a ping every WatchdogSec/2
    }
    expect(argv(svc('ExecReload')!)).toEqual(['/bin/kill', '-HUP', '$MAINPID']);
    expect(fs.readFileSync(path.join(REPO, 'src', 'main.ts'), 'utf8')).toMatch(/process\.on\('SIGHUP'/);
    expect(svc('KillSignal') ?? 'SIGTERM').toBe('SIGTERM');
    expect(fs.readFileSync(path.join(REPO, 'src', 'main.ts'), 'utf8')).toMatch(/process\.on\('SIGTERM'/);
    // Every connection the daemon admits is a descriptor, plus LUN and side files.
    expect(Number(svc('LimitNOFILE'))).toBeGreaterThanOrEqual(4 * DEFAULT_LIMITS.maxConnections);
    expect(svc('Environment')).toBeDefined();
    expect(values(unit, 'Service', 'Environment')).toContain('XCOPYD_LOG_FORMAT=json');
  });
});

const analyze = findInPath('systemd-analyze');
describeIf(!!analyze || missingPrerequisite("'systemd-analyze' not found on PATH", 'apt-get install -y systemd'))('configs/xcopyd.service with systemd-analyze', () => {
  const run = (args: string[], cwd = os.tmpdir()) =>
    new Promise<{ code: number; out: string }>((resolve) =>
      execFile(analyze!, args, { cwd, timeout: 60000, maxBuffer: 1 << 22 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      ),
    );

  it('verifies (syntax, settings, executables)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-unit-'));
    try {
      let text = fs.readFileSync(UNIT_FILE, 'utf8');
      // verify checks that ExecStart's program exists: a node elsewhere stands in for /usr/bin/node.
      if (!fs.existsSync(exec[0])) text = text.split(exec[0]).join(process.execPath);
      const file = path.join(dir, 'xcopyd.service');
      fs.writeFileSync(file, text);
      const r = await run(['verify', '--man=no', file], dir);
      expect(r.out).toBe('');
      expect(r.code).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('allows the system calls of the copy data mover, the file stores and node, and nothing of @privileged', async () => {
    const expand = async (set: string) => {
      const r = await run(['syscall-filter', set]);
      expect(r.code).toBe(0);
      const names = new Set<string>();
      for (const l of r.out.split('\n').map((x) => x.trim())) {
        if (!l || l.startsWith('#') || l === set) continue;
        if (l.startsWith('@')) for (const n of await expand(l)) names.add(n);
        else names.add(l);
      }
      return names;
    };
    const allowed = new Set<string>();
    const denied = new Set<string>();
    for (const f of values(unit, 'Service', 'SystemCallFilter')) {
      const deny = f.startsWith('~');
      for (const s of f.replace(/^~/, '').split(/\s+/)) for (const n of s.startsWith('@') ? await expand(s) : [s]) (deny ? denied : allowed).add(n);
    }
    const permitted = (n: string) => allowed.has(n) && !denied.has(n);
    const needed = [
      'copy_file_range', 'ioctl', 'fallocate', 'lseek', 'preadv2', 'pread64', 'pwrite64', 'preadv', 'pwritev', 'fdatasync', 'fsync',
      'openat', 'ftruncate', 'fstat', 'statx', 'rename', 'unlink', 'mkdir',
      'socket', 'bind', 'listen', 'accept4', 'getsockopt', 'setsockopt', 'writev', 'sendmsg', 'recvmsg', 'shutdown',
      'epoll_create1', 'epoll_ctl', 'epoll_wait', 'eventfd2', 'futex', 'mmap', 'mprotect', 'munmap', 'madvise', 'clone3', 'clone',
      'rt_sigaction', 'kill', 'getrandom', 'sched_getaffinity', 'setrlimit', 'prlimit64', 'io_uring_setup', 'io_uring_enter',
    ];
    expect(needed.filter((n) => !permitted(n))).toEqual([]);
    expect(['mount', 'setresuid', 'setgroups', 'bpf', 'init_module', 'reboot'].filter(permitted)).toEqual([]);
    expect(svc('SystemCallErrorNumber')).toBe('EPERM'); // a call outside the list fails; it does not kill the daemon
  });
});

/**
 * What `npm run build` puts in WorkingDirectory: tsconfig's outDir with every file of the daemon
 * (src, scsi, iscsi) emitted by TypeScript one file at a time (the project is isolatedModules, so
 * this is tsc's output without the type check), and node_modules beside it.
 */
function buildInto(dir: string): void {
  const read = ts.readConfigFile(path.join(REPO, 'tsconfig.json'), ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, REPO);
  const options = { ...parsed.options, sourceMap: false, inlineSourceMap: false, declaration: false };
  const outDir = path.relative(REPO, parsed.options.outDir!);
  const rootDir = parsed.options.rootDir!;
  for (const file of parsed.fileNames) {
    const rel = path.relative(rootDir, file);
    if (!/^(src|scsi|iscsi)\//.test(rel) || file.endsWith('.d.ts')) continue;
    const js = ts.transpileModule(fs.readFileSync(file, 'utf8'), { compilerOptions: options, fileName: file }).outputText;
    const out = path.join(dir, outDir, rel.replace(/\.ts$/, '.js'));
    fs.mkdirSync(path.dirname(out), { recursive: true, mode: 0o755 });
    fs.writeFileSync(out, js, { mode: 0o644 });
  }
  copyRuntimeModules(dir);
  expect(fs.existsSync(path.join(dir, BUILT_MAIN))).toBe(true);
}

/**
 * node_modules as `npm ci --omit=dev` lays it out in the install directory: every package
 * package-lock.json does not mark dev, copied from this checkout's node_modules (optional
 * packages for other platforms are not installed, so not copied). A copy, not a symlink to
 * the checkout: the unit's user must read it, and a checkout under /root (or any 0700
 * parent) is closed to that user, as to the real xcopyd user.
 */
function copyRuntimeModules(dir: string): void {
  const lock = JSON.parse(fs.readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; optional?: boolean }>;
  };
  const runtime = Object.entries(lock.packages).filter(([p, e]) => p.startsWith('node_modules/') && !e.dev);
  expect(runtime.some(([p]) => p === 'node_modules/yaml')).toBe(true);
  for (const [p, e] of runtime) {
    const from = path.join(REPO, p);
    if (!fs.existsSync(from)) {
      expect(e.optional).toBe(true); // only another platform's prebuilt binary may be absent
      continue;
    }
    fs.cpSync(from, path.join(dir, p), { recursive: true, dereference: true, filter: (src) => !src.slice(from.length).includes('/node_modules/') });
  }
  // What the copy holds is the unit's user's to read, whatever the checkout's umask made it.
  execFileSync('chmod', ['-R', 'a+rX', path.join(dir, 'node_modules')]);
}

const isRoot = process.getuid?.() === 0;
const emulationTools = ['unshare', 'setpriv', 'mount'].every((t) => findInPath(t));
describeIf(
  (isRoot || missingPrerequisite('root (a private mount namespace for the sandbox emulation)', 'run as root')) &&
    (emulationTools || missingPrerequisite("'unshare', 'setpriv' or 'mount' not found on PATH", 'apt-get install -y util-linux mount')),
)('xcopyd under the unit, in an emulation of its sandbox', () => {
  jest.setTimeout(300000);
  const NOBODY = 65534; // stands in for the sysusers user, which this machine does not have
  const IQN = 'iqn.2026-11.org.xcopyd:unit';

  it('starts, serves I/O and a kernel copy, reloads by ExecReload, answers status, stops by KillSignal with status 0', async () => {
    // The unit's absolute paths, each under a fresh root: /opt/xcopyd (the build), /etc/xcopyd, /var/lib/xcopyd.
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-unit-run-'));
    fs.chmodSync(root, 0o755);
    const at = (p: string) => path.join(root, p);
    const install = svc('WorkingDirectory')!;
    const etc = at(`/etc/${svc('ConfigurationDirectory')}`);
    const data = at(`/var/lib/${svc('StateDirectory')}`);
    fs.mkdirSync(etc, { recursive: true, mode: 0o755 });
    fs.mkdirSync(data, { recursive: true, mode: 0o755 });
    fs.chownSync(data, NOBODY, NOBODY); // StateDirectory= is owned by User=
    fs.chmodSync(data, Number.parseInt(svc('StateDirectoryMode')!, 8));
    buildInto(at(install));
    const port = await freePort();
    const configFile = path.join(etc, 'xcopyd.yaml');
    const yaml = (luns: number[]) =>
      [`listen: ["127.0.0.1:${port}"]`, 'targets:', `  - iqn: ${IQN}`, '    luns:', ...luns.map((n) => `      - { lun: ${n}, path: l${n}.img, size: 8MiB }`), ''].join('\n');
    fs.writeFileSync(configFile, yaml([0, 1]), { mode: 0o644 });

    // The unit's command lines, their paths moved under the root; node is this node.
    const map = (args: string[]) =>
      args.map((a) => (a === exec[0] ? process.execPath : ['/opt/', '/etc/', '/var/lib/'].some((p) => a.startsWith(p)) ? at(a) : a));
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    for (const e of values(unit, 'Service', 'Environment')) {
      const [k, ...v] = e.split('=');
      env[k] = v.join('=');
    }
    // ProtectSystem=strict + StateDirectory=: everything read-only but the data directory (and /dev, /proc, /sys,
    // separate mounts); User=, NoNewPrivileges=, CapabilityBoundingSet= (empty), UMask=, WorkingDirectory=.
    const sandboxed = (args: string[]) => [
      'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c',
      [
        'set -e',
        'mount --bind "$XDATA" "$XDATA"',
        'mount -o remount,bind,ro /',
        'if touch "$XROOT/.rw-probe" 2>/dev/null; then rm -f "$XROOT/.rw-probe"; echo "/ is still writable" >&2; exit 97; fi',
        `umask ${svc('UMask')}`,
        'cd "$XWORKDIR"',
        `exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"`,
      ].join('\n'),
      'sandbox', ...map(args),
    ];
    // Type=notify: systemd's notify socket (abstract: the unit's user needs no file permission on it),
    // and WatchdogSec= as systemd passes it.
    const notifyAddr = `@xcopyd-unit-${path.basename(root)}`;
    const notify = await notifyReceiver(notifyAddr, port);
    const spawnEnv: Record<string, string> = { ...env, XDATA: data, XROOT: root, XWORKDIR: at(install), NOTIFY_SOCKET: notifyAddr };
    if (svc('WatchdogSec')) spawnEnv.WATCHDOG_USEC = String(Number.parseInt(svc('WatchdogSec')!, 10) * 1_000_000);
    const notified = (state: string) => notify.got().filter((r) => r.msg.split('\n').includes(state));

    const pre = sandboxed(argv(svc('ExecStartPre')!));
    const check = await new Promise<{ code: number | null; out: string }>((resolve) =>
      execFile(pre[0], pre.slice(1), { env: spawnEnv, timeout: 120000 }, (err, so, se) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: so + se })),
    );
    expect(check.out).toContain(': valid');
    expect(check.code).toBe(0);

    const cmd = sandboxed(exec);
    const child = spawn(cmd[0], cmd.slice(1), { env: spawnEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const output = captureOutput(child);
    const { waitFor } = output;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor('"msg":"control socket listening"');
      // systemd would call the start done at READY=1, when the portal already accepts connections.
      for (let i = 0; i < 200 && notified('READY=1').length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(notified('READY=1').map((r) => r.portal)).toEqual(['accepted']);
      // JSON lines, as the unit's environment asks.
      expect(output.text().split('\n').filter(Boolean).every((l) => l.startsWith('{"level":'))).toBe(true);
      // Everything it made is in the data directory, owned by its user, private.
      const sock = path.join(data, 'control.sock');
      for (const f of fs.readdirSync(data)) {
        const st = fs.statSync(path.join(data, f));
        expect([f, st.uid, st.mode & 0o077]).toEqual([f, NOBODY, 0]);
      }
      expect(fs.statSync(sock).mode & 0o777).toBe(0o600);

      const c = await openSession(port, { initiatorName: 'iqn.2026-11.org.example:unit', targetName: IQN });
      for (const lun of [0, 1]) await clearUnitAttentions(c, lun);
      const data0 = pattern(2048 * 512, 11);
      await writeBlocks(c, 0, 0, data0);
      const report = (await controlRequest(sock, 'status')) as StatusReport;
      const naa = (lun: number) => Buffer.from(report.luns.find((l) => l.lun === lun)!.naa, 'hex');
      const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 2048, 0, 0)]);
      expectGood(await c.command(0, xcopyCdb(0, p.length), { dataOut: p }), 'EXTENDED COPY in the sandbox');
      expect((await readBlocks(c, 1, 0, 2048)).equals(data0)).toBe(true);

      // ExecReload, as systemctl reload runs it.
      fs.writeFileSync(configFile, yaml([0, 1, 2]));
      const reload = argv(svc('ExecReload')!).map((a) => (a === '$MAINPID' ? String(child.pid) : a));
      await new Promise<void>((resolve, reject) => execFile(reload[0], reload.slice(1), (err) => (err ? reject(err) : resolve())));
      await waitFor('"msg":"configuration reloaded"');
      await clearUnitAttentions(c, 2);
      expect((await c.command(2, cdb.read10(0, 1), { read: 512 })).status).toBe(0);
      expect(((await controlRequest(sock, 'status')) as StatusReport).luns.map((l) => l.lun)).toEqual([0, 1, 2]);
      c.close();
    } finally {
      if (child.exitCode === null) child.kill((svc('KillSignal') ?? 'SIGTERM') as NodeJS.Signals);
      let timer: NodeJS.Timeout | undefined;
      const stopLimit = new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), 1000 * Number.parseInt(svc('TimeoutStopSec') ?? '90', 10))));
      const code = await Promise.race([exited, stopLimit]);
      clearTimeout(timer);
      if (code === 'timeout') child.kill('SIGKILL');
      fs.rmSync(root, { recursive: true, force: true });
      for (let i = 0; i < 100 && notified('STOPPING=1').length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      notify.proc.kill();
      expect(code).toBe(0);
    }
    expect(output.text()).toContain('"msg":"stopped"');
    expect(notified('STOPPING=1')).toHaveLength(1);
    expect(notified('RELOADING=1')).toHaveLength(1); // ExecReload, then READY=1 again
    expect(notified('READY=1')).toHaveLength(2);
  });
});
