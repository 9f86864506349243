/**
 * The command line (issue 6): `kill -HUP` with an invalid file is refused,
 * logged with the key paths, and the running configuration stays; a valid
 * one adds a LUN while the session runs verified I/O, none of which fails
 * (a REPORTED LUNS DATA HAS CHANGED unit attention is retried, as initiators
 * do); `xcopyd status --json` (and the human form) reach the daemon through
 * the control socket found from --config, and list a running background copy
 * with its progress.
 */
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { openSession, clearUnitAttentions, cdb } from '../support/initiator';
import { captureOutput, startTestDaemon } from '../support/daemon';
import type { FileStore } from '../../src/backing/file-store';
import { b2b, e4, lid4, xcopyCdb } from '../scsi/copy/helpers';
import { expectGood, pattern, writeBlocks } from '../odx/odx';

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
    const output = captureOutput(child);
    const { waitFor } = output;
    try {
      await waitFor('"msg":"control socket listening"');
      const c = await openSession(port, { initiatorName: 'iqn.2026-11.org.example:cli', targetName: IQN });
      await clearUnitAttentions(c, 0);

      // An invalid file: refused, every bad key named, the old configuration stays.
      fs.writeFileSync(file, yaml(port, dataDir, [lun0, '{ lun: 0, path: l1.img, size: 4MiB, blockSize: 1000 }']));
      process.kill(child.pid!, 'SIGHUP');
      await waitFor('reload refused');
      expect(output.text()).toContain('targets.0.luns.1.blockSize: blockSize must be 512 or 4096');
      expect(output.text()).toContain('targets.0.luns.1.lun: LUN 0 is configured twice'); // in the same report
      expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);

      // A valid one, while the session writes and reads back LUN 0 without pause: LUN 1 appears,
      // and no I/O fails. REPORTED LUNS DATA HAS CHANGED (6/3F/0E) is retried; nothing else is.
      let stop = false;
      let ios = 0;
      const failures: string[] = [];
      const retried: string[] = [];
      const sense = (r: { status: number; sense?: Buffer }) =>
        r.status === 2 && r.sense ? `${(r.sense[2] & 0xf).toString(16)}/${r.sense[12].toString(16)}/${r.sense[13].toString(16)}` : `status ${r.status}`;
      const io = (async () => {
        for (let lba = 0; !stop; lba = (lba + 8) % 8192) {
          const data = pattern(8 * 512, lba + ios);
          for (const [what, run] of [
            ['write', () => c.command(0, cdb.write10(lba, 8), { dataOut: data })],
            ['read', () => c.command(0, cdb.read10(lba, 8), { read: 8 * 512 })],
          ] as const) {
            let r = await run();
            if (r.status === 2 && (r.sense![2] & 0xf) === 6) {
              retried.push(sense(r));
              r = await run();
            }
            if (r.status !== 0) failures.push(`${what} ${lba}: ${sense(r)}`);
            else if (what === 'read' && !r.data.equals(data)) failures.push(`read ${lba}: wrong data`);
          }
          ios++;
        }
      })();
      const untilIos = async (n: number, ms = 60000) => {
        const until = Date.now() + ms;
        while (ios < n) {
          if (Date.now() > until) throw new Error(`I/O stalled at ${ios} (want ${n}): ${failures.join('; ')}`);
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      try {
        await untilIos(20);
        fs.writeFileSync(file, yaml(port, dataDir, [lun0, '{ lun: 1, path: l1.img, size: 4MiB }']));
        process.kill(child.pid!, 'SIGHUP');
        await waitFor('"msg":"configuration reloaded"');
        await untilIos(ios + 20);
      } finally {
        stop = true;
        await io;
      }
      expect(failures).toEqual([]);
      expect(retried.every((x) => x === '6/3f/e')).toBe(true);
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

describe('xcopyd status --json with a background copy running', () => {
  jest.setTimeout(300000);

  it('lists the copy, its list ID and its progress part way through', async () => {
    const d = await startTestDaemon({ logLevel: 'silent' }, '8MiB');
    try {
      const c = await openSession(d.port, { initiatorName: 'iqn.2026-11.org.example:cli-copy', targetName: d.iqn });
      for (const lun of [0, 1]) await clearUnitAttentions(c, lun);
      await writeBlocks(c, 0, 0, pattern(2048 * 512, 5));
      // Four segments; the data mover is held in the second one, so one quarter is done.
      const store = d.daemon.targets()[0].device.logicalUnit(0)!.store as FileStore;
      const orig = store.copyRange.bind(store);
      let calls = 0;
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let held!: () => void;
      const holding = new Promise<void>((r) => (held = r));
      store.copyRange = async (...args: Parameters<FileStore['copyRange']>) => {
        if (++calls === 2) {
          held();
          await gate;
        }
        return orig(...args);
      };
      const naa = (n: number) => d.daemon.targets()[0].device.logicalUnit(n)!.identity.naa;
      const segs = [0, 1, 2, 3].map((i) => b2b(0, 1, 512, i * 512, i * 512));
      const p = lid4([e4(naa(0)), e4(naa(1))], segs, { listId: 77, immed: true });
      expectGood(await c.command(0, xcopyCdb(1, p.length), { dataOut: p }), 'EXTENDED COPY(LID4) IMMED');
      await holding;
      try {
        const json = await cli(['status', '--json', '--data-dir', d.dataDir]);
        expect(json.stderr).toBe('');
        expect(json.code).toBe(0);
        const report = JSON.parse(json.stdout);
        expect(report.copies).toHaveLength(1);
        expect(report.copies[0]).toMatchObject({
          target: d.iqn, lun: 0, listId: 77, background: true, state: 'running',
          bytesDone: 512 * 512, bytesTotal: 2048 * 512, percent: 25,
        });
        const human = await cli(['status', '--socket', path.join(d.dataDir, 'control.sock')]);
        expect(human.stdout).toContain('EXTENDED COPY(LID4) list 77');
        expect(human.stdout).toMatch(/\| 25%/);
      } finally {
        release();
        store.copyRange = orig;
      }
      for (let i = 0; i < 500 && d.daemon.targets()[0].device.copyManager.running().length; i++) await new Promise((r) => setTimeout(r, 10));
      expect(d.daemon.targets()[0].device.copyManager.running()).toEqual([]);
      c.close();
    } finally {
      await d.stop();
    }
  });
});
