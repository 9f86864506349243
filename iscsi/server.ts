/**
 * The iSCSI portal: accepts TCP connections, owns the session registry, the
 * target list and one coarse shared timer (NOP-In pings, login timeouts)
 * instead of a timer per connection.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { Connection } from './connection';
import { Session, SessionRegistry, type SessionConnection } from './session';
import { DEFAULT_LIMITS, IscsiLimits, TargetEntry } from './types';

export interface IscsiServerOptions {
  log: Logger;
  targets: TargetEntry[];
  limits?: Partial<IscsiLimits>;
  /** CHAP required for discovery sessions, if set. */
  discoveryChap?: TargetEntry['chap'];
  /** Told of every refused login (metrics); the login code already logs it. */
  onLoginFailure?: (statusClass: number, statusDetail: number) => void;
}

/** What connections see of the server. */
export interface ServerContext {
  readonly log: Logger;
  readonly limits: IscsiLimits;
  readonly registry: SessionRegistry;
  readonly discoveryChap?: TargetEntry['chap'];
  findTarget(name: string): TargetEntry | undefined;
  targets(): TargetEntry[];
  connectionClosed(conn: Connection): void;
  sessionEstablished(session: Session, conn: SessionConnection): void;
  dropTargetSessions(targetName: string, why: string): void;
  endSession(session: Session): void;
  /** Number of connections not yet in full feature phase plus live ones (limits). */
  connectionCount(): number;
  /** A login was refused with this status (metrics). */
  loginFailed?(statusClass: number, statusDetail: number): void;
}

export class IscsiServer implements ServerContext {
  readonly log: Logger;
  readonly limits: IscsiLimits;
  readonly registry = new SessionRegistry();
  readonly discoveryChap?: TargetEntry['chap'];
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<Connection>();
  private targetList: TargetEntry[];
  private timer: NodeJS.Timeout | null = null;
  private nextConnId = 1;
  onLoginFailure: IscsiServerOptions['onLoginFailure'];

  constructor(opts: IscsiServerOptions) {
    this.onLoginFailure = opts.onLoginFailure;
    this.log = opts.log;
    const maxSessions = opts.limits?.maxSessions ?? DEFAULT_LIMITS.maxSessions;
    this.limits = { ...DEFAULT_LIMITS, maxConnections: 2 * maxSessions, ...(opts.limits ?? {}) };
    this.targetList = opts.targets;
    this.discoveryChap = opts.discoveryChap;
  }

  // ---- ServerContext ------------------------------------------------------

  findTarget(name: string): TargetEntry | undefined {
    const n = name.toLowerCase();
    return this.targetList.find((t) => t.name.toLowerCase() === n);
  }

  targets(): TargetEntry[] {
    return this.targetList;
  }

  /** Replace the target list (configuration reload). */
  setTargets(targets: TargetEntry[]): void {
    this.targetList = targets;
  }

  loginFailed(statusClass: number, statusDetail: number): void {
    this.onLoginFailure?.(statusClass, statusDetail);
  }

  connectionCount(): number {
    return this.connections.size;
  }

  sessionEstablished(session: Session, conn: SessionConnection): void {
    session.connections.add(conn);
  }

  connectionClosed(conn: Connection): void {
    this.connections.delete(conn);
    const s = conn.session;
    if (!s) return;
    s.connections.delete(conn);
    if (s.connections.size === 0 && !s.closed) this.endSession(s);
  }

  dropTargetSessions(targetName: string, why: string): void {
    for (const s of this.registry.all()) {
      if (s.target?.name === targetName) for (const c of s.connections) void c.shutdown(why);
    }
  }

  /** Session over: its nexus goes away (reservations released, UA queues dropped). */
  endSession(s: Session): void {
    s.closed = true;
    s.clearHeld();
    this.registry.remove(s);
    if (s.nexus && s.target) s.target.device.detachNexus(s.nexus);
    s.log.info({ tsih: s.tsih }, 'session ended');
  }

  // ---- lifecycle ----------------------------------------------------------

  /** Listen on "host:port" (IPv6 as [addr]:port). Resolves with the bound port. */
  listen(hostPort: string): Promise<number> {
    const { host, port } = parseHostPort(hostPort);
    const server = net.createServer((sock) => this.accept(sock));
    this.servers.push(server);
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), 1000);
      this.timer.unref();
    }
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        const addr = server.address();
        const bound = typeof addr === 'object' && addr ? addr.port : port;
        this.log.info({ host, port: bound }, 'listening');
        resolve(bound);
      });
    });
  }

  private accept(sock: net.Socket): void {
    if (this.connections.size >= this.limits.maxConnections) {
      this.log.warn({ peer: sock.remoteAddress }, 'connection limit reached: refusing');
      sock.destroy();
      return;
    }
    // No PDU has arrived yet, so the initiator is known only by its address.
    let fromPeer = 0;
    for (const c of this.connections) if (c.socket.remoteAddress === sock.remoteAddress) fromPeer++;
    if (fromPeer >= this.limits.maxConnectionsPerAddress) {
      this.log.warn({ peer: sock.remoteAddress }, 'per-address connection limit reached: refusing');
      sock.destroy();
      return;
    }
    const conn = new Connection(sock, this, this.nextConnId++);
    this.connections.add(conn);
  }

  private tick(): void {
    const now = Date.now();
    for (const c of this.connections) {
      if (c.state === 'login' && now - c.openedAt > this.limits.loginTimeoutMs) {
        c.log.warn('login timeout');
        c.drop('login timeout');
        continue;
      }
      c.tick(now);
    }
  }

  /** Stop listening, end every connection (in-flight commands are aborted), wait for them. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // net.Server.close() stops accepting at once but calls back only when every
    // accepted socket has ended: end the connections before waiting for it.
    const listening = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    await Promise.all([...this.connections].map((c) => c.shutdown('server shutdown')));
    await Promise.all(listening);
  }

  /** Live sessions (status, tests). */
  sessions(): Session[] {
    return [...this.registry.all()];
  }
}

export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw new Error(`not HOST:PORT: ${s}`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port in ${s}`);
  return { host: m[1], port };
}
