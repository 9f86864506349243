/**
 * Metrics and logs of a running daemon (issue 6), in process, through real
 * iSCSI sessions:
 *  - the ROD token lifecycle counters move once per created, used, deleted,
 *    expired and cancelled token (RodTokenStore.onEvent), and stop moving
 *    when a reload turns metrics off;
 *  - a scrape is valid text exposition (every sample in a declared family,
 *    histograms consistent), and xcopyd_copy_bytes_total{method="offloaded"}
 *    (with "cloned" on a reflink filesystem) moves by exactly the size of an
 *    EXTENDED COPY and of a WRITE USING TOKEN;
 *  - at info, a login (accepted or refused), a logout, a background copy and
 *    a failed copy each leave a line with their outcome, and 300 commands
 *    leave none; a foreground copy that completes leaves none (a known gap in
 *    scsi/copy/copy-manager.ts, kept as a `.failing` test).
 */
import http from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import { createLogger } from '../../src/daemon';
import { TestInitiator, cdb, clearUnitAttentions, openSession } from '../support/initiator';
import { startConfiguredDaemon as start, type ConfiguredDaemon } from '../support/daemon';
import { b2b, e4, lid1, lid4, xcopyCdb } from '../scsi/copy/helpers';
import { SENSE, expectGood, expectSense, pattern, tokenFor, writeBlocks, writeUsingToken } from '../odx/odx';

const T = 'iqn.2026-11.org.xcopyd:obs';
const ALICE = 'iqn.2026-11.org.example:alice';
const BS = 512;

async function login(port: number): Promise<TestInitiator> {
  const c = await openSession(port, { initiatorName: ALICE, targetName: T });
  for (const lun of [0, 1]) await clearUnitAttentions(c, lun).catch(() => undefined);
  return c;
}

function get(port: number): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

/**
 * Parse Prometheus text exposition 0.0.4 strictly enough to catch a broken
 * scrape: HELP and TYPE before a family's samples, every sample in a declared
 * family (histograms: _bucket with le, _sum, _count), labels well formed,
 * values numbers, no series twice, buckets cumulative and +Inf == _count.
 */
function parseExposition(text: string): Map<string, number> {
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const out = new Map<string, number>();
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const label = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
  const sample = new RegExp(`^(${name})(\\{(?:${label}(?:,${label})*)?,?\\})? (\\S+)(?: -?\\d+)?$`);
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (m) {
      if (m[1] === 'HELP') helped.add(m[2]);
      else {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(m[3]);
        expect(types.has(m[2])).toBe(false);
        types.set(m[2], m[3]);
      }
      continue;
    }
    m = sample.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const [, metric, labels = '', value] = m;
    const family = [metric, metric.replace(/_(bucket|sum|count|total|created)$/, '')].find((f) => types.has(f));
    if (!family) throw new Error(`sample of an undeclared family: ${line}`);
    expect(helped.has(family)).toBe(true);
    if (types.get(family) === 'histogram' && metric.endsWith('_bucket')) expect(labels).toMatch(/le="/);
    // Values as Prometheus reads them (Go's ParseFloat: NaN and Inf in any case; prom-client writes "Nan").
    const special: Record<string, number> = { nan: NaN, inf: Infinity, '+inf': Infinity, '-inf': -Infinity };
    const v = value.toLowerCase() in special ? special[value.toLowerCase()] : Number(value);
    if (Number.isNaN(v) && value.toLowerCase() !== 'nan') throw new Error(`bad value: ${line}`);
    const key = metric + labels;
    if (out.has(key)) throw new Error(`series twice: ${key}`);
    out.set(key, v);
  }
  // Histograms: per series, buckets never decrease, and le="+Inf" equals _count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Array<[number, number]>>();
    for (const [key, v] of out) {
      const m = new RegExp(`^${family}_bucket\\{(.*)\\}$`).exec(key);
      if (!m) continue;
      const le = /(?:^|,)le="([^"]*)"/.exec(m[1])![1];
      const rest = m[1].replace(/(?:^|,)le="[^"]*"/, '').replace(/^,/, '');
      const list = series.get(rest) ?? [];
      list.push([le === '+Inf' ? Infinity : Number(le), v]);
      series.set(rest, list);
    }
    for (const [rest, list] of series) {
      list.sort((a, b) => a[0] - b[0]);
      list.forEach(([, v], i) => i && expect(v).toBeGreaterThanOrEqual(list[i - 1][1]));
      expect(list[list.length - 1][0]).toBe(Infinity);
      expect(out.get(`${family}_count${rest ? `{${rest}}` : ''}`)).toBe(list[list.length - 1][1]);
    }
  }
  return out;
}

async function scrape(port: number): Promise<Map<string, number>> {
  const r = await get(port);
  expect(r.status).toBe(200);
  expect(r.type).toContain('text/plain');
  return parseExposition(r.body);
}

const tokenEvents = (m: Map<string, number>) =>
  Object.fromEntries(['created', 'used', 'expired', 'deleted', 'cancelled', 'revoked'].map((e) => [e, m.get(`xcopyd_rod_token_events_total{event="${e}"}`)]));

describe('ROD token lifecycle metrics', () => {
  it('created, used, deleted, expired, cancelled: each counted once, from the token store hook; off after a reload turns metrics off', async () => {
    const lun0 = { lun: 0, path: 't0.img', size: '8MiB' };
    const lun1 = { lun: 1, path: 't1.img', size: '8MiB' };
    const metrics = { listen: '127.0.0.1:0' };
    const d = await start([{ iqn: T, luns: [lun0, lun1] }], { metrics }, pino({ level: 'silent' }));
    try {
      const port = d.daemon.metrics!.address!.port;
      const zero = await scrape(port);
      // Every event's series exists from the first scrape, at 0.
      expect(tokenEvents(zero)).toEqual({ created: 0, used: 0, expired: 0, deleted: 0, cancelled: 0, revoked: 0 });
      expect(zero.get('xcopyd_rod_tokens_live')).toBe(0);

      const c = await login(d.port);
      await writeBlocks(c, 0, 0, pattern(64 * BS, 1));
      const used = await tokenFor(c, 0, 1, [[0, 16]]);
      const idle = await tokenFor(c, 0, 2, [[16, 16]], { inactivity: 1 });
      const resized = await tokenFor(c, 0, 3, [[32, 16]]);
      let m = await scrape(port);
      expect(tokenEvents(m)).toMatchObject({ created: 3, used: 0 });
      expect(m.get('xcopyd_rod_tokens_live')).toBe(3);

      // Used twice, the second time with DEL_TKN: two uses, then deleted.
      expectGood(await writeUsingToken(c, 1, 4, used, [[0, 16]]), 'WUT');
      expectGood(await writeUsingToken(c, 1, 5, used, [[100, 16]], { delTkn: true }), 'WUT DEL_TKN');
      expectSense(await writeUsingToken(c, 1, 6, used, [[200, 16]]), SENSE.TOKEN_DELETED, 'deleted token');
      // Past its 1 s inactivity timeout: the store's sweep expires it (its clock, run ahead).
      d.daemon.rodTokens!.sweep(Date.now() + 10_000);
      expectSense(await writeUsingToken(c, 1, 7, idle, [[300, 16]]), SENSE.TOKEN_EXPIRED, 'expired token');
      m = await scrape(port);
      expect(tokenEvents(m)).toEqual({ created: 3, used: 2, expired: 1, deleted: 1, cancelled: 0, revoked: 0 });
      expect(m.get('xcopyd_rod_tokens_live')).toBe(1);

      // A reload that grows LUN 0 cancels its tokens (reference 2.12).
      await d.daemon.reload(d.config({ targets: [{ iqn: T, luns: [{ ...lun0, size: '16MiB' }, lun1] }] }));
      await clearUnitAttentions(c, 0);
      expectSense(await writeUsingToken(c, 1, 8, resized, [[400, 16]]), SENSE.TOKEN_CANCELLED, 'cancelled token');
      m = await scrape(port);
      expect(tokenEvents(m)).toEqual({ created: 3, used: 2, expired: 1, deleted: 1, cancelled: 1, revoked: 0 });
      expect(m.get('xcopyd_rod_tokens_live')).toBe(0);

      // Metrics off: the hook is gone, tokens still work.
      await d.daemon.reload(d.config({ targets: [{ iqn: T, luns: [{ ...lun0, size: '16MiB' }, lun1] }], metrics: undefined }));
      expect(d.daemon.metrics).toBeNull();
      expect(d.daemon.rodTokens!.onEvent).toBeUndefined();
      const later = await tokenFor(c, 0, 9, [[0, 8]]);
      expectGood(await writeUsingToken(c, 1, 10, later, [[500, 8]]), 'WUT without metrics');
      c.close();
    } finally {
      await d.stop();
    }
  });
});

describe('Prometheus scrape and the offloaded-bytes counter', () => {
  it('parses as text exposition; the kernel-offloaded bytes move by exactly the size of each copy, nothing goes through buffers', async () => {
    const d = await start(
      [{ iqn: T, luns: [{ lun: 0, path: 'c0.img', size: '16MiB' }, { lun: 1, path: 'c1.img', size: '16MiB' }] }],
      { metrics: { listen: '127.0.0.1:0' } },
      pino({ level: 'silent' }),
    );
    try {
      const port = d.daemon.metrics!.address!.port;
      const bytes = (m: Map<string, number>) =>
        Object.fromEntries(['offloaded', 'cloned', 'buffered', 'holes'].map((k) => [k, m.get(`xcopyd_copy_bytes_total{method="${k}"}`)!]));
      const delta = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.keys(a).map((k) => [k, b[k] - a[k]]));
      const c = await login(d.port);
      const blocks = 8192; // 4 MiB, all data (no holes to skip)
      await writeBlocks(c, 0, 0, pattern(blocks * BS, 7));
      const naa = (n: number) => d.daemon.targets()[0].device.logicalUnit(n)!.identity.naa;

      const before = bytes(await scrape(port));
      expect(before).toEqual({ offloaded: 0, cloned: 0, buffered: 0, holes: 0 });
      const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, blocks, 0, 0)]);
      expectGood(await c.command(0, xcopyCdb(0, p.length), { dataOut: p }), 'EXTENDED COPY');
      const afterXcopy = bytes(await scrape(port));
      const x = delta(before, afterXcopy);
      // In the kernel: copy_file_range (offloaded), or a reflink (cloned) where the filesystem shares extents.
      expect(x.offloaded + x.cloned).toBe(blocks * BS);
      expect(x).toMatchObject({ buffered: 0, holes: 0 });
      if (x.cloned === 0) expect(x.offloaded).toBe(blocks * BS);

      const token = await tokenFor(c, 0, 1, [[0, 2048]]);
      const beforeWut = bytes(await scrape(port));
      expectGood(await writeUsingToken(c, 1, 2, token, [[blocks, 2048]]), 'WRITE USING TOKEN');
      const w = delta(beforeWut, bytes(await scrape(port)));
      expect(w.offloaded + w.cloned).toBe(2048 * BS);
      expect(w).toMatchObject({ buffered: 0, holes: 0 });

      const m = await scrape(port);
      expect(m.get('xcopyd_copy_operations_total{operation="extended_copy",outcome="completed"}')).toBe(1);
      expect(m.get('xcopyd_scsi_command_duration_seconds_count{opcode="write_16"}')).toBeGreaterThanOrEqual(1);
      c.close();
    } finally {
      await d.stop();
    }
  });
});

/** An info-level daemon whose JSON lines are kept, parsed. */
async function loggedDaemon(): Promise<{ d: ConfiguredDaemon; lines: Array<Record<string, unknown>> }> {
  const lines: Array<Record<string, unknown>> = [];
  let partial = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      partial += chunk.toString();
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const l of parts) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const d = await start(
    [{ iqn: T, acls: [{ initiator: ALICE }], luns: [{ lun: 0, path: 'g0.img', size: '8MiB' }, { lun: 1, path: 'g1.img', size: '8MiB' }] }],
    {},
    createLogger('info', sink),
  );
  return { d, lines };
}

const msgs = (lines: Array<Record<string, unknown>>) => lines.map((l) => l.msg);

describe('logs at info', () => {
  it('a login (accepted or refused), a logout and a copy each leave a line with the outcome; commands leave none', async () => {
    const { d, lines } = await loggedDaemon();
    try {
      const c = await login(d.port);
      const accepted = lines.find((l) => l.msg === 'full feature phase');
      expect(accepted).toMatchObject({ level: 30, initiator: ALICE, target: T, type: 'Normal' });
      expect(accepted).toHaveProperty('conn'); // the connection's child logger
      const refused = await TestInitiator.connect(d.port);
      expect((await refused.login({ initiatorName: 'iqn.2026-11.org.example:mallory', targetName: T })).statusDetail).toBe(2);
      refused.close();
      expect(lines.find((l) => l.msg === 'login rejected')).toMatchObject({ level: 40, statusClass: 2, statusDetail: 2 });

      // 300 commands of every common kind: not one line.
      const before = lines.length;
      for (let i = 0; i < 50; i++) {
        const data = pattern(8 * BS, i);
        expect((await c.command(0, cdb.write10(i * 8, 8), { dataOut: data })).status).toBe(0);
        expect((await c.command(0, cdb.read10(i * 8, 8), { read: 8 * BS })).status).toBe(0);
        expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);
        expect((await c.command(0, cdb.inquiry())).status).toBe(0);
        expect((await c.command(1, cdb.readCapacity16(), { read: 32 })).status).toBe(0);
        expect((await c.command(0, cdb.read10(1 << 20, 1), { read: BS })).status).toBe(2); // LBA out of range
      }
      expect(lines.slice(before).map((l) => l.msg)).toEqual([]);

      // A background copy: started and completed, on the copy's child logger.
      const naa = (n: number) => d.daemon.targets()[0].device.logicalUnit(n)!.identity.naa;
      const bg = lid4([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 400, 0, 0)], { listId: 7, immed: true });
      expectGood(await c.command(0, xcopyCdb(1, bg.length), { dataOut: bg }), 'LID4 IMMED');
      for (let i = 0; i < 500 && !msgs(lines).includes('background copy completed'); i++) await new Promise((r) => setTimeout(r, 10));
      expect(lines.find((l) => l.msg === 'background copy completed')).toMatchObject({ level: 30, copy: 7, lun: 0, bytes: 400 * BS });
      // A failing copy: its reason.
      const bad = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 8, 1 << 20, 0)], { listId: 8 });
      expect((await c.command(0, xcopyCdb(0, bad.length), { dataOut: bad })).status).toBe(2);
      expect(lines.find((l) => l.msg === 'copy failed')).toMatchObject({ level: 30, copy: 8, reason: expect.any(String) });

      expect(await c.logout()).toBe(0);
      for (let i = 0; i < 100 && !msgs(lines).includes('session ended'); i++) await new Promise((r) => setTimeout(r, 10));
      expect(lines.find((l) => l.msg === 'logout')).toMatchObject({ level: 30, reason: 0 });
      c.close();
    } finally {
      await d.stop();
    }
  });

  // The commonest copy (ESXi's and Windows' are foreground) leaves its line too.
  it('a foreground copy that completes leaves a line with its outcome', async () => {
    const { d, lines } = await loggedDaemon();
    try {
      const c = await login(d.port);
      await writeBlocks(c, 0, 0, pattern(64 * BS, 3));
      const naa = (n: number) => d.daemon.targets()[0].device.logicalUnit(n)!.identity.naa;
      const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 64, 0, 0)], { listId: 9 });
      const before = lines.length;
      expectGood(await c.command(0, xcopyCdb(0, p.length), { dataOut: p }), 'EXTENDED COPY');
      expect(lines.slice(before).filter((l) => l.copy === 9 && l.level === 30)).toHaveLength(1);
      expect(lines.slice(before).find((l) => l.copy === 9)).toMatchObject({ msg: 'copy completed', bytes: 64 * BS });
      c.close();
    } finally {
      await d.stop();
    }
  });
});
