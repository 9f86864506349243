/**
 * Start and stop a real etcd (Debian's etcd-server, /usr/bin/etcd 3.4) for the cluster suites:
 * one member, or three members on loopback for the failure tests. Every member binds
 * 127.0.0.1 on free ports, keeps its data in a fresh directory under OUT_ROOT (kept with its
 * log when the suite fails, for diagnostics), is waited for with a bounded health poll, and
 * is stopped by the PID we started (SIGTERM, then SIGKILL).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { findInPath, freePort, makeRunDir, missingPrerequisite, sleep, tail } from '../harness';

export const ETCD_DEBIAN_PACKAGE = 'etcd-server';

/** The etcd binary, or undefined. */
export function etcdBinary(): string | undefined {
  return process.env.XCOPYD_ETCD ?? findInPath('etcd');
}

/** True when etcd is here; otherwise the loud skip (false), or a thrown error under CI=true. */
export function requireEtcd(): boolean {
  if (etcdBinary()) return true;
  return missingPrerequisite("'etcd' not found on PATH (Debian's etcd-server)", `apt-get install -y ${ETCD_DEBIAN_PACKAGE}`);
}

export interface EtcdMember {
  readonly name: string;
  /** http://127.0.0.1:<client port> */
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** The PID we started, while it runs. */
  pid(): number | undefined;
  running(): boolean;
  /** SIGSTOP / SIGCONT the member (a hung member). */
  pause(): void;
  resume(): void;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** SIGTERM (SIGKILL after `graceMs`) and wait for exit. */
  stop(graceMs?: number): Promise<void>;
  /** Start it again on the same ports and data directory (after stop/kill), and wait until healthy. */
  restart(timeoutMs?: number): Promise<void>;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's client URL. */
  readonly endpoints: string[];
  readonly dir: string;
  /** Stop every member; the directory is removed unless `keep`. */
  stop(o?: { keep?: boolean }): Promise<void>;
}

export interface StartEtcdOptions {
  /** 1 (default) or 3. */
  members?: number;
  /** The run directory's name prefix. */
  name?: string;
  /** Bound on the whole start, health included (default 30 s). */
  timeoutMs?: number;
}

interface Ports {
  client: number;
  peer: number;
}

/** GET /health on a member: {"health":"true"} once it has a leader and serves. */
function healthy(clientUrl: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(`${clientUrl}/health`, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 && JSON.parse(body).health === 'true');
        } catch {
          resolve(false);
        }
      });
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** Poll /health until true, the process dies, or time runs out. */
export async function waitHealthy(m: EtcdMember, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1_000 && Date.now() < deadline; i++) {
    if (!m.running()) throw new Error(`etcd ${m.name} exited while starting; log:\n${tail(m.logFile)}`);
    if (await healthy(m.clientUrl, 1_000)) return;
    await sleep(100);
  }
  throw new Error(`etcd ${m.name} not healthy within ${timeoutMs} ms; log:\n${tail(m.logFile)}`);
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

class Member implements EtcdMember {
  readonly clientUrl: string;
  readonly peerUrl: string;
  private child: ChildProcess | undefined;

  constructor(
    readonly name: string,
    private readonly ports: Ports,
    readonly dataDir: string,
    readonly logFile: string,
    private readonly initialCluster: string,
    private readonly token: string,
  ) {
    this.clientUrl = `http://127.0.0.1:${ports.client}`;
    this.peerUrl = `http://127.0.0.1:${ports.peer}`;
  }

  spawn(): void {
    const bin = etcdBinary();
    if (!bin) throw new Error('etcd not found');
    const out = fs.openSync(this.logFile, 'a');
    const args = [
      '--name', this.name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', this.clientUrl,
      '--advertise-client-urls', this.clientUrl,
      '--listen-peer-urls', this.peerUrl,
      '--initial-advertise-peer-urls', this.peerUrl,
      '--initial-cluster', this.initialCluster,
      '--initial-cluster-token', this.token,
      '--initial-cluster-state', 'new',
      // Small and quick: loopback, tests. Elections in a few hundred ms.
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--quota-backend-bytes', String(64 * 1024 * 1024),
      '--snapshot-count', '10000',
      '--log-level', 'warn',
      '--logger', 'zap',
    ];
    // Debian's etcd 3.4 on a non-amd64 host wants ETCD_UNSUPPORTED_ARCH; harmless elsewhere.
    const env = { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch };
    const child = spawn(bin, args, { stdio: ['ignore', out, out], env });
    fs.closeSync(out);
    this.child = child;
    child.on('error', () => undefined);
  }

  pid(): number | undefined {
    return this.running() ? this.child?.pid : undefined;
  }

  running(): boolean {
    const c = this.child;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  pause(): void {
    if (this.running()) this.child!.kill('SIGSTOP');
  }

  resume(): void {
    if (this.running()) this.child!.kill('SIGCONT');
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (!c || !this.running()) return;
    c.kill('SIGKILL');
    await waitExit(c, 10_000);
  }

  async stop(graceMs = 5_000): Promise<void> {
    const c = this.child;
    if (!c || !this.running()) return;
    c.kill('SIGCONT'); // a paused member cannot act on SIGTERM
    c.kill('SIGTERM');
    if (!(await waitExit(c, graceMs))) {
      c.kill('SIGKILL');
      await waitExit(c, 10_000);
    }
  }

  async restart(timeoutMs = 30_000): Promise<void> {
    await this.stop();
    this.spawn();
    await waitHealthy(this, timeoutMs);
  }
}

/**
 * Start etcd: one member (default) or three on loopback. Resolves once every member reports
 * healthy; on a failure or after `timeoutMs`, whatever started is stopped and it throws with
 * the members' logs.
 */
export async function startEtcd(o: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const n = o.members ?? 1;
  const timeoutMs = o.timeoutMs ?? 30_000;
  const dir = makeRunDir(o.name ?? 'etcd');
  const ports: Ports[] = [];
  const taken = new Set<number>();
  while (ports.length < n) {
    const client = await freePort();
    const peer = await freePort();
    if (client === peer || taken.has(client) || taken.has(peer)) continue;
    taken.add(client).add(peer);
    ports.push({ client, peer });
  }
  const names = ports.map((_, i) => `m${i}`);
  const initialCluster = ports.map((p, i) => `${names[i]}=http://127.0.0.1:${p.peer}`).join(',');
  const token = path.basename(dir);
  const members = ports.map((p, i) => new Member(names[i], p, path.join(dir, names[i]), path.join(dir, `${names[i]}.log`), initialCluster, token));
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    dir,
    async stop(s = {}) {
      await Promise.all(members.map((m) => m.stop()));
      if (!s.keep) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    for (const m of members) m.spawn();
    const deadline = Date.now() + timeoutMs;
    for (const m of members) await waitHealthy(m, Math.max(1, deadline - Date.now()));
  } catch (e) {
    await cluster.stop({ keep: true });
    throw e;
  }
  return cluster;
}
