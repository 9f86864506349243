/**
 * Stopping the daemon (issue 2: "SIGINT/SIGTERM stop it cleanly: in-flight
 * commands finish or are aborted, files are synced"): Daemon.stop() with
 * live sessions and writes in flight resolves, closes the connections, and
 * what was acknowledged before it reads back after a restart on the same
 * data directory. The real command line is run once: SIGTERM by PID exits 0
 * after logging 'stopped'; --check-config accepts a good file and names the
 * bad key of a bad one.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Daemon } from '../../src/daemon';
import { validateConfig } from '../../src/config';
import type { Pdu } from '../../iscsi/pdu';
import { cdb, clearUnitAttentions, openSession, startCommand, waitClosed, waitForPdu } from '../support/initiator';

const REPO = path.resolve(__dirname, '../..');
const IQN = 'iqn.2026-11.org.xcopyd:default';
const R2T_ONLY = { InitialR2T: 'Yes', ImmediateData: 'No' };
const opcode = (p: Pdu): number => p.bhs[0] & 0x3f;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-shutdown-'));
  dirs.push(d);
  return d;
}

function daemonFor(dataDir: string): Daemon {
  const config = validateConfig({
    listen: ['127.0.0.1:0'],
    dataDir,
    logLevel: process.env.XCOPYD_TEST_LOG ?? 'silent',
    limits: { authFailureDelayMs: 10 },
    targets: [
      {
        iqn: IQN,
        luns: [
          { lun: 0, path: 'lun0.img', size: '32MiB' },
          { lun: 1, path: 'lun1.img', size: '32MiB' },
        ],
      },
    ],
  });
  return new Daemon(config, pino({ level: config.logLevel }));
}

describe('Daemon.stop()', () => {
  it('with live sessions and writes in flight: resolves, closes the connections, keeps every acknowledged write across a restart', async () => {
    const dataDir = tempDir();
    const first = daemonFor(dataDir);
    await first.start();
    const port = first.ports[0];

    const a = await openSession(port, { initiatorName: 'iqn.2026-11.org.xcopyd:stop-a' });
    await clearUnitAttentions(a, 0);
    await clearUnitAttentions(a, 1);
    const acked0 = crypto.randomBytes(128 * 512);
    const acked1 = crypto.randomBytes(16 * 512);
    expect((await a.command(0, cdb.write10(0, 128), { dataOut: acked0 })).status).toBe(0);
    expect((await a.command(1, cdb.write10(10, 16), { dataOut: acked1 })).status).toBe(0);

    // Session b: a write stopped at its first R2T, its data never sent.
    const b = await openSession(port, { initiatorName: 'iqn.2026-11.org.xcopyd:stop-b', keys: R2T_ONLY });
    await clearUnitAttentions(b, 0);
    const stalled = startCommand(b, 0, cdb.write10(5000, 64), { edtl: 64 * 512, write: true });
    expect(await waitForPdu(b, (p) => opcode(p) === 0x31 && p.bhs.readUInt32BE(16) === stalled.itt)).not.toBeNull();

    // Session a: a 4 MiB write whose data is still being sent when stop begins.
    const big = crypto.randomBytes(8192 * 512);
    const bigWrite = a.command(0, cdb.write10(8192, 8192), { dataOut: big, timeoutMs: 10000 }).catch(() => null);
    await new Promise((r) => setImmediate(r));

    await first.stop();
    expect(first.server!.sessions()).toEqual([]);
    expect(await waitClosed(a, 5000)).toBe(true);
    expect(await waitClosed(b, 5000)).toBe(true);
    const bigResult = await bigWrite;

    const second = daemonFor(dataDir);
    await second.start();
    try {
      const c = await openSession(second.ports[0], { initiatorName: 'iqn.2026-11.org.xcopyd:stop-c' });
      await clearUnitAttentions(c, 0);
      await clearUnitAttentions(c, 1);
      expect((await c.command(0, cdb.read10(0, 128), { read: acked0.length })).data.equals(acked0)).toBe(true);
      expect((await c.command(1, cdb.read10(10, 16), { read: acked1.length })).data.equals(acked1)).toBe(true);
      // The stalled write never had data: its blocks are as they were (never written: zeros).
      expect((await c.command(0, cdb.read10(5000, 64), { read: 64 * 512 })).data.equals(Buffer.alloc(64 * 512))).toBe(true);
      if (bigResult?.status === 0) {
        // Acknowledged before the stop: it must be there.
        expect((await c.command(0, cdb.read10(8192, 8192), { read: big.length })).data.equals(big)).toBe(true);
      }
      expect(await c.logout()).toBe(0);
      c.close();
    } finally {
      await second.stop();
    }
  });

  it('with a connection still in login: resolves and closes it', async () => {
    const d = daemonFor(tempDir());
    await d.start();
    const sock = net.connect({ host: '127.0.0.1', port: d.ports[0] });
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    sock.on('error', () => undefined);
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    await d.stop();
    await closed;
    expect(sock.destroyed).toBe(true);
  });
});

/** Run the CLI; resolves with its exit code and output (killed after `limitMs`). */
function runCli(args: string[], opts: { limitMs?: number; onStdout?: (all: string) => void } = {}): {
  child: ReturnType<typeof spawn>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
} {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'src/main.ts', ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    opts.onStdout?.(stdout);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const limit = setTimeout(() => child.kill('SIGKILL'), opts.limitMs ?? 25000);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => {
      clearTimeout(limit);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return { child, done };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe('the command line', () => {
  jest.setTimeout(60000);

  it('stops on SIGTERM with a session open: exit code 0, "stopped" logged', async () => {
    const port = await freePort();
    const dataDir = tempDir();
    let listening!: () => void;
    const up = new Promise<void>((r) => (listening = r));
    const { child, done } = runCli(['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
      onStdout: (all) => {
        if (all.includes('"msg":"listening"')) listening();
      },
    });
    await Promise.race([up, done]);
    if (child.exitCode !== null) {
      // Say why (a port taken between freePort() and the daemon's listen, a start-up error...).
      const r = await done;
      throw new Error(`the daemon exited with ${r.code} before listening:\n${r.stdout}\n${r.stderr}`);
    }

    const c = await openSession(port, { initiatorName: 'iqn.2026-11.org.xcopyd:cli' });
    await clearUnitAttentions(c, 0);
    const data = crypto.randomBytes(8 * 512);
    expect((await c.command(0, cdb.write10(0, 8), { dataOut: data })).status).toBe(0);

    process.kill(child.pid!, 'SIGTERM');
    const r = await done;
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
    expect(r.stdout).toContain('"msg":"stopped"');
    expect(await waitClosed(c, 5000)).toBe(true);
    expect(fs.existsSync(path.join(dataDir, 'lun0.img'))).toBe(true);
  });

  it('--check-config: exit 0 for a good file, non-zero with the path of the bad key for a bad one', async () => {
    const dir = tempDir();
    const good = path.join(dir, 'good.yaml');
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(
      good,
      ['listen: ["127.0.0.1:3260"]', 'dataDir: data', 'targets:', `  - iqn: ${IQN}`, '    luns:', '      - { lun: 0, path: lun0.img, size: 1GiB }', ''].join('\n'),
    );
    fs.writeFileSync(
      bad,
      [
        'listen: ["127.0.0.1:3260"]',
        'limits: { queueDepth: 0 }',
        'targets:',
        `  - iqn: ${IQN}`,
        '    luns:',
        '      - { lun: 0, path: lun0.img, size: 1GiB, blockSize: 1000 }',
        '',
      ].join('\n'),
    );
    const [ok, notOk] = await Promise.all([runCli(['--check-config', good]).done, runCli(['--check-config', bad]).done]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('valid');
    expect(notOk.code).not.toBe(0);
    expect(notOk.code).not.toBeNull();
    expect(notOk.stderr).toContain('limits.queueDepth');
    expect(notOk.stderr).toContain('targets.0.luns.0.blockSize');
  });
});
