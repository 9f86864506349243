/**
 * Running it for real (issue 6), in process: configuration reload keeps the
 * sessions it does not affect, `status` over the control socket, the
 * Prometheus scrape, and CHAP secrets kept out of the logs.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Writable } from 'node:stream';
import { controlRequest } from '../../src/control';
import { renderStatus, type StatusReport } from '../../src/status';
import type { FileStore } from '../../src/backing/file-store';
import { TestInitiator, cdb, clearUnitAttentions, openSession } from '../support/initiator';
import { startConfiguredDaemon as start, type ConfiguredDaemon } from '../support/daemon';
import { b2b, e4, lid1, lid4, xcopyCdb } from '../scsi/copy/helpers';
import { SENSE, expectGood, expectSense, pattern, readBlocks, tokenFor, writeBlocks, writeUsingToken } from '../odx/odx';

const T = 'iqn.2026-11.org.xcopyd:ops';
const T2 = 'iqn.2026-11.org.xcopyd:ops-added';
const ALICE = 'iqn.2026-11.org.example:alice';
const BOB = 'iqn.2026-11.org.example:bob';
const BS = 512;

async function login(port: number, initiatorName: string, targetName = T): Promise<TestInitiator> {
  const c = await openSession(port, { initiatorName, targetName });
  for (const lun of [0, 1]) await clearUnitAttentions(c, lun).catch(() => undefined);
  return c;
}

function senseTriple(r: { status: number; sense?: Buffer }): string {
  return r.status === 2 && r.sense ? `${(r.sense[2] & 0xf).toString(16)}/${r.sense[12].toString(16)}/${r.sense[13].toString(16)}` : `status ${r.status}`;
}

async function reportLuns(c: TestInitiator): Promise<number[]> {
  const b = Buffer.alloc(12);
  b[0] = 0xa0;
  b.writeUInt32BE(4096, 6);
  const r = await c.command(0, b, { read: 4096 });
  expect(r.status).toBe(0);
  return Array.from({ length: r.data.readUInt32BE(0) / 8 }, (_, i) => r.data.readUInt16BE(8 + 8 * i) & 0x3fff);
}

describe('SIGHUP reload', () => {
  let d: ConfiguredDaemon;
  const lun0 = { lun: 0, path: 'l0.img', size: '8MiB' };
  const lun1 = { lun: 1, path: 'l1.img', size: '8MiB' };

  beforeAll(async () => {
    d = await start([{ iqn: T, acls: [{ initiator: ALICE }, { initiator: BOB, luns: [0] }], luns: [lun0] }]);
  });
  afterAll(async () => {
    await d.stop();
  });

  it('adds a LUN, an ACL mapping and a target while a session runs I/O: no I/O fails, the session stays', async () => {
    const alice = await login(d.port, ALICE);
    const bob = await login(d.port, BOB);
    let stop = false;
    let ios = 0;
    const failures: string[] = [];
    const retried: string[] = [];
    // Alice writes and reads back continuously; a unit attention (REPORTED LUNS DATA HAS
    // CHANGED) is retried, as every initiator does; anything else is a failure.
    const io = (async () => {
      let lba = 0;
      while (!stop) {
        const data = pattern(8 * BS, lba);
        for (const [what, run] of [
          ['write', () => alice.command(0, cdb.write10(lba, 8), { dataOut: data })],
          ['read', () => alice.command(0, cdb.read10(lba, 8), { read: 8 * BS })],
        ] as const) {
          let r = await run();
          if (r.status === 2 && (r.sense![2] & 0xf) === 6) {
            retried.push(senseTriple(r));
            r = await run();
          }
          if (r.status !== 0) failures.push(`${what} ${lba}: ${senseTriple(r)}`);
          else if (what === 'read' && !r.data.equals(data)) failures.push(`read ${lba}: wrong data`);
        }
        ios++;
        lba = (lba + 8) % 4096;
      }
    })();
    while (ios < 5) await new Promise((r) => setTimeout(r, 5));
    const summary = await d.daemon.reload(
      d.config({
        targets: [
          { iqn: T, acls: [{ initiator: ALICE }, { initiator: BOB, luns: [0, { lun: 5, targetLun: 1 }] }], luns: [lun0, lun1] },
          { iqn: T2, luns: [{ lun: 0, path: 'n0.img', size: '4MiB' }] },
        ],
      }),
    );
    const at = ios;
    while (ios < at + 5) await new Promise((r) => setTimeout(r, 5));
    stop = true;
    await io;
    expect(failures).toEqual([]);
    expect(retried.every((s) => s === '6/3f/e')).toBe(true);
    expect(summary).toMatchObject({ lunsAdded: [`${T}/1`], targetsAdded: [T2], sessionsDropped: 0, needsRestart: [] });
    expect(await reportLuns(alice)).toEqual([0, 1]);
    // Bob's session survived and now sees the new LU as his LUN 5.
    expect(senseTriple(await bob.command(0, cdb.testUnitReady()))).toBe('6/3f/e');
    expect(await reportLuns(bob)).toEqual([0, 5]);
    const data = pattern(4 * BS, 9);
    expect(senseTriple(await alice.command(1, cdb.testUnitReady()))).toBe('6/29/0'); // a new LU: power on, reset, then 3F/0E
    await clearUnitAttentions(alice, 1);
    await writeBlocks(alice, 1, 0, data);
    await clearUnitAttentions(bob, 5);
    expect((await readBlocks(bob, 5, 0, 4)).equals(data)).toBe(true);
    const other = await login(d.port, ALICE, T2);
    other.close();
    alice.close();
    bob.close();
  });

  it('removing an ACL entry ends that initiator\'s session only; removing a LUN takes it away from the others', async () => {
    const alice = await login(d.port, ALICE);
    const bob = await login(d.port, BOB);
    const summary = await d.daemon.reload(d.config({ targets: [{ iqn: T, acls: [{ initiator: ALICE }], luns: [lun0] }] }));
    expect(summary).toMatchObject({ lunsRemoved: [`${T}/1`], targetsRemoved: [T2] });
    expect(summary.sessionsDropped).toBeGreaterThanOrEqual(1); // bob, and any session on the removed target
    expect(await waitClosedOrTimeout(bob)).toBe(true);
    const r = await alice.command(0, cdb.testUnitReady());
    expect(senseTriple(r)).toBe('6/3f/e');
    expect(await reportLuns(alice)).toEqual([0]);
    expect(senseTriple(await alice.command(1, cdb.read10(0, 1), { read: BS }))).toBe('5/25/0');
    const refused = await TestInitiator.connect(d.port);
    expect((await refused.login({ initiatorName: BOB, targetName: T })).statusDetail).toBe(2);
    refused.close();
    alice.close();
  });

  it('a resized LUN raises CAPACITY DATA HAS CHANGED and cancels its ROD tokens', async () => {
    const alice = await login(d.port, ALICE);
    const token = await tokenFor(alice, 0, 1, [[0, 8]]);
    await d.daemon.reload(d.config({ targets: [{ iqn: T, acls: [{ initiator: ALICE }], luns: [{ ...lun0, size: '16MiB' }] }] }));
    expect(senseTriple(await alice.command(0, cdb.testUnitReady()))).toBe('6/2a/9');
    const cap = await alice.command(0, cdb.readCapacity16(), { read: 32 });
    expect(cap.data.readBigUInt64BE(0) + 1n).toBe(BigInt((16 * 1024 * 1024) / BS));
    expectSense(await writeUsingToken(alice, 0, 2, token, [[100, 8]]), SENSE.TOKEN_CANCELLED, 'token after resize');
    // Shrinking is refused before anything changes, with the key's path.
    await expect(
      d.daemon.reload(d.config({ targets: [{ iqn: T, acls: [{ initiator: ALICE }, { initiator: BOB }], luns: [{ ...lun0, size: '4MiB' }] }] })),
    ).rejects.toThrow('targets.0.luns.0.size: shrinking a LUN');
    expect(d.daemon.targets()[0].access.current.mayLogin(BOB)).toBe(false);
    expect((await alice.command(0, cdb.testUnitReady())).status).toBe(0);
    alice.close();
  });
});

async function waitClosedOrTimeout(c: TestInitiator, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!c.closed && Date.now() < until) {
    await c.next(100);
  }
  return c.closed;
}

describe('status over the control socket', () => {
  let d: ConfiguredDaemon;
  beforeAll(async () => {
    d = await start([
      { iqn: T, luns: [{ lun: 0, path: 's0.img', size: '8MiB' }, { lun: 1, path: 's1.img', size: '8MiB' }] },
    ]);
  });
  afterAll(async () => {
    await d.stop();
  });

  it('is a 0600 socket in the data directory; lists sessions, LUNs, a running background copy with its progress, live tokens', async () => {
    const sock = d.daemon.config.controlSocket;
    expect(path.dirname(sock)).toBe(d.dir);
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    const c = await login(d.port, ALICE);
    await writeBlocks(c, 0, 0, pattern(2048 * BS, 3));
    const token = await tokenFor(c, 0, 9, [[0, 16], [100, 8]]);
    expect(token.length).toBe(512);
    // Hold the copy's data mover so it stays running while status is asked.
    const store = d.daemon.targets()[0].device.logicalUnit(0)!.store as FileStore;
    const orig = store.copyRange.bind(store);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inMover = new Promise<void>((r) => (entered = r));
    store.copyRange = async (...args: Parameters<FileStore['copyRange']>) => {
      entered();
      await gate;
      return orig(...args);
    };
    const naa0 = d.daemon.targets()[0].device.logicalUnit(0)!.identity.naa;
    const naa1 = d.daemon.targets()[0].device.logicalUnit(1)!.identity.naa;
    const p = lid4([e4(naa0), e4(naa1)], [b2b(0, 1, 2048, 0, 0)], { listId: 42, immed: true });
    expectGood(await c.command(0, xcopyCdb(1, p.length), { dataOut: p }), 'EXTENDED COPY(LID4) IMMED');
    await inMover;

    const report = (await controlRequest(sock, 'status')) as StatusReport;
    expect(report.sessions).toHaveLength(1);
    expect(report.sessions[0]).toMatchObject({ initiator: ALICE, target: T, type: 'Normal', commandsInFlight: 0 });
    expect(report.sessions[0].params).toHaveProperty('maxBurstLength');
    expect(report.luns.map((l) => [l.target, l.lun, l.bytes, l.product])).toEqual([
      [T, 0, 8 * 1024 * 1024, 'xcopyd disk'],
      [T, 1, 8 * 1024 * 1024, 'xcopyd disk'],
    ]);
    expect(report.copies).toHaveLength(1);
    expect(report.copies[0]).toMatchObject({ target: T, lun: 0, listId: 42, background: true, state: 'running', bytesTotal: 2048 * BS });
    expect(report.copies[0].percent).toBeGreaterThanOrEqual(0);
    expect(report.copies[0].percent).toBeLessThan(100);
    expect(report.tokens).toHaveLength(1);
    expect(report.tokens[0]).toMatchObject({ target: T, lun: 0, bytes: 24 * BS, ranges: [{ lba: 0, blocks: 16 }, { lba: 100, blocks: 8 }] });
    expect(Date.parse(report.tokens[0].expiresAt)).toBeGreaterThan(Date.now());

    // The human rendering: tables and one progress bar per copy.
    let text = '';
    const out = new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    renderStatus(report, out);
    expect(text).toContain('Sessions (1)');
    expect(text).toContain(ALICE);
    expect(text).toContain('EXTENDED COPY(LID4) list 42');
    expect(text).toMatch(/\|[█░]{30}\| \d+%/);
    expect(text).toContain('ROD tokens (1)');
    expect(text).toContain('0+16,100+8');

    release();
    store.copyRange = orig;
    for (let i = 0; i < 200 && d.daemon.targets()[0].device.copyManager.running().length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(((await controlRequest(sock, 'status')) as StatusReport).copies).toEqual([]);
    c.close();
  });
});

/** Scrape and parse the text exposition into "name{labels}" -> value. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toContain('text/plain');
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

describe('Prometheus metrics', () => {
  it('are off by default: no endpoint, no instrumentation between transport and device', async () => {
    const d = await start([{ iqn: T, luns: [{ lun: 0, path: 'm0.img', size: '1MiB' }] }]);
    expect(d.daemon.metrics).toBeNull();
    const lt = d.daemon.targets()[0];
    expect(lt.entry.device).toBe(lt.device);
    expect((lt.device.logicalUnit(0)!.store as FileStore).onCopied).toBeUndefined();
    await d.stop();
  });

  it('scrape parses; commands, bytes, copy bytes by method, copy outcomes, tokens, sessions, login failures move', async () => {
    const d = await start(
      [{ iqn: T, acls: [{ initiator: ALICE }], luns: [{ lun: 0, path: 'm0.img', size: '8MiB' }, { lun: 1, path: 'm1.img', size: '8MiB' }] }],
      { metrics: { listen: '127.0.0.1:0' } },
    );
    try {
      const port = d.daemon.metrics!.address!.port;
      const before = await scrape(port);
      const copyBytes = (m: Map<string, number>) =>
        ['offloaded', 'cloned', 'buffered', 'holes'].reduce((n, k) => n + (m.get(`xcopyd_copy_bytes_total{method="${k}"}`) ?? 0), 0);
      expect(copyBytes(before)).toBe(0);

      const c = await login(d.port, ALICE);
      const refused = await TestInitiator.connect(d.port);
      await refused.login({ initiatorName: BOB, targetName: T });
      refused.close();
      const data = pattern(256 * BS, 5);
      await writeBlocks(c, 0, 0, data); // WRITE(16)
      const r = await c.command(0, cdb.read10(0, 64), { read: 64 * BS });
      expect(r.status).toBe(0);
      const lu = (n: number) => d.daemon.targets()[0].device.logicalUnit(n)!.identity.naa;
      const p = lid1([e4(lu(0)), e4(lu(1))], [b2b(0, 1, 256, 0, 0)]);
      expectGood(await c.command(0, xcopyCdb(0, p.length), { dataOut: p }), 'EXTENDED COPY');
      const token = await tokenFor(c, 0, 3, [[0, 16]]);
      expectGood(await writeUsingToken(c, 1, 4, token, [[1000, 16]]), 'WRITE USING TOKEN');

      const after = await scrape(port);
      expect(after.get('xcopyd_scsi_commands_total{opcode="write_16",result="good"}')).toBeGreaterThanOrEqual(1);
      expect(after.get('xcopyd_scsi_commands_total{opcode="read_10",result="good"}')).toBe(1);
      expect([...after.keys()].some((k) => k.startsWith('xcopyd_scsi_commands_total{opcode="test_unit_ready",result="check_condition:unit_attention"}'))).toBe(true);
      expect(after.get('xcopyd_written_bytes_total')).toBe(256 * BS);
      expect(after.get('xcopyd_read_bytes_total')).toBe(64 * BS);
      expect(after.get('xcopyd_scsi_command_duration_seconds_count{opcode="read_10"}')).toBe(1);
      // The copy and the token write moved 256 + 16 blocks through the data mover, whichever way it went.
      expect(copyBytes(after) - copyBytes(before)).toBe((256 + 16) * BS);
      expect(after.get('xcopyd_copy_operations_total{operation="extended_copy",outcome="completed"}')).toBe(1);
      expect(after.get('xcopyd_copy_operations_total{operation="populate_token",outcome="completed"}')).toBe(1);
      expect(after.get('xcopyd_copy_operations_total{operation="write_using_token",outcome="completed"}')).toBe(1);
      expect(after.get('xcopyd_rod_token_events_total{event="created"}')).toBe(1);
      expect(after.get('xcopyd_rod_token_events_total{event="used"}')).toBe(1);
      expect(after.get('xcopyd_rod_tokens_live')).toBe(1);
      expect(after.get(`xcopyd_sessions{type="Normal",target="${T}"}`)).toBe(1);
      expect(after.get('xcopyd_login_failures_total{reason="authorization"}')).toBe(1);
      c.close();
    } finally {
      await d.stop();
    }
  });
});

