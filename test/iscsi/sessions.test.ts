/**
 * Many sessions at once, and the life of one session: 64 concurrent sessions
 * (32 initiator names, two ISIDs each) doing verified I/O on disjoint ranges;
 * a session whose socket dies while the target waits for R2T data is cleaned
 * up without disturbing the others; the CmdSN window advertises the queue
 * depth and commands beyond MaxCmdSN are not executed (RFC 7143 §4.2.2.1);
 * NOP-In pings keep answering initiators and drop silent ones; Logout
 * reasons 1 and 2.
 */
import crypto from 'node:crypto';
import type { Pdu } from '../../iscsi/pdu';
import {
  Prng,
  TestInitiator,
  answerR2t,
  awaitResponse,
  bhs,
  cdb,
  clearUnitAttentions,
  openSession,
  startCommand,
  verifiedIo,
  waitClosed,
  waitForPdu,
  waitUntil,
} from '../support/initiator';
import { startTestDaemon, TestDaemon } from '../support/daemon';

const R2T_ONLY = { InitialR2T: 'Yes', ImmediateData: 'No' };
const opcode = (p: Pdu): number => p.bhs[0] & 0x3f;
const ittOf = (p: Pdu): number => p.bhs.readUInt32BE(16);
const isPing = (p: Pdu): boolean => opcode(p) === 0x20 && ittOf(p) === 0xffffffff;

const seed = Number(process.env.XCOPYD_TEST_SEED ?? crypto.randomInt(2 ** 31));

/** What the SCSI core holds of one device (private fields, read for leak checks only). */
function deviceInternals(td: TestDaemon): { tasks: Set<{ nexusKey: string }>; nexuses: Map<string, unknown> } {
  // The device's task set (scsi/task-set.ts) keeps its records in a private Set.
  const device = td.daemon.server!.targets()[0].device as unknown as { tasks?: { tasks?: Set<{ nexusKey: string }> }; nexuses?: Map<string, unknown> };
  if (!device.tasks?.tasks || !device.nexuses) throw new Error('ScsiDevice no longer has tasks/nexuses: update this leak check');
  return { tasks: device.tasks.tasks, nexuses: device.nexuses };
}

/** Send a NOP-Out and wait for its echo; every PDU before it lands in c.stray. */
async function barrier(c: TestInitiator, immediate = false): Promise<void> {
  const itt = c.nopOut(undefined, undefined, undefined, immediate);
  const echo = await waitForPdu(c, (p) => opcode(p) === 0x20 && ittOf(p) === itt);
  if (!echo) throw new Error('no NOP-In echo: connection gone?');
}

describe('many sessions', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon();
  });
  afterAll(async () => {
    await td.stop();
  });

  it('64 concurrent sessions from 32 initiators (two ISIDs each) do verified I/O on disjoint ranges', async () => {
    console.log(`sessions test seed ${seed} (XCOPYD_TEST_SEED=${seed} replays it)`);
    const INITIATORS = 32;
    const ISIDS = 2;
    const RANGE = 256;
    const LUN = 1;
    const clients: TestInitiator[] = [];
    await Promise.all(
      Array.from({ length: INITIATORS * ISIDS }, async (_, i) => {
        const initiator = Math.floor(i / ISIDS);
        const isid = Buffer.from([0x80, 0x00, 0x00, initiator, 0x00, i % ISIDS]);
        clients[i] = await openSession(td.port, { initiatorName: `iqn.2026-11.org.xcopyd:many-${initiator}`, isid });
      }),
    );
    const live = td.daemon.server!.sessions();
    expect(live.length).toBe(INITIATORS * ISIDS);
    expect(new Set(live.map((s) => s.tsih)).size).toBe(INITIATORS * ISIDS);
    expect(new Set(live.map((s) => s.initiatorName)).size).toBe(INITIATORS);

    const results = await Promise.all(
      clients.map(async (c, i) => {
        await clearUnitAttentions(c, LUN);
        const io = await verifiedIo(c, LUN, i * RANGE, RANGE, new Prng(seed + i), { rounds: 6, maxBlocks: 32 });
        // Leave a signature over the whole range, to find cross-talk afterwards.
        const sig = Buffer.alloc(RANGE * 512, i + 1);
        const w = await c.command(LUN, cdb.write10(i * RANGE, RANGE), { dataOut: sig });
        return { ...io, signed: w.status === 0 };
      }),
    );
    for (const [i, r] of results.entries()) {
      expect({ session: i, errors: r.errors, miscompares: r.miscompares, signed: r.signed, firstError: r.firstError }).toEqual({
        session: i,
        errors: 0,
        miscompares: 0,
        signed: true,
        firstError: undefined,
      });
    }
    const checker = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:many-checker' });
    await clearUnitAttentions(checker, LUN);
    for (let i = 0; i < clients.length; i++) {
      const r = await checker.command(LUN, cdb.read10(i * RANGE, RANGE), { read: RANGE * 512 });
      expect(r.status).toBe(0);
      expect(r.data.equals(Buffer.alloc(RANGE * 512, i + 1))).toBe(true);
    }
    const codes = await Promise.all([...clients, checker].map((c) => c.logout()));
    expect(codes.every((x) => x === 0)).toBe(true);
    for (const c of [...clients, checker]) c.close();
    expect(await waitUntil(() => td.daemon.server!.sessions().length === 0, 5000)).toBe(true);
    expect(deviceInternals(td).nexuses.size).toBe(0);
  });

  it('a session whose socket is destroyed while the target waits for R2T data is cleaned up; the others carry on', async () => {
    const other = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:bystander' });
    await clearUnitAttentions(other, 0);
    const before = new Set(td.daemon.server!.sessions().map((s) => s.tsih));
    const victim = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:victim', keys: R2T_ONLY });
    const session = td.daemon.server!.sessions().find((s) => !before.has(s.tsih))!;
    expect(session.initiatorName).toBe('iqn.2026-11.org.xcopyd:victim');
    await clearUnitAttentions(victim, 0);
    const original = (await victim.command(0, cdb.read10(4096, 1024), { read: 1024 * 512 })).data;

    // The bystander keeps doing verified I/O while the victim dies.
    let victimGone = false;
    const bystanding = verifiedIo(other, 0, 0, 2048, new Prng(seed), { rounds: 5, maxRounds: 500, keepGoing: () => !victimGone });

    const { itt } = startCommand(victim, 0, cdb.write10(4096, 1024), { edtl: 1024 * 512, write: true });
    const r2t = await waitForPdu(victim, (p) => opcode(p) === 0x31 && ittOf(p) === itt);
    expect(r2t).not.toBeNull();
    expect(session.commandsInFlight).toBe(1);
    victim.close();

    const cleaned = await waitUntil(() => !td.daemon.server!.sessions().includes(session), 5000);
    victimGone = true;
    expect(cleaned).toBe(true);
    expect(session.closed).toBe(true);
    expect(session.commandsInFlight).toBe(0);
    const core = deviceInternals(td);
    expect(await waitUntil(() => ![...core.tasks].some((t) => t.nexusKey === session.nexus!.key), 5000)).toBe(true);
    expect(core.nexuses.has(session.nexus!.key)).toBe(false);

    const io = await bystanding;
    expect({ errors: io.errors, miscompares: io.miscompares, firstError: io.firstError }).toEqual({ errors: 0, miscompares: 0, firstError: undefined });
    // Nothing of the half-sent write reached the medium.
    const after = await other.command(0, cdb.read10(4096, 1024), { read: 1024 * 512 });
    expect(after.data.equals(original)).toBe(true);
    expect(await other.logout()).toBe(0);
    other.close();
  });
});

describe('queue depth and the CmdSN window', () => {
  const QD = 4;
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({ limits: { authFailureDelayMs: 10, queueDepth: QD } });
  });
  afterAll(async () => {
    await td.stop();
  });

  it('advertises MaxCmdSN = ExpCmdSN + queue depth - 1 at login', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:qd-login' });
    expect((c.maxCmdSN - c.cmdSN + 1) >>> 0).toBe(QD);
    await c.logout();
    c.close();
  });

  it('closes the window while the queue is full, executes nothing beyond MaxCmdSN, and reopens it as commands finish', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:qd-full', keys: R2T_ONLY });
    await clearUnitAttentions(c, 0);
    const marker = crypto.randomBytes(512);
    const writes: Array<{ itt: number; cmdSN: number; r2t: Pdu; data: Buffer }> = [];
    for (let i = 0; i < QD; i++) {
      const data = crypto.randomBytes(8 * 512);
      const { itt, cmdSN } = startCommand(c, 0, cdb.write10(64 + 8 * i, 8), { edtl: data.length, write: true });
      const r2t = await waitForPdu(c, (p) => opcode(p) === 0x31 && ittOf(p) === itt);
      expect(r2t).not.toBeNull();
      writes.push({ itt, cmdSN, r2t: r2t!, data });
    }
    // QD commands in flight: MaxCmdSN stays at the last one's CmdSN, one below ExpCmdSN.
    const last = writes[QD - 1];
    expect(last.r2t.bhs.readUInt32BE(28)).toBe((last.cmdSN + 1) >>> 0); // ExpCmdSN
    expect(last.r2t.bhs.readUInt32BE(32)).toBe(last.cmdSN); // MaxCmdSN

    // A write at ExpCmdSN (beyond MaxCmdSN) and one further out: neither runs.
    const beyond = startCommand(c, 0, cdb.write10(32, 1), { edtl: 512, write: true });
    const further = startCommand(c, 0, cdb.write10(33, 1), { edtl: 512, write: true, cmdSN: (beyond.cmdSN + 5) >>> 0 });
    await barrier(c, true);
    expect(c.stray.filter((p) => [beyond.itt, further.itt].includes(ittOf(p)))).toEqual([]);

    // Finishing one command opens the window by one, and its response says so.
    answerR2t(c, writes[0].r2t, writes[0].data);
    const first = await waitForPdu(c, (p) => opcode(p) === 0x21 && ittOf(p) === writes[0].itt);
    expect(first?.bhs[3]).toBe(0);
    expect(first!.bhs.readUInt32BE(32)).toBe((last.cmdSN + 1) >>> 0);
    for (const w of writes.slice(1)) {
      answerR2t(c, w.r2t, w.data);
      expect((await awaitResponse(c, w.itt))?.status).toBe(0);
    }
    // The discarded command may now be sent again with its CmdSN, and runs.
    c.cmdSN = beyond.cmdSN;
    const again = startCommand(c, 0, cdb.write10(32, 1), { edtl: 512, write: true });
    expect((await awaitResponse(c, again.itt, { dataOut: marker }))?.status).toBe(0);
    const r = await c.command(0, cdb.read10(32, 2), { read: 1024 });
    expect(r.data.subarray(0, 512).equals(marker)).toBe(true);
    expect(r.data.subarray(512).equals(Buffer.alloc(512))).toBe(true); // the one further out never ran
    for (const [i, w] of writes.entries()) {
      expect((await c.command(0, cdb.read10(64 + 8 * i, 8), { read: 8 * 512 })).data.equals(w.data)).toBe(true);
    }
    await c.logout();
    c.close();
  });

  it('holds a command that arrives early inside the window until the gap is filled, then runs both in CmdSN order', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:qd-order' });
    await clearUnitAttentions(c, 0);
    const a = crypto.randomBytes(512);
    const b = crypto.randomBytes(512);
    const sn = c.cmdSN;
    // CmdSN sn+1 first: held. Both write LBA 40; CmdSN order says b lands last.
    const second = startCommand(c, 0, cdb.write10(40, 1), { edtl: 512, write: true, immediateData: b, cmdSN: (sn + 1) >>> 0 });
    await barrier(c, true);
    expect(c.stray.filter((p) => ittOf(p) === second.itt)).toEqual([]);
    const first = startCommand(c, 0, cdb.write10(40, 1), { edtl: 512, write: true, immediateData: a, cmdSN: sn });
    c.cmdSN = (sn + 2) >>> 0;
    expect((await awaitResponse(c, first.itt))?.status).toBe(0);
    expect((await awaitResponse(c, second.itt))?.status).toBe(0);
    expect((await c.command(0, cdb.read10(40, 1), { read: 512 })).data.equals(b)).toBe(true);
    await c.logout();
    c.close();
  });
});

describe('NOP-In pings and Logout', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({ limits: { authFailureDelayMs: 10, nopInIntervalMs: 300, nopInTimeoutMs: 600 } });
  });
  afterAll(async () => {
    await td.stop();
  });

  it('keeps an idle initiator that answers NOP-In pings across several intervals', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:nop-answers' });
    // Read (and answer, via waitForPdu) until three pings have come; bounded.
    for (let i = 0; i < 60 && c.stray.filter(isPing).length < 3 && !c.closed; i++) {
      await waitForPdu(c, () => false, 500);
    }
    expect(c.stray.filter(isPing).length).toBeGreaterThanOrEqual(3);
    expect(c.closed).toBe(false);
    await clearUnitAttentions(c, 0);
    expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);
    expect(await c.logout()).toBe(0);
    c.close();
  });

  it('drops an initiator that ignores them, and ends its session', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:nop-silent' });
    const tsih = td.daemon.server!.sessions().find((s) => s.initiatorName === 'iqn.2026-11.org.xcopyd:nop-silent')!.tsih;
    expect(await waitClosed(c, 15000)).toBe(true);
    expect(c.stray.filter(isPing).length).toBeGreaterThanOrEqual(1);
    expect(await waitUntil(() => !td.daemon.server!.sessions().some((s) => s.tsih === tsih), 5000)).toBe(true);
  });

  it('Logout reason 1 (close the connection) with our CID succeeds and ends the session', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:logout-1' });
    expect(await c.logout(1)).toBe(0);
    expect(await waitClosed(c, 5000)).toBe(true);
    expect(await waitUntil(() => !td.daemon.server!.sessions().some((s) => s.initiatorName === 'iqn.2026-11.org.xcopyd:logout-1'), 5000)).toBe(true);
  });

  it('Logout reason 1 with a CID that is not ours answers 1 (CID not found) and keeps the connection', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:logout-cid' });
    const itt = c.itt++;
    c.sendPdu(bhs.logout({ itt, reason: 1, cid: 42, cmdSN: c.cmdSN, expStatSN: c.expStatSN }));
    const p = await waitForPdu(c, (x) => opcode(x) === 0x26 && ittOf(x) === itt);
    expect(p?.bhs[2]).toBe(1);
    await clearUnitAttentions(c, 0);
    expect(await c.logout()).toBe(0);
    c.close();
  });

  it('Logout reason 2 (remove the connection for recovery) answers 2 (recovery not supported) and keeps the connection', async () => {
    const c = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:logout-2' });
    expect(await c.logout(2)).toBe(2);
    await clearUnitAttentions(c, 0);
    expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);
    expect(await c.logout()).toBe(0);
    c.close();
  });
});
