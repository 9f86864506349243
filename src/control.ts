/**
 * The control socket: a Unix socket in the data directory (mode 0600, the
 * directory itself 0700) through which `xcopyd status` asks the running
 * daemon. Protocol: the client sends one JSON line {"cmd":"status"}; the
 * daemon answers one JSON line {"ok":true,"status":{...}} or
 * {"ok":false,"error":"..."} and closes. Nothing here can change the daemon.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { StatusReport } from './status';

export interface ControlHandlers {
  status(): StatusReport;
}

const MAX_REQUEST_BYTES = 4096;

export class ControlServer {
  private server: net.Server | null = null;

  constructor(
    readonly socketPath: string,
    private readonly log: Logger,
    private readonly handlers: ControlHandlers,
  ) {}

  async listen(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o700 });
    await this.removeStale();
    const server = net.createServer((sock) => this.serve(sock));
    // The socket is created with the process umask: tighten it for the bind, restore after.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(umask);
    }
    fs.chmodSync(this.socketPath, 0o600);
    this.server = server;
    this.log.info({ socket: this.socketPath }, 'control socket listening');
  }

  /** A socket file nobody answers on is left over from a crash: remove it. One that answers means another daemon. */
  private async removeStale(): Promise<void> {
    if (!fs.existsSync(this.socketPath)) return;
    const alive = await new Promise<boolean>((resolve) => {
      const c = net.connect(this.socketPath);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (alive) throw new Error(`${this.socketPath}: another xcopyd is running with this data directory`);
    fs.unlinkSync(this.socketPath);
  }

  private serve(sock: net.Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(5000, () => sock.destroy());
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) return void sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      sock.removeAllListeners('data');
      let reply: unknown;
      try {
        const req = JSON.parse(buf.slice(0, nl)) as { cmd?: unknown };
        if (req.cmd === 'status') reply = { ok: true, status: this.handlers.status() };
        else reply = { ok: false, error: `unknown command ${JSON.stringify(req.cmd)}` };
      } catch (err) {
        this.log.debug({ err }, 'bad control request');
        reply = { ok: false, error: 'bad request' };
      }
      sock.end(JSON.stringify(reply) + '\n');
    });
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    await new Promise<void>((r) => s.close(() => r()));
    fs.rmSync(this.socketPath, { force: true });
  }
}

/** Client side: send one request and read the answer. */
export function controlRequest(socketPath: string, cmd: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`${socketPath}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.once('connect', () => c.write(JSON.stringify({ cmd }) + '\n'));
    c.on('data', (d: string) => (buf += d));
    c.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    c.once('end', () => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(buf) as { ok: boolean; error?: string; status?: unknown };
        if (!r.ok) reject(new Error(r.error ?? 'request failed'));
        else resolve(r.status);
      } catch {
        reject(new Error(`${socketPath}: unreadable answer`));
      }
    });
  });
}
