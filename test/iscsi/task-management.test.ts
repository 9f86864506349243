/**
 * Task management (RFC 7143 §11.5, §11.6) against an in-process daemon:
 * ABORT TASK on a write waiting for R2T data, ABORT TASK SET, CLEAR TASK SET,
 * LOGICAL UNIT RESET, TARGET WARM/COLD RESET, TASK REASSIGN at ERL 0, and
 * functions aimed at a LUN that does not exist. Writes wait for R2T
 * (InitialR2T=Yes, ImmediateData=No) so a task can be caught mid-transfer.
 *
 * "No response for a task" is checked with a NOP-Out barrier: the target
 * answers PDUs of one connection in order, so once the NOP-In echo is in,
 * anything the target was going to say about the aborted task is in too.
 */
import crypto from 'node:crypto';
import type { Pdu } from '../../iscsi/pdu';
import { TmfFunction } from '../../scsi/types';
import {
  TestInitiator,
  answerR2t,
  awaitResponse,
  cdb,
  clearUnitAttentions,
  openSession,
  startCommand,
  waitClosed,
  waitForPdu,
  waitUntil,
} from '../support/initiator';
import { startTestDaemon, TestDaemon } from '../support/daemon';

const R2T_ONLY = { InitialR2T: 'Yes', ImmediateData: 'No' };
const TMF_COMPLETE = 0;
const TMF_TASK_DOES_NOT_EXIST = 1;
const TMF_LUN_DOES_NOT_EXIST = 2;
const TMF_REASSIGN_NOT_SUPPORTED = 4;
const MISSING_LUN = 7;

const opcode = (p: Pdu): number => p.bhs[0] & 0x3f;
const ittOf = (p: Pdu): number => p.bhs.readUInt32BE(16);

let td: TestDaemon;
const open: TestInitiator[] = [];
let nameSeq = 0;

beforeAll(async () => {
  td = await startTestDaemon();
});

afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

afterAll(async () => {
  await td.stop();
});

/** A session with writes that wait for R2T, its unit attentions taken on both LUNs. */
async function session(): Promise<TestInitiator> {
  const c = await openSession(td.port, { initiatorName: `iqn.2026-11.org.xcopyd:tmf-${++nameSeq}`, keys: R2T_ONLY });
  open.push(c);
  await clearUnitAttentions(c, 0);
  await clearUnitAttentions(c, 1);
  return c;
}

/** Start a WRITE(10) and wait for its first R2T. */
async function writeWaitingForR2t(c: TestInitiator, lun: number, lba: number, blocks: number): Promise<{ itt: number; cmdSN: number; r2t: Pdu; data: Buffer }> {
  const data = crypto.randomBytes(blocks * 512);
  const { itt, cmdSN } = startCommand(c, lun, cdb.write10(lba, blocks), { edtl: data.length, write: true });
  const r2t = await waitForPdu(c, (p) => opcode(p) === 0x31 && ittOf(p) === itt);
  if (!r2t) throw new Error('no R2T for the write');
  return { itt, cmdSN, r2t, data };
}

/** Send a NOP-Out and wait for its echo; every PDU before it lands in c.stray. */
async function barrier(c: TestInitiator): Promise<void> {
  const itt = c.nopOut();
  const echo = await waitForPdu(c, (p) => opcode(p) === 0x20 && ittOf(p) === itt);
  if (!echo) throw new Error('no NOP-In echo: connection gone?');
}

/** What the target said about `itt` (SCSI Response, Data-In, R2T, Reject naming it) since the last check. */
function saidAbout(c: TestInitiator, itt: number): number[] {
  const ops: number[] = [];
  for (const p of c.stray) {
    if (ittOf(p) === itt && [0x21, 0x25, 0x31].includes(opcode(p))) ops.push(opcode(p));
    if (opcode(p) === 0x3f && p.data.length >= 48 && p.data.readUInt32BE(16) === itt) ops.push(0x3f);
  }
  return ops;
}

async function expectUa(c: TestInitiator, lun: number, asc: number, ascq?: number): Promise<void> {
  const r = await c.command(lun, cdb.testUnitReady());
  expect(r.status).toBe(2);
  expect(r.sense![2] & 0x0f).toBe(6);
  expect(r.sense![12]).toBe(asc);
  if (ascq !== undefined) expect(r.sense![13]).toBe(ascq);
}

async function expectGood(c: TestInitiator, lun: number): Promise<void> {
  const r = await c.command(lun, cdb.testUnitReady());
  expect([r.status, r.sense?.subarray(12, 14).toString('hex')]).toEqual([0, undefined]);
}

async function readBack(c: TestInitiator, lun: number, lba: number, blocks: number): Promise<Buffer> {
  const r = await c.command(lun, cdb.read10(lba, blocks), { read: blocks * 512 });
  expect(r.status).toBe(0);
  return r.data;
}

describe('ABORT TASK', () => {
  it('aborts a WRITE waiting for R2T data: "function complete", no response for it, its late Data-Out ignored, the session goes on', async () => {
    const a = await session();
    const before = await readBack(a, 0, 100, 64);
    const w = await writeWaitingForR2t(a, 0, 100, 64);
    expect(await a.tmf(TmfFunction.ABORT_TASK, 0, w.itt, w.cmdSN)).toBe(TMF_COMPLETE);
    a.stray.length = 0;
    // The initiator had the data queued already: it arrives after the abort.
    answerR2t(a, w.r2t, w.data);
    await barrier(a);
    expect(saidAbout(a, w.itt)).toEqual([]);
    expect(a.closed).toBe(false);
    // The aborted write never reached the medium, and the session still works.
    expect((await readBack(a, 0, 100, 64)).equals(before)).toBe(true);
    const data = crypto.randomBytes(8 * 512);
    expect((await a.command(0, cdb.write10(100, 8), { dataOut: data })).status).toBe(0);
    expect((await readBack(a, 0, 100, 8)).equals(data)).toBe(true);
    // The same ITT names nothing now.
    expect(await a.tmf(TmfFunction.ABORT_TASK, 0, w.itt, w.cmdSN)).toBe(TMF_TASK_DOES_NOT_EXIST);
  });

  it('answers "task does not exist" for a tag that names no task', async () => {
    const a = await session();
    expect(await a.tmf(TmfFunction.ABORT_TASK, 0, 0x7777, 0)).toBe(TMF_TASK_DOES_NOT_EXIST);
    await expectGood(a, 0);
  });

  it('counts a command that never arrived as received when ABORT TASK names its CmdSN inside the window (RFC 7143 11.5.1 b)', async () => {
    const a = await session();
    await expectGood(a, 0);
    // The command with CmdSN `lost` is "lost on the way": the initiator moved on to lost+1.
    const lost = a.cmdSN;
    a.cmdSN = (a.cmdSN + 1) >>> 0;
    // Its tag names nothing here, but its CmdSN is in the window and before the TMF's own CmdSN.
    expect(await a.tmf(TmfFunction.ABORT_TASK, 0, 0x5151, lost)).toBe(TMF_COMPLETE);
    // lost+1 is delivered at once: nothing waits for the hole any more.
    const data = crypto.randomBytes(8 * 512);
    expect((await a.command(0, cdb.write10(200, 8), { dataOut: data })).status).toBe(0);
    expect((await readBack(a, 0, 200, 8)).equals(data)).toBe(true);
    // A CmdSN outside the window (long done) still names no task, and one not before the TMF's own either.
    expect(await a.tmf(TmfFunction.ABORT_TASK, 0, 0x5152, (lost - 1) >>> 0)).toBe(TMF_TASK_DOES_NOT_EXIST);
    expect(await a.tmf(TmfFunction.ABORT_TASK, 0, 0x5153, a.cmdSN)).toBe(TMF_TASK_DOES_NOT_EXIST);
    await expectGood(a, 0);
  });
});

describe('ABORT TASK SET', () => {
  it("aborts this session's tasks on the LUN only: other LUNs and other sessions keep theirs", async () => {
    const a = await session();
    const b = await session();
    const onLun0 = [await writeWaitingForR2t(a, 0, 200, 16), await writeWaitingForR2t(a, 0, 300, 16)];
    const onLun1 = await writeWaitingForR2t(a, 1, 200, 16);
    const otherSession = await writeWaitingForR2t(b, 0, 400, 16);

    expect(await a.tmf(TmfFunction.ABORT_TASK_SET, 0)).toBe(TMF_COMPLETE);
    a.stray.length = 0;
    for (const w of onLun0) answerR2t(a, w.r2t, w.data);
    await barrier(a);
    for (const w of onLun0) expect(saidAbout(a, w.itt)).toEqual([]);

    answerR2t(a, onLun1.r2t, onLun1.data);
    expect((await awaitResponse(a, onLun1.itt))?.status).toBe(0);
    answerR2t(b, otherSession.r2t, otherSession.data);
    expect((await awaitResponse(b, otherSession.itt))?.status).toBe(0);
    // ABORT TASK SET leaves no unit attention for anyone.
    await expectGood(a, 0);
    await expectGood(b, 0);
    expect((await readBack(b, 0, 400, 16)).equals(otherSession.data)).toBe(true);
  });

  it('answers "LUN does not exist" for a missing LUN', async () => {
    const a = await session();
    expect(await a.tmf(TmfFunction.ABORT_TASK_SET, MISSING_LUN)).toBe(TMF_LUN_DOES_NOT_EXIST);
  });
});

describe('CLEAR TASK SET', () => {
  it("aborts every session's tasks on the LUN; the other initiator learns it from 6/2F/00", async () => {
    const a = await session();
    const b = await session();
    const mine = await writeWaitingForR2t(a, 0, 500, 16);
    const theirs = await writeWaitingForR2t(b, 0, 600, 16);
    const elsewhere = await writeWaitingForR2t(b, 1, 600, 16);

    expect(await a.tmf(TmfFunction.CLEAR_TASK_SET, 0)).toBe(TMF_COMPLETE);
    a.stray.length = 0;
    answerR2t(a, mine.r2t, mine.data);
    await barrier(a);
    expect(saidAbout(a, mine.itt)).toEqual([]);

    // TAS=0: the other initiator's task ends without a response (SAM-5 7.4).
    b.stray.length = 0;
    answerR2t(b, theirs.r2t, theirs.data);
    await barrier(b);
    expect(saidAbout(b, theirs.itt)).toEqual([]);
    expect(b.closed).toBe(false);

    // A task on another LUN is untouched.
    answerR2t(b, elsewhere.r2t, elsewhere.data);
    expect((await awaitResponse(b, elsewhere.itt))?.status).toBe(0);

    await expectUa(b, 0, 0x2f, 0x00);
    await expectGood(b, 0);
    await expectGood(a, 0);
  });

  it('answers "LUN does not exist" for a missing LUN', async () => {
    const a = await session();
    expect(await a.tmf(TmfFunction.CLEAR_TASK_SET, MISSING_LUN)).toBe(TMF_LUN_DOES_NOT_EXIST);
  });
});

describe('LOGICAL UNIT RESET', () => {
  it('from session A leaves a 6/29/xx unit attention for session B on that LUN only', async () => {
    const a = await session();
    const b = await session();
    const pending = await writeWaitingForR2t(b, 1, 700, 16);

    expect(await a.tmf(TmfFunction.LOGICAL_UNIT_RESET, 1)).toBe(TMF_COMPLETE);

    // B's task on the reset LUN is gone without a response.
    b.stray.length = 0;
    answerR2t(b, pending.r2t, pending.data);
    await barrier(b);
    expect(saidAbout(b, pending.itt)).toEqual([]);

    await expectUa(b, 1, 0x29);
    await expectGood(b, 1);
    await expectGood(b, 0);
    await expectUa(a, 1, 0x29);
    await expectGood(a, 0);
  });

  it('answers "LUN does not exist" for a missing LUN', async () => {
    const a = await session();
    expect(await a.tmf(TmfFunction.LOGICAL_UNIT_RESET, MISSING_LUN)).toBe(TMF_LUN_DOES_NOT_EXIST);
  });
});

describe('TARGET WARM RESET', () => {
  it('aborts tasks on every LUN, leaves 6/29/xx on every LUN for every session, and keeps the connections', async () => {
    const a = await session();
    const b = await session();
    const pending = await writeWaitingForR2t(b, 0, 800, 16);

    expect(await a.tmf(TmfFunction.TARGET_WARM_RESET, 0)).toBe(TMF_COMPLETE);

    b.stray.length = 0;
    answerR2t(b, pending.r2t, pending.data);
    await barrier(b);
    expect(saidAbout(b, pending.itt)).toEqual([]);
    for (const c of [a, b]) {
      for (const lun of [0, 1]) {
        await expectUa(c, lun, 0x29);
        await expectGood(c, lun);
      }
    }
    expect(a.closed || b.closed).toBe(false);
  });
});

describe('TASK REASSIGN', () => {
  it('is answered "allegiance reassignment not supported" (4) at ErrorRecoveryLevel 0', async () => {
    const a = await session();
    const w = await writeWaitingForR2t(a, 0, 900, 8);
    expect(await a.tmf(TmfFunction.TASK_REASSIGN, 0, w.itt, w.cmdSN)).toBe(TMF_REASSIGN_NOT_SUPPORTED);
    // The task is still there and completes.
    answerR2t(a, w.r2t, w.data);
    expect((await awaitResponse(a, w.itt))?.status).toBe(0);
  });
});

describe('TARGET COLD RESET', () => {
  it('answers, then closes every connection to the target; a new login sees a power-on unit attention', async () => {
    const a = await session();
    const b = await session();
    const pending = await writeWaitingForR2t(b, 1, 1000, 16);
    void pending;

    expect(await a.tmf(TmfFunction.TARGET_COLD_RESET, 0)).toBe(TMF_COMPLETE);
    expect(await waitClosed(a, 5000)).toBe(true);
    expect(await waitClosed(b, 5000)).toBe(true);
    expect(await waitUntil(() => td.daemon.server!.sessions().length === 0, 5000)).toBe(true);

    const c = await openSession(td.port, { initiatorName: `iqn.2026-11.org.xcopyd:tmf-after-cold` });
    open.push(c);
    await expectUa(c, 0, 0x29);
    await expectGood(c, 0);
  });
});
