/**
 * sd_notify for the unit's Type=notify (issue 13): the real daemon (src/main.ts in a
 * child process) with $NOTIFY_SOCKET pointing at a datagram socket of the test's
 * (python3 binds it: Node cannot). The receiver tries the portal the moment READY=1
 * arrives, so READY=1 before the portal accepts connections fails the test;
 * WATCHDOG=1 comes every half WATCHDOG_USEC, and only for WATCHDOG_PID; SIGHUP is
 * RELOADING=1 (with MONOTONIC_USEC) then READY=1; SIGTERM is STOPPING=1 before exit 0.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { notifySocketAddress } from '../src/sd-notify';
import { NOTIFY_PYTHON as PYTHON, captureOutput, notifyReceiver as receiver } from './support/daemon';
import { describeIf, freePort, missingPrerequisite } from './interop/harness';

const REPO = path.join(__dirname, '..');

jest.setTimeout(120_000);

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('notifySocketAddress', () => {
  it('encodes a path NUL-terminated and an abstract name after a NUL, and refuses anything else', () => {
    const p = notifySocketAddress('/run/systemd/notify');
    expect(p.addr.readUInt16LE(0)).toBe(1);
    expect(p.addr.subarray(2, p.length).toString('latin1')).toBe('/run/systemd/notify\0');
    const a = notifySocketAddress('@xcopyd/notify');
    expect(a.addr.subarray(2, a.length).toString('latin1')).toBe('\0xcopyd/notify');
    expect(() => notifySocketAddress('relative/path')).toThrow(/absolute path/);
    expect(() => notifySocketAddress('/' + 'x'.repeat(107))).toThrow(/longer than/);
    expect(notifySocketAddress('/' + 'x'.repeat(106)).length).toBe(110);
  });
});

describeIf(!!PYTHON || missingPrerequisite("'python3' not found (the test's NOTIFY_SOCKET receiver)", 'apt-get install -y python3'))('the daemon under Type=notify', () => {
  const dirs: string[] = [];
  const procs: ChildProcess[] = [];
  afterAll(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  async function run(addr: string, env: Record<string, string>) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-notify-'));
    dirs.push(dir);
    const port = await freePort();
    const rx = await receiver(addr.startsWith('@') ? addr : path.join(dir, addr), port);
    procs.push(rx.proc);
    const config = path.join(dir, 'xcopyd.yaml');
    fs.writeFileSync(config, ['targets:', '  - iqn: iqn.2026-11.org.xcopyd:notify', '    luns:', '      - { lun: 0, path: l0.img, size: 1MiB }', ''].join('\n'));
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', 'src/main.ts', '--config', config, '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'), '--log-format', 'json'],
      { cwd: REPO, env: { ...process.env, NOTIFY_SOCKET: addr.startsWith('@') ? addr : path.join(dir, addr), ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    procs.push(child);
    const out = captureOutput(child);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { rx, child, out, exited, config };
  }

  it('READY=1 once the portal accepts connections, WATCHDOG=1 pings, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM', async () => {
    const { rx, child, out, exited, config } = await run('notify.sock', { WATCHDOG_USEC: '300000' });
    const msgs = () => rx.got().map((r) => r.msg.split('\n')[0]);
    await until('READY=1', () => msgs().includes('READY=1'));
    const ready = rx.got().find((r) => r.msg.startsWith('READY=1'))!;
    expect(ready.portal).toBe('accepted');
    expect(ready.msg).toMatch(/\nSTATUS=serving on 127\.0\.0\.1:\d+$/);
    await out.waitFor('"msg":"control socket listening"', 10_000); // the last thing start() does (logs are asynchronous)
    // 300 ms watchdog: a ping every 150 ms; wait for three.
    await until('three WATCHDOG=1', () => msgs().filter((m) => m === 'WATCHDOG=1').length >= 3, 10_000);
    fs.appendFileSync(config, '      - { lun: 1, path: l1.img, size: 1MiB }\n');
    child.kill('SIGHUP');
    await until('READY=1 after the reload', () => msgs().filter((m) => m === 'READY=1').length === 2);
    const reload = rx.got().filter((r) => !r.msg.startsWith('WATCHDOG'));
    expect(reload.map((r) => r.msg.split('\n')[0])).toEqual(['READY=1', 'RELOADING=1', 'READY=1']);
    expect(reload[1].msg).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    await out.waitFor('"msg":"configuration reloaded"', 10_000); // logged before READY=1 is sent, but the pipe is asynchronous
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await until('STOPPING=1', () => msgs().includes('STOPPING=1'), 5_000);
    expect(rx.got().filter((r) => !r.msg.startsWith('WATCHDOG')).map((r) => r.msg.split('\n')[0])).toEqual(['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
    rx.proc.kill();
  });

  it('an abstract NOTIFY_SOCKET (@name) works the same; no watchdog pings for another WATCHDOG_PID', async () => {
    const name = `@xcopyd-notify-${crypto.randomBytes(6).toString('hex')}`;
    const { rx, child, exited } = await run(name, { WATCHDOG_USEC: '100000', WATCHDOG_PID: '1' });
    await until('READY=1', () => rx.got().some((r) => r.msg.startsWith('READY=1')));
    expect(rx.got()[0].portal).toBe('accepted');
    await new Promise((r) => setTimeout(r, 400)); // four intervals of someone else's watchdog
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await until('STOPPING=1', () => rx.got().some((r) => r.msg.startsWith('STOPPING=1')), 5_000);
    expect(rx.got().map((r) => r.msg.split('\n')[0])).toEqual(['READY=1', 'STOPPING=1']);
    rx.proc.kill();
  });

  it('SIGTERM the moment the portal accepts connections (systemd stopping a unit still starting) is a clean stop: STOPPING=1, exit 0', async () => {
    const { rx, child, out, exited } = await run('early.sock', {});
    const listen = child.spawnargs[child.spawnargs.indexOf('--listen') + 1];
    const [host, p] = listen.split(':');
    // Poll the portal; SIGTERM at the first accepted connection.
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(Number(p), host, () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
      if (ok || child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGTERM');
    const code = await exited;
    expect([code, child.signalCode, out.text().includes('"msg":"stopped"')]).toEqual([0, null, true]);
    await until('STOPPING=1', () => rx.got().some((r) => r.msg.startsWith('STOPPING=1')), 5_000);
    rx.proc.kill();
  });

  it('without NOTIFY_SOCKET nothing is sent and nothing fails', () => {
    // Every other test that spawns the daemon runs it so; here only the module's contract.
    const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', "console.log(require('./src/sd-notify').createNotifier({}) === undefined)"], { cwd: REPO });
    expect(r.stdout.toString().trim()).toBe('true');
  });
});
