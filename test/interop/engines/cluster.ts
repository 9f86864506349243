/**
 * Start N xcopyd nodes of one cluster (issue 15) as child processes: one
 * YAML for all, `--node ID` for each, each node's own data directory
 * (`--data-dir`: identity, control socket, token secret), free 127.0.0.1
 * portals, and shared LUs as files every node opens (on one host two nodes
 * opening the same file is genuinely shared storage: enough for ALUA and
 * PR across nodes without Ceph). etcd comes from the caller
 * (test/interop/engines/etcd.ts). Every node is stopped by the PID we
 * started; kill/pause/resume/restart drive the failure tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, freePort, makeRunDir, shellQuote, tail, waitForPort, within } from '../harness';

export const CLUSTER_IQN = 'iqn.2026-11.org.xcopyd:cluster';

export interface ClusterNodeProcess {
  readonly id: string;
  readonly index: number;
  readonly port: number;
  /** "127.0.0.1:port" */
  readonly portal: string;
  /** This node's target port group (index + 1) and relative target port (index x 16 + 1). */
  readonly targetPortGroup: number;
  readonly relativeTargetPort: number;
  readonly dataDir: string;
  readonly logFile: string;
  pid(): number | undefined;
  alive(): boolean;
  /** iscsi://127.0.0.1:PORT/IQN/LUN (libiscsi). */
  url(lun: number): string;
  /** Send `signal` (SIGKILL waits for the exit). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM (SIGKILL after 15 s) and wait. */
  stop(): Promise<void>;
  /** Start again (same portal, data directory) after stop/kill, and wait until it listens. */
  start(): Promise<void>;
  logTail(lines?: number): string;
}

export interface XcopydCluster {
  readonly name: string;
  readonly iqn: string;
  readonly dir: string;
  readonly configFile: string;
  readonly nodes: readonly ClusterNodeProcess[];
  /** The shared LU files, by LUN. */
  readonly lunFiles: readonly string[];
  readonly lunSize: number;
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  /** Run directory name. */
  name: string;
  etcdEndpoints: string[];
  /** Nodes (default 2). */
  nodes?: number;
  /** Shared LUs (default 2), each `lunSize` bytes (default 64 MiB). */
  luns?: number;
  lunSize?: number;
  /** Membership lease TTL (default 2 s, so a killed node is gone quickly). */
  leaseTtlSeconds?: number;
  logLevel?: string;
  startTimeoutMs?: number;
}

/** The YAML every node reads. */
export function clusterYaml(o: { name: string; portals: string[]; etcdEndpoints: string[]; leaseTtlSeconds: number; lunFiles: string[]; lunSize: number; logLevel: string }): string {
  return [
    `logLevel: ${o.logLevel}`,
    'cluster:',
    `  name: ${o.name}`,
    '  nodes:',
    ...o.portals.map((p, i) => `    - { id: n${i}, portal: "${p}" }`),
    `  etcd: { endpoints: [${o.etcdEndpoints.map((e) => `"${e}"`).join(', ')}], leaseTtlSeconds: ${o.leaseTtlSeconds} }`,
    'targets:',
    `  - iqn: ${CLUSTER_IQN}`,
    '    luns:',
    ...o.lunFiles.map(
      (f, i) => `      - { lun: ${i}, path: "${f}", size: ${o.lunSize}, naa: "6001405c1a5700000000000000000${(i + 1).toString(16).padStart(3, '0')}", serial: "cluster-lu-${i}" }`,
    ),
    '',
  ].join('\n');
}

class NodeProcess implements ClusterNodeProcess {
  readonly portal: string;
  readonly targetPortGroup: number;
  readonly relativeTargetPort: number;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly id: string,
    readonly index: number,
    readonly port: number,
    readonly dataDir: string,
    readonly logFile: string,
    private readonly configFile: string,
    private readonly startTimeoutMs: number,
  ) {
    this.portal = `127.0.0.1:${port}`;
    this.targetPortGroup = index + 1;
    this.relativeTargetPort = index * 16 + 1;
  }

  pid(): number | undefined {
    return this.alive() ? this.child?.pid : undefined;
  }

  alive(): boolean {
    const c = this.child;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  url(lun: number): string {
    return `iscsi://${this.portal}/${CLUSTER_IQN}/${lun}`;
  }

  logTail(lines = 60): string {
    return tail(this.logFile, lines);
  }

  async start(): Promise<void> {
    if (this.alive()) return;
    fs.mkdirSync(this.dataDir, { recursive: true });
    const args = ['-r', 'ts-node/register/transpile-only', path.join('src', 'main.ts'), '--config', this.configFile, '--node', this.id, '--data-dir', this.dataDir, '--log-format', 'json'];
    const fd = fs.openSync(this.logFile, 'a');
    fs.writeSync(fd, `# ${process.execPath} ${args.map(shellQuote).join(' ')}\n`);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, NODE_ENV: process.env.NODE_ENV ?? 'test' } });
    } finally {
      fs.closeSync(fd);
    }
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    if (!(await waitForPort(this.port, this.startTimeoutMs, () => this.alive()))) {
      await this.kill('SIGKILL');
      throw new Error(`xcopyd node ${this.id} did not listen on ${this.portal} within ${this.startTimeoutMs} ms; log ${this.logFile}:\n${this.logTail(40)}`);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive()) return;
    this.child!.kill(signal);
    if (signal === 'SIGKILL') await within(this.exited, 10_000);
  }

  async stop(): Promise<void> {
    if (!this.alive()) return;
    this.child!.kill('SIGCONT'); // a stopped node cannot act on SIGTERM
    this.child!.kill('SIGTERM');
    if ((await within(this.exited.then(() => true), 15_000)) === undefined) await this.kill('SIGKILL');
  }
}

/**
 * Start the nodes one after the other (each waited for until it listens);
 * on a failure whatever started is stopped and the error carries the log.
 */
export async function startXcopydCluster(o: StartClusterOptions): Promise<XcopydCluster> {
  const n = o.nodes ?? 2;
  const lunSize = o.lunSize ?? 64 * 1024 * 1024;
  const dir = makeRunDir(o.name);
  const name = path.basename(dir).replace(/[^A-Za-z0-9_.-]/g, '-').slice(-60);
  const shared = path.join(dir, 'shared');
  fs.mkdirSync(shared, { recursive: true });
  const lunFiles = Array.from({ length: o.luns ?? 2 }, (_, i) => path.join(shared, `lun${i}.img`));
  for (const f of lunFiles) {
    fs.closeSync(fs.openSync(f, 'a'));
    fs.truncateSync(f, lunSize); // made here, not by the first node: no race between nodes creating it
  }
  const ports: number[] = [];
  while (ports.length < n) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const configFile = path.join(dir, 'cluster.yaml');
  fs.writeFileSync(
    configFile,
    clusterYaml({ name, portals: ports.map((p) => `127.0.0.1:${p}`), etcdEndpoints: o.etcdEndpoints, leaseTtlSeconds: o.leaseTtlSeconds ?? 2, lunFiles, lunSize, logLevel: o.logLevel ?? 'info' }),
  );
  const startTimeoutMs = o.startTimeoutMs ?? Number(process.env.XCOPYD_START_TIMEOUT_MS ?? 30_000);
  const nodes = ports.map((p, i) => new NodeProcess(`n${i}`, i, p, path.join(dir, `node-n${i}`), path.join(dir, `node-n${i}.log`), configFile, startTimeoutMs));
  const cluster: XcopydCluster = {
    name,
    iqn: CLUSTER_IQN,
    dir,
    configFile,
    nodes,
    lunFiles,
    lunSize,
    async stop() {
      await Promise.all(nodes.map((x) => x.stop()));
    },
  };
  try {
    for (const x of nodes) await x.start();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
