/**
 * The command line (issue 6): `kill -HUP` with an invalid file is refused,
 * logged with the key paths, and the running configuration stays; a valid
 * one adds a LUN under a live session; `xcopyd status --json` (and the human
 * form) reach the daemon through the control socket found from --config.
 */
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { openSession, clearUnitAttentions, cdb } from '../support/initiator';

const REPO = path.join(__dirname, '..', '..');
const IQN = 'iqn.2026-11.org.xcopyd:cli-ops';

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

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['-r', 'ts-node/register/transpile-only', 'src/main.ts', ...args], { cwd: REPO, timeout: 120000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function yaml(port: number, dataDir: string, luns: string[], extra = ''): string {
  return [`listen: ["127.0.0.1:${port}"]`, `dataDir: ${dataDir}`, extra, 'targets:', `  - iqn: ${IQN}`, '    luns:', ...luns.map((l) => `      - ${l}`), ''].join('\n');
}

describe('xcopyd with SIGHUP and status', () => {
  jest.setTimeout(300000);

  it('refuses an invalid reload with key paths, applies a valid one, and answers status', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-cli-'));
    const dataDir = path.join(dir, 'data');
    const file = path.join(dir, 'xcopyd.yaml');
    const port = await freePort();
    const lun0 = '{ lun: 0, path: l0.img, size: 4MiB }';
    fs.writeFileSync(file, yaml(port, dataDir, [lun0]));
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'src/main.ts', '--config', file], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = async (s: string, ms = 120000) => {
      const until = Date.now() + ms;
      while (!out.includes(s)) {
        if (Date.now() > until || child.exitCode !== null) throw new Error(`never saw ${s}:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await waitFor('"msg":"control socket listening"');
      const c = await openSession(port, { initiatorName: 'iqn.2026-11.org.example:cli', targetName: IQN });
      await clearUnitAttentions(c, 0);

      // An invalid file: refused, every bad key named, the old configuration stays.
      fs.writeFileSync(file, yaml(port, dataDir, [lun0, '{ lun: 0, path: l1.img, size: 4MiB, blockSize: 1000 }']));
      process.kill(child.pid!, 'SIGHUP');
      await waitFor('reload refused');
      expect(out).toContain('targets.0.luns.1.blockSize: blockSize must be 512 or 4096');
      expect(out).toContain('targets.0.luns.1.lun: LUN 0 is configured twice'); // in the same report
      expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);

      // A valid one: LUN 1 appears under the live session.
      fs.writeFileSync(file, yaml(port, dataDir, [lun0, '{ lun: 1, path: l1.img, size: 4MiB }']));
      process.kill(child.pid!, 'SIGHUP');
      await waitFor('"msg":"configuration reloaded"');
      await clearUnitAttentions(c, 1);
      expect((await c.command(1, cdb.read10(0, 1), { read: 512 })).status).toBe(0);

      const json = await cli(['status', '--json', '--config', file]);
      expect(json.code).toBe(0);
      const report = JSON.parse(json.stdout);
      expect(report.luns.map((l: { lun: number }) => l.lun)).toEqual([0, 1]);
      expect(report.sessions).toHaveLength(1);
      expect(report.sessions[0].initiator).toBe('iqn.2026-11.org.example:cli');
      const human = await cli(['status', '--socket', path.join(dataDir, 'control.sock')]);
      expect(human.code).toBe(0);
      expect(human.stdout).toContain('Sessions (1)');
      expect(human.stdout).toContain('LUNs (2)');
      c.close();

      const nobody = await cli(['status', '--socket', path.join(dir, 'nope.sock')]);
      expect(nobody.code).toBe(1);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
