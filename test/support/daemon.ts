/** Start an in-process daemon on a free loopback port with a temp data dir. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Daemon } from '../../src/daemon';
import { validateConfig, type Config } from '../../src/config';

export interface TestDaemon {
  daemon: Daemon;
  port: number;
  dataDir: string;
  iqn: string;
  stop(): Promise<void>;
}

export async function startTestDaemon(overrides: Record<string, unknown> = {}, lunSize = '64MiB'): Promise<TestDaemon> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-test-'));
  const iqn = 'iqn.2026-11.org.xcopyd:default';
  const config = validateConfig({
    listen: ['127.0.0.1:0'],
    dataDir,
    logLevel: process.env.XCOPYD_TEST_LOG ?? 'silent',
    limits: { authFailureDelayMs: 10 },
    targets: [
      {
        iqn,
        luns: [
          { lun: 0, path: 'lun0.img', size: lunSize },
          { lun: 1, path: 'lun1.img', size: lunSize },
        ],
      },
    ],
    ...overrides,
  });
  const daemon = new Daemon(config, pino({ level: config.logLevel }));
  await daemon.start();
  return {
    daemon,
    port: daemon.ports[0],
    dataDir,
    iqn,
    async stop() {
      await daemon.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A daemon started from a list of targets, with the config builder for reloads. */
export interface ConfiguredDaemon {
  daemon: Daemon;
  dir: string;
  port: number;
  /** The daemon's base configuration with `over` laid on top (for reload()). */
  config(over: Record<string, unknown>): Readonly<Config>;
  stop(): Promise<void>;
}

/**
 * Start an in-process daemon with `targets` (and top-level `extra` keys) on a
 * free loopback port and a temp data directory, which stop() removes.
 */
export async function startConfiguredDaemon(
  targets: unknown[],
  extra: Record<string, unknown> = {},
  log: pino.Logger = pino({ level: 'silent' }),
): Promise<ConfiguredDaemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-cfg-'));
  const base = { listen: ['127.0.0.1:0'], dataDir: dir, logLevel: log.level, limits: { authFailureDelayMs: 10 }, ...extra };
  const config = (over: Record<string, unknown>) => validateConfig({ ...base, ...over });
  const daemon = new Daemon(config({ targets }), log);
  await daemon.start();
  return {
    daemon,
    dir,
    port: daemon.ports[0],
    config,
    async stop() {
      await daemon.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Everything a spawned daemon writes (stdout and stderr, interleaved), and a wait for a string in it. */
export function captureOutput(child: ChildProcess): { text(): string; waitFor(s: string, ms?: number): Promise<void> } {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return {
    text: () => out,
    async waitFor(s: string, ms = 120000) {
      const until = Date.now() + ms;
      while (!out.includes(s)) {
        if (Date.now() > until || child.exitCode !== null) throw new Error(`never saw ${s}:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

// ---- a NOTIFY_SOCKET receiver (systemd's side of sd_notify), for test/sd-notify and test/service-unit ----

/** python3 binds the AF_UNIX datagram socket: Node cannot. */
export const NOTIFY_PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : undefined;

/** Prints one JSON line per datagram: its text, and for READY=1 whether the portal accepted a connection then. */
const NOTIFY_RECEIVER = `
import json, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
print(json.dumps({'listening': True}), flush=True)
while True:
    msg = s.recv(4096).decode()
    out = {'msg': msg}
    if 'READY=1' in msg.split('\\n'):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=2).close()
            out['portal'] = 'accepted'
        except OSError as e:
            out['portal'] = str(e)
    print(json.dumps(out), flush=True)
`;

export interface NotifyReceived {
  msg: string;
  portal?: string;
}

export async function notifyReceiver(addr: string, port: number): Promise<{ proc: ChildProcess; got(): NotifyReceived[] }> {
  const proc = spawn(NOTIFY_PYTHON!, ['-c', NOTIFY_RECEIVER, addr, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Array<NotifyReceived & { listening?: boolean }> = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) lines.push(JSON.parse(l));
  });
  const until = Date.now() + 10_000;
  while (!lines.some((l) => l.listening)) {
    if (Date.now() > until || proc.exitCode !== null) throw new Error('notify receiver did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  return { proc, got: () => lines.filter((l) => !l.listening) };
}
