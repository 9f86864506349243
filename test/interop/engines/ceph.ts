/**
 * A throwaway Ceph cluster for the cluster suites: one monitor and one OSD on
 * memstore (RAM, no disk, no kernel modules), bound to 127.0.0.1, in a fresh
 * directory, with a generated ceph.conf. No manager: nothing here waits on PG
 * statistics (a mgr reports them); readiness is "the OSD is up in the osdmap
 * and an object written to the pool reads back" (`rados put`/`get`).
 *
 * Authentication is `none` (auth_{cluster,service,client}_required), the
 * simplest setting that works without handing keys to every client; a
 * keyring is still generated for the monitor's mkfs and named in ceph.conf.
 * Blocklisting (the fencing the RBD store relies on) is by client address in
 * the osdmap and works the same without cephx.
 *
 * Every step is bounded in time; the daemons are stopped by the PIDs started
 * here (SIGTERM, then SIGKILL) and the directory removed unless asked to keep it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, makeRunDir, missingPrerequisite, requireTools, run, sleep, tail, type RunResult } from '../harness';

/** Where Debian's librbd / librados live (package librbd1 / librados2, pulled in by ceph-common and qemu-block-extra). */
const LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib'];

/**
 * Everything a Ceph suite needs: the daemons, the CLI, and librbd/librados.
 * Missing pieces skip loudly, or fail under CI=true.
 */
export function requireCeph(): boolean {
  if (!requireTools([
    ['ceph-mon', 'ceph-mon'],
    ['ceph-osd', 'ceph-osd'],
    ['ceph', 'ceph-common'],
    ['rados', 'ceph-common'],
    ['rbd', 'ceph-common'],
    ['monmaptool', 'ceph-base'],
    ['ceph-authtool', 'ceph-common'],
  ])) return false;
  for (const lib of ['librbd.so.1', 'librados.so.2']) {
    if (!LIB_DIRS.some((d) => fs.existsSync(path.join(d, lib)))) {
      return missingPrerequisite(`${lib} not found`, 'apt-get install -y librbd1 librados2');
    }
  }
  return true;
}

export interface CephOptions {
  /** Name of the run directory under the interop output root. */
  name?: string;
  /** The memstore OSD's capacity (default 512 MiB; it is RAM). */
  memstoreBytes?: number;
  /** The RBD pool created and initialised (default 'rbd'). */
  pool?: string;
  /** Bound on the whole start (default 90 s). */
  timeoutMs?: number;
  /** Keep the directory after stop() (logs for diagnostics). */
  keep?: boolean;
}

export interface CephCluster {
  readonly dir: string;
  /** The generated ceph.conf (give it to librados: rados_conf_read_file). */
  readonly conf: string;
  /** "v2:127.0.0.1:PORT" */
  readonly monHost: string;
  readonly fsid: string;
  readonly pool: string;
  /** Milliseconds from start() to a pool that takes writes. */
  readonly startMs: number;
  readonly pids: { mon: number; osd: number };
  /** Resident set of the monitor and the OSD together, bytes (from /proc). */
  rssBytes(): number;
  /** Run the `ceph` CLI against this cluster. */
  ceph(args: string[], timeoutMs?: number): Promise<RunResult>;
  /** Run `rados` against this cluster. */
  rados(args: string[], timeoutMs?: number): Promise<RunResult>;
  /** The last lines of the daemons' logs (for a failing test's message). */
  logs(): string;
  stop(): Promise<void>;
}

function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function stopChild(child: ChildProcess | undefined, ms = 10_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), ms))),
  ]);
  clearTimeout(timer);
  if (killed) {
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(5_000)]);
  }
}

function check(r: RunResult, what: string): RunResult {
  if (r.code !== 0) {
    throw new Error(`${what} failed (code ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.slice(-2000)}${r.stdout.slice(-500)}`);
  }
  return r;
}

/** Start a one-mon, one-memstore-OSD cluster and an initialised RBD pool of size 1. */
export async function startCeph(o: CephOptions = {}): Promise<CephCluster> {
  const started = Date.now();
  const deadline = started + (o.timeoutMs ?? 90_000);
  const left = (cap: number) => Math.max(1_000, Math.min(cap, deadline - Date.now()));
  const dir = makeRunDir(o.name ?? 'ceph');
  const pool = o.pool ?? 'rbd';
  const fsid = randomUUID();
  const port = await freePort();
  const monHost = `v2:127.0.0.1:${port}`;
  const conf = path.join(dir, 'ceph.conf');
  const keyring = path.join(dir, 'keyring');
  for (const d of ['run', 'log', 'mon', 'osd/osd.0']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.writeFileSync(conf, [
    '[global]',
    `fsid = ${fsid}`,
    `mon_host = ${monHost}`,
    'public_addr = 127.0.0.1',
    'ms_bind_ipv6 = false',
    'auth_cluster_required = none',
    'auth_service_required = none',
    'auth_client_required = none',
    `keyring = ${keyring}`,
    `run_dir = ${dir}/run`,
    `log_file = ${dir}/log/$name.log`,
    `pid_file = ${dir}/run/$name.pid`,
    // Clients (the CLI, every librados handle of the tests) get no admin socket: several share a name.
    'admin_socket =',
    `mon_data = ${dir}/mon/$name`,
    `osd_data = ${dir}/osd/$name`,
    'osd_objectstore = memstore',
    `memstore_device_bytes = ${o.memstoreBytes ?? 512 * 1024 * 1024}`,
    'osd_pool_default_size = 1',
    'osd_pool_default_min_size = 1',
    'osd_pool_default_pg_autoscale_mode = off',
    'mon_allow_pool_size_one = true',
    'mon_warn_on_pool_no_redundancy = false',
    'mon_data_avail_warn = 1',
    'mon_data_avail_crit = 0',
    'osd_crush_chooseleaf_type = 0',
    // Small test clusters: no RAM hunger, quick heartbeats.
    'osd_memory_target = 268435456',
    'osd_op_num_shards = 1',
    'osd_op_num_threads_per_shard = 2',
    'rbd_cache = false',
    '',
    '[mon]',
    `admin_socket = ${dir}/run/$name.asok`,
    '[osd]',
    `admin_socket = ${dir}/run/$name.asok`,
    '',
  ].join('\n'));

  const env = { ...process.env, CEPH_CONF: conf };
  const tool = (cmd: string, args: string[], timeoutMs: number) =>
    run(cmd, ['-c', conf, ...args], { timeoutMs: left(timeoutMs), env, cwd: dir, logFile: path.join(dir, 'log', 'cli.log') });
  const children: { mon?: ChildProcess; osd?: ChildProcess } = {};
  const daemon = (cmd: string, args: string[], name: string): ChildProcess => {
    const out = fs.openSync(path.join(dir, 'log', `${name}.out`), 'a');
    const child = spawn(cmd, ['-c', conf, ...args, '-f'], { cwd: dir, env, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    child.on('error', () => undefined);
    return child;
  };
  const logs = () =>
    ['mon.a.log', 'osd.0.log', 'mon.out', 'osd.out', 'cli.log']
      .map((f) => `--- ${f}\n${tail(path.join(dir, 'log', f), 25)}`)
      .join('\n');
  const stop = async () => {
    await stopChild(children.osd);
    await stopChild(children.mon);
    if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    check(await tool('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], 10_000), 'ceph-authtool');
    const monmap = path.join(dir, 'monmap');
    check(await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${port}]`, '--fsid', fsid, monmap],
      { timeoutMs: 10_000, cwd: dir }), 'monmaptool');
    check(await tool('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring], 20_000), 'ceph-mon --mkfs');
    children.mon = daemon('ceph-mon', ['-i', 'a'], 'mon');

    // The OSD's uuid must be the one registered with the monitor, or the monitor ignores its boot.
    const osdUuid = randomUUID();
    let id: RunResult | undefined;
    for (let i = 0; i < 100 && Date.now() < deadline; i++) {
      if (children.mon.exitCode !== null) throw new Error('ceph-mon exited');
      id = await tool('ceph', ['--connect-timeout', '5', 'osd', 'new', osdUuid], 10_000);
      if (id.code === 0) break;
      await sleep(200);
    }
    if (!id || id.code !== 0 || id.stdout.trim() !== '0') throw new Error(`ceph osd new: ${id?.stderr ?? 'no answer'} ${id?.stdout ?? ''}`);
    check(await tool('ceph-osd', ['-i', '0', '--mkfs', '--osd-uuid', osdUuid], 20_000), 'ceph-osd --mkfs');
    children.osd = daemon('ceph-osd', ['-i', '0'], 'osd');

    // The pool is a monitor operation: no need to wait for the OSD.
    check(await tool('ceph', ['osd', 'pool', 'create', pool, '8', '8', 'replicated'], 20_000), 'ceph osd pool create');
    check(await tool('ceph', ['osd', 'pool', 'set', pool, 'size', '1', '--yes-i-really-mean-it'], 20_000), 'pool set size');
    check(await tool('ceph', ['osd', 'pool', 'set', pool, 'min_size', '1'], 20_000), 'pool set min_size');

    // Ready when an object round-trips (the OSD is up and its PGs active); bounded.
    const probe = path.join(dir, 'probe');
    fs.writeFileSync(probe, `ready ${fsid}\n`);
    let ok = false;
    for (let i = 0; i < 200 && Date.now() < deadline; i++) {
      if (children.osd.exitCode !== null) throw new Error('ceph-osd exited');
      const put = await tool('rados', ['-p', pool, '--client_mount_timeout=5', '--rados_osd_op_timeout=5', 'put', 'xcopyd-probe', probe], 12_000);
      if (put.code === 0) {
        const get = await tool('rados', ['-p', pool, '--rados_osd_op_timeout=5', 'get', 'xcopyd-probe', '-'], 12_000);
        if (get.code === 0 && get.stdout === `ready ${fsid}\n`) {
          ok = true;
          break;
        }
      }
      await sleep(250);
    }
    if (!ok) throw new Error('the pool never took a write');
    await tool('rados', ['-p', pool, 'rm', 'xcopyd-probe'], 10_000);
    // Tags the pool for RBD and writes its metadata (needs the OSD: after the probe).
    check(await tool('rbd', ['pool', 'init', pool], 30_000), 'rbd pool init');
  } catch (err) {
    const msg = `${(err as Error).message}\n${logs()}`;
    await stop();
    throw new Error(`Ceph did not start: ${msg}`);
  }

  const mon = children.mon!.pid!;
  const osd = children.osd!.pid!;
  return {
    dir, conf, monHost, fsid, pool, startMs: Date.now() - started, pids: { mon, osd },
    rssBytes: () => rssOf(mon) + rssOf(osd),
    ceph: (args, timeoutMs = 20_000) => run('ceph', ['-c', conf, ...args], { timeoutMs, env, cwd: dir }),
    rados: (args, timeoutMs = 20_000) => run('rados', ['-c', conf, ...args], { timeoutMs, env, cwd: dir }),
    logs,
    stop,
  };
}
