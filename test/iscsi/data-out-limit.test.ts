/**
 * The per-command write buffer cap (config limits.maxWriteBuffer) is a SCSI
 * decision taken in the core where it asks for Data-Out, for the length the
 * command asks for (what its CDB implies, bounded by EDTL), not for EDTL:
 *
 *  - a legal underflow (EDTL far above the cap, the CDB asks for one block)
 *    is GOOD with the underflow residual;
 *  - a command that asks for more than the cap gets CHECK CONDITION ILLEGAL
 *    REQUEST / INVALID FIELD IN CDB (SBC-4 6.6.4, as LIO answers a transfer
 *    beyond fabric_max_sectors) through the core's one sense path: a pending
 *    unit attention is reported first, and D_SENSE=1 gives descriptor sense;
 *    no R2T goes out for it.
 *
 * Before, the connection refused any EDTL above the cap itself, with
 * fixed-format sense built by the daemon, skipping all of that.
 */
import { startTestDaemon, type TestDaemon } from '../support/daemon';
import { awaitResponse, cdb, clearUnitAttentions, openSession, startCommand, type TestInitiator } from '../support/initiator';

jest.setTimeout(60_000);

const CAP = 1024 * 1024;
const BS = 512;
const KEYS = { InitialR2T: 'Yes', ImmediateData: 'No' };

let td: TestDaemon;
beforeAll(async () => {
  td = await startTestDaemon({ limits: { authFailureDelayMs: 10, maxWriteBuffer: CAP } });
});
afterAll(async () => {
  await td.stop();
});

/** Start a WRITE(10) of `blocks` with `edtl`; answer R2Ts from a buffer of `edtl` bytes; count them. */
async function write(c: TestInitiator, blocks: number, edtl: number) {
  const { itt } = startCommand(c, 0, cdb.write10(0, blocks), { edtl, write: true, final: true });
  const r = await awaitResponse(c, itt, { timeoutMs: 10_000 });
  expect(r).not.toBeNull();
  return r!;
}

/** MODE SELECT(10) of the control mode page (0Ah) with D_SENSE set. */
async function setDescriptorSense(c: TestInitiator): Promise<void> {
  const sense = await c.command(0, Buffer.from([0x5a, 0x08, 0x0a, 0, 0, 0, 0, 0x01, 0x00, 0]), { read: 256 });
  expect(sense.status).toBe(0);
  const page = Buffer.from(sense.data.subarray(8, 8 + 2 + sense.data[9]));
  page[2] |= 0x04; // D_SENSE
  const data = Buffer.concat([Buffer.alloc(8), page]);
  const sel = Buffer.from([0x55, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]);
  sel.writeUInt16BE(data.length, 7);
  expect((await c.command(0, sel, { dataOut: data })).status).toBe(0);
}

describe('maxWriteBuffer is checked by the SCSI core on the length the command asks for', () => {
  it('a legal underflow (EDTL above the cap, one block asked) is GOOD with the residual', async () => {
    const c = await openSession(td.port, { keys: KEYS });
    await clearUnitAttentions(c, 0);
    const edtl = 2 * CAP;
    const { itt } = startCommand(c, 0, cdb.write10(0, 1), { edtl, write: true, final: true });
    const r = await awaitResponse(c, itt, { dataOut: Buffer.alloc(edtl, 9), timeoutMs: 10_000 });
    expect(r).not.toBeNull();
    expect(r!.status).toBe(0);
    expect(r!.flags & 0x02).toBe(0x02); // U: underflow
    expect(r!.residual).toBe(edtl - BS);
    c.close();
  });

  it('a command asking for more than the cap: 5/24/00 from the core, no R2T', async () => {
    const c = await openSession(td.port, { keys: KEYS });
    await clearUnitAttentions(c, 0);
    const blocks = (2 * CAP) / BS;
    const r = await write(c, blocks, 2 * CAP);
    expect(r.r2ts).toHaveLength(0);
    expect(r.status).toBe(2);
    expect(r.sense![0] & 0x7f).toBe(0x70);
    expect([r.sense![2] & 0x0f, r.sense![12], r.sense![13]]).toEqual([5, 0x24, 0]);
    // The session carries on.
    expect((await c.command(0, cdb.write10(0, 8), { dataOut: Buffer.alloc(4096, 3) })).status).toBe(0);
    c.close();
  });

  it('a pending unit attention is reported before the cap', async () => {
    const c = await openSession(td.port, { keys: KEYS, isid: Buffer.from([0x80, 0, 0, 0x21, 0, 1]) });
    const r = await write(c, (2 * CAP) / BS, 2 * CAP);
    expect(r.status).toBe(2);
    expect(r.sense![2] & 0x0f).toBe(6); // UNIT ATTENTION, not the cap's ILLEGAL REQUEST
    c.close();
  });

  it('D_SENSE=1: the refusal comes in descriptor format', async () => {
    const c = await openSession(td.port, { keys: KEYS });
    await clearUnitAttentions(c, 0);
    await setDescriptorSense(c);
    const r = await write(c, (2 * CAP) / BS, 2 * CAP);
    expect(r.status).toBe(2);
    expect(r.sense![0]).toBe(0x72);
    expect([r.sense![1] & 0x0f, r.sense![2], r.sense![3]]).toEqual([5, 0x24, 0]);
    c.close();
  });
});
