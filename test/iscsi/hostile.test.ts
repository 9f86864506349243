/**
 * Hostile input (issue 2): a bounded hostile client throws a few thousand
 * random and mutated PDUs at the daemon — garbage before login, bad logins,
 * mutated SCSI Command / Data-Out / NOP / TMF / Text / Logout PDUs, bad
 * lengths, unknown opcodes, Data-Out for unknown tasks, bogus AHS, CmdSN
 * outside the window, data segments beyond MaxRecvDataSegmentLength —
 * while a second session writes, reads back and compares on LUN 1.
 *
 * The oracle for every hostile connection: it ends answered (a Reject, a
 * response, or the echo of a final NOP-Out probe) or closed by the target,
 * never hung; the daemon logs no internal error; the verifier sees no error
 * and no miscompare; afterwards only live sessions remain and a fresh login
 * works. The run is seeded: the seed is printed and XCOPYD_HOSTILE_SEED
 * replays it.
 *
 * Hostile sessions on the verifier's target are kept off LUN 1 and away
 * from target-wide resets (legitimate commands that would disturb anyone);
 * other hostile sessions use a target of their own where anything goes.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Daemon } from '../../src/daemon';
import { validateConfig } from '../../src/config';
import { crc32c, digestBytes } from '../../iscsi/digest';
import { NO_TAG, decodeLun, padLength, type Pdu } from '../../iscsi/pdu';
import {
  Prng,
  TestInitiator,
  bhs,
  cdb,
  clearUnitAttentions,
  openSession,
  scsiCommandBhs,
  textData,
  verifiedIo,
  waitForPdu,
  waitUntil,
} from '../support/initiator';

const seed = Number(process.env.XCOPYD_HOSTILE_SEED ?? crypto.randomInt(2 ** 31));
const DEFAULT_IQN = 'iqn.2026-11.org.xcopyd:default';
const HOSTILE_IQN = 'iqn.2026-11.org.xcopyd:hostile';
/** Hostile PDUs to send in the storm (the catalogue adds a few dozen). */
const PDU_BUDGET = 4000;
const MAX_CONNECTIONS = 600;
const WORKERS = 4;
const PROBE_ITT = 0x50524f42;

const opcode = (p: Pdu): number => p.bhs[0] & 0x3f;
const ittOf = (p: Pdu): number => p.bhs.readUInt32BE(16);

jest.setTimeout(240000);

let daemon: Daemon;
let port: number;
let dataDir: string;
const internalErrors: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  console.log(`hostile test seed ${seed} (XCOPYD_HOSTILE_SEED=${seed} replays it)`);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-hostile-'));
  const config = validateConfig({
    listen: ['127.0.0.1:0'],
    dataDir,
    logLevel: 'warn',
    limits: { authFailureDelayMs: 10, loginTimeoutMs: 1500, nopInIntervalMs: 300, nopInTimeoutMs: 600 },
    targets: [
      {
        iqn: DEFAULT_IQN,
        luns: [
          { lun: 0, path: 'lun0.img', size: '64MiB' },
          { lun: 1, path: 'lun1.img', size: '64MiB' },
        ],
      },
      {
        iqn: HOSTILE_IQN,
        luns: [
          { lun: 0, path: 'h0.img', size: '16MiB' },
          { lun: 1, path: 'h1.img', size: '16MiB' },
        ],
      },
    ],
  });
  // Errors (level >= 50) mean an unexpected exception inside the daemon: collect them.
  const sink = {
    write(line: string): void {
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (typeof o.level === 'number' && o.level >= 50) internalErrors.push(o);
      } catch {
        internalErrors.push({ unparsable: line });
      }
    },
  };
  daemon = new Daemon(config, pino({ level: 'warn' }, sink));
  await daemon.start();
  port = daemon.ports[0];
});

afterAll(async () => {
  await daemon.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

// ---- building and mangling PDUs ------------------------------------------

/** BHS + AHS (+ header digest) + data + padding (+ data digest), lengths from the parts. */
function wire(h: Buffer, data: Buffer = Buffer.alloc(0), o: { ahs?: Buffer; headerDigest?: boolean; dataDigest?: boolean } = {}): Buffer {
  const ahs = o.ahs ?? Buffer.alloc(0);
  h[4] = ahs.length / 4;
  h.writeUIntBE(data.length, 5, 3);
  const parts = [h, ahs];
  if (o.headerDigest) parts.push(digestBytes(crc32c(Buffer.concat([h, ahs]))));
  if (data.length) {
    const padded = Buffer.concat([data, Buffer.alloc(padLength(data.length))]);
    parts.push(padded);
    if (o.dataDigest) parts.push(digestBytes(crc32c(padded)));
  }
  return Buffer.concat(parts);
}

/** Flip `n` random bytes, mostly in the header. */
function mutate(rng: Prng, b: Buffer, n: number): Buffer {
  for (let i = 0; i < n; i++) {
    let at = rng.chance(0.75) || b.length <= 48 ? rng.int(Math.min(48, b.length)) : rng.int(b.length);
    // Length fields (bytes 4-7) lose the stream position: flip them now and then, not most of the time.
    if (at >= 4 && at < 8 && rng.chance(0.75)) at = 8 + rng.int(40);
    b[at] = rng.chance(0.5) ? b[at] ^ (1 << rng.int(8)) : rng.int(256);
  }
  return b;
}

/**
 * On the verifier's target: keep SCSI commands and TMFs off LUN 1, and turn
 * target-wide resets into ABORT TASK. Those are legitimate requests whose
 * effect on other sessions is the point, not hostile input.
 */
function keepOffVerifier(b: Buffer): void {
  const op = b[0] & 0x3f;
  if (op !== 0x01 && op !== 0x02) return;
  if (decodeLun(b, 8) === 1) b.fill(0, 8, 16);
  if (op === 0x02 && [6, 7].includes(b[1] & 0x7f)) b[1] = (b[1] & 0x80) | 1;
}

interface Ctx {
  c: TestInitiator;
  rng: Prng;
  headerDigest: boolean;
  mrdsl: number;
  lastWriteItt: number;
}

const UNKNOWN_OPCODES = Array.from({ length: 0x40 }, (_, i) => i).filter((op) => ![0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10].includes(op));

/** One PDU (as wire bytes) of a kind picked at random: valid, mutated, or broken on purpose. */
function hostilePdu(x: Ctx): Buffer {
  const { c, rng } = x;
  const itt = rng.chance(0.8) ? c.itt++ : rng.int(2 ** 32);
  const cmdSN = rng.chance(0.85) ? c.cmdSN : (c.cmdSN + rng.range(-20, 2000)) >>> 0;
  const lun = rng.int(3);
  let h: Buffer;
  let data: Buffer = Buffer.alloc(0);
  let ahs: Buffer | undefined;
  const kind = rng.int(14);
  switch (kind) {
    case 0:
    case 1:
    case 2: {
      // SCSI Command: reads, writes with immediate data, small commands, random CDBs.
      const pick = rng.int(6);
      const blocks = rng.range(1, 16);
      const lba = rng.int(30000);
      let cdbBytes: Buffer;
      let edtl = 0;
      let read = false;
      let write = false;
      if (pick === 0) [cdbBytes, edtl, read] = [cdb.read10(lba, blocks), blocks * 512, true];
      else if (pick === 1) {
        [cdbBytes, edtl, write] = [cdb.write10(lba, blocks), blocks * 512, true];
        data = rng.bytes(rng.chance(0.7) ? blocks * 512 : rng.int(blocks * 512));
        x.lastWriteItt = itt;
      } else if (pick === 2) cdbBytes = cdb.testUnitReady();
      else if (pick === 3) [cdbBytes, edtl, read] = [cdb.inquiry(), 96, true];
      else if (pick === 4) [cdbBytes, edtl, read] = [cdb.readCapacity16(), 32, true];
      else [cdbBytes, edtl, read, write] = [rng.bytes(16), rng.int(70000), rng.chance(0.5), rng.chance(0.3)];
      if (write && !data.length && rng.chance(0.5)) data = rng.bytes(rng.int(4096));
      h = scsiCommandBhs({ itt, cmdSN, expStatSN: c.expStatSN, lun, cdb: cdbBytes, edtl, read, write, final: rng.chance(0.8) });
      if (cmdSN === c.cmdSN) c.cmdSN = (c.cmdSN + 1) >>> 0;
      break;
    }
    case 3:
    case 4: {
      // Data-Out: for the last write, for unknown tasks, with known-bad or random TTTs.
      const target = rng.chance(0.5) ? x.lastWriteItt : rng.int(2 ** 32);
      const ttt = rng.pick([NO_TAG, NO_TAG, rng.int(16), rng.int(2 ** 32)]);
      data = rng.bytes(rng.int(4096));
      h = bhs.dataOut({ itt: target, ttt, dataSN: rng.int(4), offset: rng.pick([0, 512, rng.int(70000)]), final: rng.chance(0.7), expStatSN: c.expStatSN, lun });
      break;
    }
    case 5:
      data = rng.chance(0.5) ? Buffer.alloc(0) : rng.bytes(rng.int(512));
      h = bhs.nopOut({ itt: rng.chance(0.2) ? NO_TAG : itt, ttt: rng.chance(0.9) ? NO_TAG : rng.int(2 ** 32), cmdSN, immediate: rng.chance(0.5), expStatSN: c.expStatSN });
      break;
    case 6:
      h = bhs.tmf({ itt, fn: rng.range(0, 15), lun, refItt: rng.chance(0.5) ? x.lastWriteItt : rng.int(2 ** 32), cmdSN, refCmdSN: rng.int(2 ** 32), immediate: rng.chance(0.7), expStatSN: c.expStatSN });
      break;
    case 7:
      data = rng.chance(0.6) ? textData([['SendTargets', rng.pick(['All', '', HOSTILE_IQN])]]) : rng.bytes(rng.int(600));
      h = bhs.text({ itt, ttt: rng.chance(0.8) ? NO_TAG : rng.int(2 ** 32), cmdSN, final: rng.chance(0.8), cont: rng.chance(0.2), expStatSN: c.expStatSN });
      break;
    case 8:
      // Logout is rare: it ends the connection (fine, but the storm would be short).
      if (rng.chance(0.15)) h = bhs.logout({ itt, reason: rng.int(4), cid: rng.chance(0.8) ? 0 : rng.int(65536), cmdSN, expStatSN: c.expStatSN });
      else h = bhs.nopOut({ itt, cmdSN, immediate: true });
      break;
    case 9: {
      // Unknown opcode, random rest.
      h = rng.bytes(48);
      h[0] = rng.pick(UNKNOWN_OPCODES) | (rng.chance(0.5) ? 0x40 : 0);
      data = rng.bytes(rng.int(256));
      break;
    }
    case 10: {
      // A random BHS with a plausible opcode.
      h = rng.bytes(48);
      h[0] = rng.pick([0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10]) | (rng.chance(0.5) ? 0x40 : 0);
      data = rng.bytes(rng.int(512));
      break;
    }
    case 11: {
      // Bogus AHS on a command or a ping.
      ahs = rng.bytes(4 * rng.range(1, 8));
      if (rng.chance(0.5)) ahs.writeUInt16BE(rng.int(80), 0);
      h = rng.chance(0.5) ? scsiCommandBhs({ itt, cmdSN, lun, cdb: cdb.testUnitReady(), edtl: 0 }) : bhs.nopOut({ itt, cmdSN, immediate: true });
      break;
    }
    case 12: {
      // A data segment beyond what the target said it can receive: header only, then whatever.
      h = bhs.nopOut({ itt, cmdSN, immediate: true });
      const b = wire(h, Buffer.alloc(0), { headerDigest: x.headerDigest });
      b.writeUIntBE(x.mrdsl + rng.range(1, 100000), 5, 3);
      return Buffer.concat([b, rng.bytes(rng.int(256))]);
    }
    default: {
      // Garbage bytes mid-stream (now and then; it ends the stream's framing).
      if (rng.chance(0.3)) return rng.bytes(rng.range(1, 200));
      h = bhs.nopOut({ itt, cmdSN, immediate: true });
    }
  }
  const b = wire(h, data, { ahs, headerDigest: x.headerDigest });
  // Many valid, most mutated.
  if (rng.chance(0.6)) mutate(rng, b, rng.range(1, 4));
  return b;
}

// ---- connection outcomes --------------------------------------------------

type Outcome = 'answered' | 'closed' | 'hung';

/**
 * End of a hostile connection: an immediate NOP-Out probe must be echoed,
 * or the target must close the connection (within its login and NOP-In
 * timeouts, which the config makes short).
 */
async function settle(c: TestInitiator): Promise<{ outcome: Outcome; replies: number }> {
  if (!c.closed) c.raw(wire(bhs.nopOut({ itt: PROBE_ITT, cmdSN: c.cmdSN, immediate: true, expStatSN: c.expStatSN }), Buffer.alloc(0), { headerDigest: c.headerDigest }));
  const echo = await waitForPdu(c, (p) => opcode(p) === 0x20 && ittOf(p) === PROBE_ITT, 10000, false);
  const replies = c.stray.length + (echo ? 1 : 0);
  const outcome: Outcome = echo ? 'answered' : c.closed ? 'closed' : 'hung';
  c.close();
  return { outcome, replies };
}

const validLoginText = (name: string, target = HOSTILE_IQN): Buffer =>
  textData([
    ['InitiatorName', name],
    ['SessionType', 'Normal'],
    ['TargetName', target],
    ['HeaderDigest', 'None'],
    ['DataDigest', 'None'],
  ]);
const LOGIN_OP_TO_FFP = 0x80 | (1 << 2) | 3;
const isid = (): Buffer => Buffer.from([0x80, 0x48, 0x4f, 0x53, crypto.randomInt(256), crypto.randomInt(256)]);

/** Send one or more login PDUs; what came back. */
async function loginAttempt(pdus: Buffer[]): Promise<{ statuses: Array<[number, number]>; enteredFullFeature: boolean; outcome: Outcome }> {
  const c = await TestInitiator.connect(port);
  for (const p of pdus) c.raw(p);
  const statuses: Array<[number, number]> = [];
  let enteredFullFeature = false;
  for (let i = 0; i < 20; i++) {
    const p = await c.next(3000);
    if (!p) break;
    if (opcode(p) === 0x23) {
      statuses.push([p.bhs[36], p.bhs[37]]);
      if (p.bhs[36] === 0 && p.bhs[1] & 0x80 && (p.bhs[1] & 3) === 3) enteredFullFeature = true;
    }
  }
  const { outcome } = await settle(c);
  return { statuses, enteredFullFeature, outcome };
}

// ---- the catalogue: each named case once, with its expected answer --------

describe('bad logins, one of each', () => {
  const name = 'iqn.2026-11.org.xcopyd:hostile-catalogue';
  const good = (flags = LOGIN_OP_TO_FFP, text = validLoginText(name), extra: Parameters<typeof bhs.login>[0] = { flags, isid: isid() }) =>
    wire(bhs.login({ ...extra, flags }), text);

  /** Expected: the login statuses in order, 'closed' (no status at all, or only failures), or 'refused-last' (acknowledged, then refused). */
  const cases: Array<[string, () => Buffer[], Array<[number, number]> | 'closed' | 'refused-last']> = [
    ['garbage bytes', () => [crypto.randomBytes(777)], 'closed'],
    ['a SCSI Command first', () => [wire(scsiCommandBhs({ itt: 1, cmdSN: 1, lun: 0, cdb: cdb.testUnitReady(), edtl: 0 }))], 'closed'],
    ['a NOP-Out first', () => [wire(bhs.nopOut({ itt: 1, cmdSN: 1, immediate: true }))], 'closed'],
    ['a Text Request first', () => [wire(bhs.text({ itt: 1, cmdSN: 1 }), textData([['SendTargets', 'All']]))], 'closed'],
    ['a Logout first', () => [wire(bhs.logout({ itt: 1, reason: 0, cmdSN: 1 }))], 'closed'],
    ['an unknown opcode first', () => [wire(Object.assign(Buffer.alloc(48), { 0: 0x1f }))], 'closed'],
    ['T and C both set', () => [good(0x80 | 0x40 | (1 << 2) | 3)], [[2, 0]]],
    ['CSG 2 (reserved stage)', () => [good(0x80 | (2 << 2) | 3)], [[2, 0]]],
    ['NSG 2 (reserved stage)', () => [good(0x80 | (1 << 2) | 2)], [[2, 0]]],
    ['a transit backwards (operational -> security)', () => [good(0x80 | (1 << 2) | 0)], [[2, 0]]],
    ['DataSegmentLength 0xFFFFFF', () => [Buffer.concat([(() => { const b = good(); b.writeUIntBE(0xffffff, 5, 3); return b; })(), crypto.randomBytes(1000)])], 'closed'],
    ['DataSegmentLength 8193 (above the login limit)', () => [wire(bhs.login({ flags: LOGIN_OP_TO_FFP, isid: isid() }), Buffer.alloc(8193, 0x41))], 'closed'],
    ['text with a key but no "="', () => [good(LOGIN_OP_TO_FFP, Buffer.from(`InitiatorName=${name}\0TargetName=${HOSTILE_IQN}\0Bogus\0`))], [[2, 0]]],
    ['text that is not UTF-8', () => [good(LOGIN_OP_TO_FFP, Buffer.concat([validLoginText(name), Buffer.from([0xc3, 0x28, 0x3d, 0xff, 0x00])]))], [[2, 0]]],
    ['a key offered twice', () => [good(LOGIN_OP_TO_FFP, Buffer.concat([validLoginText(name), textData([['HeaderDigest', 'None']])]))], [[2, 0]]],
    ['a 64-character key name', () => [good(LOGIN_OP_TO_FFP, Buffer.concat([validLoginText(name), textData([['X'.repeat(64), '1']])]))], [[2, 0]]],
    ['MaxRecvDataSegmentLength=0', () => [good(LOGIN_OP_TO_FFP, Buffer.concat([validLoginText(name), textData([['MaxRecvDataSegmentLength', '0']])]))], [[2, 0]]],
    ['no InitiatorName', () => [good(LOGIN_OP_TO_FFP, textData([['TargetName', HOSTILE_IQN], ['SessionType', 'Normal']]))], [[2, 7]]],
    ['no TargetName in a normal session', () => [good(LOGIN_OP_TO_FFP, textData([['InitiatorName', name], ['SessionType', 'Normal']]))], [[2, 7]]],
    ['version-min 1', () => [good(LOGIN_OP_TO_FFP, validLoginText(name), { flags: 0, isid: isid(), versionMax: 1, versionMin: 1 })], [[2, 5]]],
    ['an unknown target', () => [good(LOGIN_OP_TO_FFP, validLoginText(name, 'iqn.2026-11.org.xcopyd:nobody'))], [[2, 3]]],
    ['a TSIH that names no session', () => [good(LOGIN_OP_TO_FFP, validLoginText(name), { flags: 0, isid: isid(), tsih: 0x7777 })], [[2, 10]]],
    [
      'an ISID that changes mid-login',
      () => [
        wire(bhs.login({ flags: 0x00, isid: Buffer.from([0x80, 1, 1, 1, 1, 1]) }), Buffer.concat([validLoginText(name), textData([['AuthMethod', 'None']])])),
        wire(bhs.login({ flags: LOGIN_OP_TO_FFP, isid: Buffer.from([0x80, 2, 2, 2, 2, 2]) }), Buffer.alloc(0)),
      ],
      [[0, 0], [2, 0]],
    ],
    [
      'login text continued (C) past 64 KiB',
      () => Array.from({ length: 10 }, (_, i) => wire(bhs.login({ flags: 0x40 | (1 << 2) | 3, isid: Buffer.from([0x80, 3, 3, 3, 3, 3]), itt: 9 }), Buffer.alloc(8000, 0x41 + i))),
      'refused-last',
    ],
  ];

  it.each(cases)('%s: refused, never in full feature phase', async (_title, build, expected) => {
    const r = await loginAttempt(build());
    expect(r.enteredFullFeature).toBe(false);
    expect(r.outcome).not.toBe('hung');
    if (expected === 'closed') {
      expect(r.outcome).toBe('closed');
      expect(r.statuses.every(([cls]) => cls !== 0)).toBe(true);
    } else if (expected === 'refused-last') {
      expect(r.outcome).toBe('closed');
      expect(r.statuses.length).toBeGreaterThan(1);
      expect(r.statuses[r.statuses.length - 1][0]).toBe(2);
    } else {
      expect(r.statuses).toEqual(expected);
      expect(r.outcome).toBe('closed');
    }
  });
});

describe('bad PDUs in full feature phase, one of each', () => {
  let c: TestInitiator;
  let n = 0;
  beforeEach(async () => {
    c = await openSession(port, { initiatorName: `iqn.2026-11.org.xcopyd:hostile-ffp-${++n}`, targetName: HOSTILE_IQN });
  });
  afterEach(() => c.close());

  const rejectOf = async (itt: number): Promise<number | undefined> => {
    const p = await waitForPdu(c, (x) => opcode(x) === 0x3f && x.data.length >= 48 && x.data.readUInt32BE(16) === itt, 3000);
    return p?.bhs[2];
  };

  it('unknown opcode: Reject (command not supported), the session goes on', async () => {
    const h = Buffer.alloc(48);
    h[0] = 0x1b | 0x40;
    h[1] = 0x80;
    h.writeUInt32BE(0xabc, 16);
    c.raw(wire(h));
    expect(await rejectOf(0xabc)).toBe(0x05);
    expect((await settle(c)).outcome).toBe('answered');
  });

  it('Data-Out for an unknown task with a made-up TTT: Reject (invalid PDU field); with TTT ffffffff: dropped; the session goes on', async () => {
    c.raw(wire(bhs.dataOut({ itt: 0xdead, ttt: 0x1234, dataSN: 0, offset: 0, final: true }), Buffer.alloc(512)));
    expect(await rejectOf(0xdead)).toBe(0x09);
    c.raw(wire(bhs.dataOut({ itt: 0xbeef, ttt: NO_TAG, dataSN: 0, offset: 0, final: true }), Buffer.alloc(512)));
    expect((await settle(c)).outcome).toBe('answered');
    expect(c.stray.filter((p) => opcode(p) === 0x3f && p.data.readUInt32BE(16) === 0xbeef)).toEqual([]);
  });

  it('SNACK at ErrorRecoveryLevel 0: Reject (protocol error), the session goes on', async () => {
    const h = Buffer.alloc(48);
    h[0] = 0x10;
    h[1] = 0x80;
    h.writeUInt32BE(0x5a, 16);
    c.raw(wire(h));
    expect(await rejectOf(0x5a)).toBe(0x04);
    expect((await settle(c)).outcome).toBe('answered');
  });

  it('a CmdSN outside the window: ignored, and the next in-window command runs', async () => {
    const far = c.itt++;
    c.raw(wire(scsiCommandBhs({ itt: far, cmdSN: (c.cmdSN + 100000) >>> 0, lun: 0, cdb: cdb.testUnitReady(), edtl: 0 })));
    const behind = c.itt++;
    c.raw(wire(scsiCommandBhs({ itt: behind, cmdSN: (c.cmdSN - 3) >>> 0, lun: 0, cdb: cdb.testUnitReady(), edtl: 0 })));
    await clearUnitAttentions(c, 0);
    expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);
    expect(c.stray.filter((p) => [far, behind].includes(ittOf(p)))).toEqual([]);
  });

  it('an ITT already in use: Reject (task in progress)', async () => {
    await clearUnitAttentions(c, 0); // else the first command ends at once with 6/29 and frees its ITT
    c.raw(wire(scsiCommandBhs({ itt: 0x77, cmdSN: c.cmdSN, lun: 0, cdb: cdb.write10(0, 64), edtl: 64 * 512, write: true, final: false })));
    c.cmdSN++;
    c.raw(wire(scsiCommandBhs({ itt: 0x77, cmdSN: c.cmdSN, lun: 0, cdb: cdb.testUnitReady(), edtl: 0 })));
    expect(await rejectOf(0x77)).toBe(0x07);
  });

  it('a bogus AHS on a NOP-Out: answered or dropped, never hung', async () => {
    c.raw(wire(bhs.nopOut({ itt: 0x99, cmdSN: c.cmdSN, immediate: true }), Buffer.alloc(0), { ahs: crypto.randomBytes(12) }));
    expect((await settle(c)).outcome).not.toBe('hung');
  });

  it('a data segment beyond MaxRecvDataSegmentLength: Reject (protocol error), then the connection is closed', async () => {
    const mrdsl = Number(c.keys.MaxRecvDataSegmentLength);
    const h = bhs.nopOut({ itt: 0x42, cmdSN: c.cmdSN, immediate: true });
    const b = wire(h, Buffer.alloc(0));
    b.writeUIntBE(mrdsl + 4, 5, 3);
    c.raw(Buffer.concat([b, Buffer.alloc(mrdsl + 4)]));
    expect(await rejectOf(0x42)).toBe(0x04);
    expect((await settle(c)).outcome).toBe('closed');
  });

  it('immediate data on a READ: Reject, then the connection is closed', async () => {
    c.raw(wire(scsiCommandBhs({ itt: 0x43, cmdSN: c.cmdSN, lun: 0, cdb: cdb.read10(0, 1), edtl: 512, read: true }), Buffer.alloc(512)));
    expect(await rejectOf(0x43)).toBe(0x04);
    expect((await settle(c)).outcome).toBe('closed');
  });

  it('a Login Request in full feature phase: Reject, then the connection is closed', async () => {
    c.raw(wire(bhs.login({ flags: LOGIN_OP_TO_FFP, isid: isid(), itt: 0x44 }), validLoginText('iqn.2026-11.org.xcopyd:x')));
    expect(await rejectOf(0x44)).toBe(0x04);
    expect((await settle(c)).outcome).toBe('closed');
  });
});

// ---- the storm --------------------------------------------------------------

describe('the storm', () => {
  it(`survives ~${PDU_BUDGET} random and mutated PDUs while a second session's verified I/O carries on`, async () => {
    const verifier = await openSession(port, { initiatorName: 'iqn.2026-11.org.xcopyd:verifier', targetName: DEFAULT_IQN });
    await clearUnitAttentions(verifier, 1);
    const verifierTsih = daemon.server!.sessions().find((s) => s.initiatorName === 'iqn.2026-11.org.xcopyd:verifier')!.tsih;

    let stormOver = false;
    const verifying = verifiedIo(verifier, 1, 0, 4096, new Prng(seed ^ 0x5eed), { rounds: 20, maxRounds: 20000, keepGoing: () => !stormOver, maxBlocks: 64 });

    let sent = 0;
    let started = 0;
    const outcomes: Record<string, Record<Outcome, number>> = {};
    const hung: string[] = [];
    const record = (kind: string, o: { outcome: Outcome }, index: number) => {
      outcomes[kind] ??= { answered: 0, closed: 0, hung: 0 };
      outcomes[kind][o.outcome]++;
      if (o.outcome === 'hung') hung.push(`${kind} #${index}`);
    };

    const scenario = async (index: number): Promise<void> => {
      const rng = new Prng((seed + index * 0x9e3779b1) >>> 0);
      const roll = rng.int(20);
      if (roll < 2) {
        // Garbage before login.
        const c = await TestInitiator.connect(port);
        for (let i = 0, k = rng.range(1, 4); i < k; i++) {
          c.raw(rng.bytes(rng.range(1, 3000)));
          sent++;
        }
        record('garbage before login', await settle(c), index);
        return;
      }
      if (roll < 5) {
        // A valid login, mutated.
        const c = await TestInitiator.connect(port);
        const text = validLoginText(`iqn.2026-11.org.xcopyd:hostile-${index}`, rng.chance(0.5) ? HOSTILE_IQN : DEFAULT_IQN);
        const b = wire(bhs.login({ flags: LOGIN_OP_TO_FFP, isid: Buffer.from([0x80, 9, 9, 9, index >> 8, index & 0xff]) }), text);
        mutate(rng, b, rng.range(1, 4));
        c.raw(b);
        sent++;
        record('mutated login', await settle(c), index);
        return;
      }
      // Full feature phase, then PDUs.
      const onVerifierTarget = rng.chance(0.4);
      const headerDigest = rng.chance(0.15);
      const c = await TestInitiator.connect(port);
      const r = await c.login({
        initiatorName: `iqn.2026-11.org.xcopyd:hostile-${index}`,
        targetName: onVerifierTarget ? DEFAULT_IQN : HOSTILE_IQN,
        headerDigest,
      });
      if (r.statusClass !== 0) throw new Error(`hostile login ${index} failed: ${r.statusClass}/${r.statusDetail}`);
      const x: Ctx = { c, rng, headerDigest, mrdsl: Number(c.keys.MaxRecvDataSegmentLength ?? 8192), lastWriteItt: 0 };
      const count = rng.range(10, 60);
      for (let i = 0; i < count && !c.closed; i++) {
        const b = hostilePdu(x);
        if (onVerifierTarget && b.length >= 48) keepOffVerifier(b);
        c.raw(b);
        sent++;
        // Let the target answer (or close) now and then, so PDUs are not all sent into a closed socket.
        if (i % 4 === 3) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      record(onVerifierTarget ? 'ffp (verifier target)' : 'ffp (own target)', await settle(c), index);
    };

    const worker = async (): Promise<void> => {
      while (sent < PDU_BUDGET && started < MAX_CONNECTIONS) await scenario(started++);
    };
    try {
      await Promise.all(Array.from({ length: WORKERS }, worker));
    } finally {
      stormOver = true;
    }
    const io = await verifying;
    console.log(`hostile storm: seed ${seed}, ${sent} PDUs over ${started} connections, outcomes ${JSON.stringify(outcomes)}; verifier ${io.rounds} rounds`);

    expect(hung).toEqual([]);
    expect(sent).toBeGreaterThanOrEqual(Math.min(PDU_BUDGET, 3000));
    expect(internalErrors.map((e) => e.msg ?? e)).toEqual([]);
    expect({ errors: io.errors, miscompares: io.miscompares, firstError: io.firstError }).toEqual({ errors: 0, miscompares: 0, firstError: undefined });
    expect(io.rounds).toBeGreaterThanOrEqual(20);

    // Nothing leaked: only the verifier's session and connection remain, and the devices hold only its nexus.
    const server = daemon.server!;
    expect(await waitUntil(() => server.sessions().length === 1 && server.connectionCount() === 1, 10000)).toBe(true);
    expect(server.sessions().map((s) => s.tsih)).toEqual([verifierTsih]);
    const verifierNexus = server.sessions()[0].nexus!.key;
    for (const t of server.targets()) {
      // The device's task set (scsi/task-set.ts) keeps its records in a private Set.
      const device = t.device as unknown as { tasks?: { tasks?: Set<{ nexusKey: string }> }; nexuses?: Map<string, unknown> };
      expect(device.tasks?.tasks && device.nexuses).toBeTruthy();
      expect([...device.tasks!.tasks!].filter((r) => r.nexusKey !== verifierNexus)).toEqual([]);
      expect([...device.nexuses!.keys()].filter((k) => k !== verifierNexus)).toEqual([]);
    }

    // Still serving: the verifier carries on, and a fresh login works.
    const more = await verifiedIo(verifier, 1, 0, 4096, new Prng(seed), { rounds: 3 });
    expect([more.errors, more.miscompares]).toEqual([0, 0]);
    const fresh = await openSession(port, { initiatorName: 'iqn.2026-11.org.xcopyd:after-the-storm', targetName: DEFAULT_IQN });
    await clearUnitAttentions(fresh, 0);
    expect((await fresh.command(0, cdb.inquiry(), { read: 96 })).status).toBe(0);
    expect(await fresh.logout()).toBe(0);
    fresh.close();
    expect(await verifier.logout()).toBe(0);
    verifier.close();
  });
});
