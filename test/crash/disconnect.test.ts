/**
 * Disconnects and resets (issue 7), against an in-process daemon so the
 * leak checks can read its state:
 *
 *  - the connection dropped while the target waits for R2T data, in the
 *    middle of a large read's Data-In, and during a long foreground
 *    EXTENDED COPY (512 MiB): the session leaves the registry, the device's
 *    task set and nexus are gone, the copy engine's pooled buffers are all
 *    back (src/backing/buffer-pool.ts), and the foreground copy is aborted
 *    with its nexus (SAM-5 6.3.4: tasks of a lost I_T nexus are aborted);
 *    a background (IMMED) copy is not a task: it runs to completion and its
 *    destination is then whole;
 *  - session reinstatement (same initiator and ISID) while the old
 *    connection hangs — its socket never read again, with reads queued on
 *    it — replaces the old session at once;
 *  - LOGICAL UNIT RESET and TARGET WARM RESET while four sessions do
 *    verified I/O: no miscompare, every session carries on after its unit
 *    attention, and nothing is left in the task sets afterwards.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Pdu } from '../../iscsi/pdu';
import { copyBufferPool } from '../../src/backing/buffer-pool';
import { startTestDaemon, type TestDaemon } from '../support/daemon';
import {
  Prng, TestInitiator, awaitResponse, cdb, clearUnitAttentions, openSession, startCommand, waitForPdu, waitUntil,
} from '../support/initiator';
import { b2b, e4, lid1, lid4, xcopyCdb } from '../scsi/copy/helpers';

jest.setTimeout(180_000);

const seed = Number(process.env.XCOPYD_TEST_SEED ?? crypto.randomInt(2 ** 31));
const opcode = (p: Pdu): number => p.bhs[0] & 0x3f;
const ittOf = (p: Pdu): number => p.bhs.readUInt32BE(16);
const MiB = 1024 * 1024;
const BS = 512;

interface Internals {
  tasks: Set<{ nexusKey: string }>;
  nexuses: Map<string, unknown>;
  copyManager: { running(): unknown[] };
}

function internals(td: TestDaemon): Internals {
  const d = td.daemon.server!.targets()[0].device as unknown as Partial<Internals> & { inner?: unknown };
  if (!d.tasks || !d.nexuses || !d.copyManager) throw new Error('ScsiDevice no longer has tasks/nexuses/copyManager: update this leak check');
  return d as Internals;
}

/** Everything a dropped session could leave behind is gone. */
async function expectClean(td: TestDaemon, keep: number): Promise<void> {
  const core = internals(td);
  expect(await waitUntil(() => td.daemon.server!.sessions().length === keep, 10_000)).toBe(true);
  expect(await waitUntil(() => core.tasks.size === 0, 10_000)).toBe(true);
  expect(await waitUntil(() => core.copyManager.running().length === 0, 30_000)).toBe(true);
  expect(core.nexuses.size).toBe(keep);
  expect(await waitUntil(() => copyBufferPool.inUse === 0, 10_000)).toBe(true);
}

async function naaOf(c: TestInitiator, lun: number): Promise<Buffer> {
  const r = await c.command(lun, cdb.inquiry(255, true, 0x83), { read: 255 });
  for (let o = 4; o + 4 <= r.data.length; o += 4 + r.data[o + 3]) {
    if ((r.data[o + 1] & 0x0f) === 3 && (r.data[o + 1] & 0x30) === 0) return Buffer.from(r.data.subarray(o + 4, o + 4 + r.data[o + 3]));
  }
  throw new Error('no NAA designator');
}

/** The TestInitiator's socket (private): to stop reading from it, as a hung host would. */
const socketOf = (c: TestInitiator): import('node:net').Socket => (c as unknown as { sock: import('node:net').Socket }).sock;

describe('connections dropped mid-command', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({}, '1GiB');
    // A 512 MiB source with data in it (not holes, which the copy would skip): written straight into the file.
    const fd = fs.openSync(path.join(td.dataDir, 'lun0.img'), 'r+');
    const chunk = Buffer.alloc(8 * MiB);
    for (let o = 0; o < 512 * MiB; o += chunk.length) {
      chunk.fill((o / chunk.length) & 0xff);
      chunk.writeUInt32BE(o, 0);
      fs.writeSync(fd, chunk, 0, chunk.length, o);
    }
    fs.closeSync(fd);
  });
  afterAll(async () => td.stop());

  it('during R2T: the write waiting for its data is cleaned up with the session', async () => {
    const c = await openSession(td.port, { keys: { InitialR2T: 'Yes', ImmediateData: 'No' } });
    await clearUnitAttentions(c, 1);
    const { itt } = startCommand(c, 1, cdb.write10(0, 2048), { edtl: 2048 * BS, write: true });
    expect(await waitForPdu(c, (p) => opcode(p) === 0x31 && ittOf(p) === itt)).not.toBeNull();
    expect(internals(td).tasks.size).toBe(1);
    c.close();
    await expectClean(td, 0);
  });

  it('during Data-In: an 8 MiB read (the Block Limits maximum) dropped after its first PDU', async () => {
    const c = await openSession(td.port);
    await clearUnitAttentions(c, 0);
    const { itt } = startCommand(c, 0, cdb.read10(0, 16384), { edtl: 16384 * BS, read: true });
    expect(await waitForPdu(c, (p) => opcode(p) === 0x25 && ittOf(p) === itt, 10_000)).not.toBeNull();
    c.close();
    await expectClean(td, 0);
  });

  it('during a 512 MiB foreground EXTENDED COPY: the copy is aborted with its nexus, nothing is left running', async () => {
    const c = await openSession(td.port);
    await clearUnitAttentions(c, 0);
    await clearUnitAttentions(c, 1);
    const [n0, n1] = [await naaOf(c, 0), await naaOf(c, 1)];
    const segs = Array.from({ length: 32 }, (_, i) => b2b(0, 1, 32768, i * 32768, i * 32768));
    const params = lid1([e4(n0), e4(n1)], segs, { listId: 7 });
    const core = internals(td);
    const { itt } = startCommand(c, 0, xcopyCdb(0, params.length), { edtl: params.length, write: true, immediateData: params });
    expect(await waitUntil(() => core.copyManager.running().length === 1, 5000)).toBe(true);
    c.close();
    await expectClean(td, 0);
    void itt;
    // It stopped short: the last segment's destination is still the old (sparse) data.
    const v = await openSession(td.port);
    await clearUnitAttentions(v, 1);
    const tail = await v.command(1, cdb.read10(512 * 2048 - 8, 8), { read: 8 * BS });
    expect(tail.status).toBe(0);
    console.log(`foreground copy aborted: last block ${tail.data.every((b) => b === 0) ? 'not copied' : 'copied (the copy won the race)'}`);
    await v.logout();
    v.close();
    await expectClean(td, 0);
  });

  it('a background (IMMED) EXTENDED COPY outlives its connection and completes whole', async () => {
    const c = await openSession(td.port);
    await clearUnitAttentions(c, 0);
    await clearUnitAttentions(c, 1);
    const [n0, n1] = [await naaOf(c, 0), await naaOf(c, 1)];
    const segs = Array.from({ length: 8 }, (_, i) => b2b(0, 1, 32768, i * 32768, 600 * 2048 + i * 32768));
    const params = lid4([e4(n0), e4(n1)], segs, { listId: 9, immed: true });
    const r = await c.command(0, xcopyCdb(1, params.length), { dataOut: params });
    expect(r.status).toBe(0);
    c.close();
    await expectClean(td, 0);
    const v = await openSession(td.port);
    await clearUnitAttentions(v, 0);
    await clearUnitAttentions(v, 1);
    for (const mib of [0, 64, 127]) {
      const a = await v.command(0, cdb.read10(mib * 2048, 2048), { read: MiB });
      const b = await v.command(1, cdb.read10(600 * 2048 + mib * 2048, 2048), { read: MiB });
      expect(b.data.equals(a.data)).toBe(true);
    }
    await v.logout();
    v.close();
  });

  it('session reinstatement with the same ISID while the old connection hangs (never read again, reads queued on it)', async () => {
    const isid = Buffer.from([0x80, 0x77, 0, 0, 0, 1]);
    const name = 'iqn.2026-11.org.xcopyd:hung';
    const old = await openSession(td.port, { initiatorName: name, isid });
    await clearUnitAttentions(old, 0);
    const oldSession = td.daemon.server!.sessions().find((x) => x.initiatorName === name)!;
    socketOf(old).pause();
    for (let i = 0; i < 4; i++) startCommand(old, 0, cdb.read10(i * 8192, 8192), { edtl: 8192 * BS, read: true });
    await new Promise((r) => setTimeout(r, 200));
    const fresh = await openSession(td.port, { initiatorName: name, isid });
    expect(oldSession.closed).toBe(true);
    expect(td.daemon.server!.sessions().length).toBe(1);
    await clearUnitAttentions(fresh, 0);
    const w = await fresh.command(0, cdb.write10(100, 8), { dataOut: Buffer.alloc(8 * BS, 0x5a) });
    expect(w.status).toBe(0);
    expect((await fresh.command(0, cdb.read10(100, 8), { read: 8 * BS })).data.equals(Buffer.alloc(8 * BS, 0x5a))).toBe(true);
    // The hung connection goes too, although its peer never reads.
    expect(await waitUntil(() => td.daemon.server!.connectionCount() === 1, 10_000)).toBe(true);
    await fresh.logout();
    fresh.close();
    old.close();
    await expectClean(td, 0);
  });
});

describe('resets under load', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({ limits: { authFailureDelayMs: 10, nopInIntervalMs: 0 } });
  });
  afterAll(async () => td.stop());

  /**
   * Verified I/O that survives resets: a unit attention is taken and the
   * command retried; a command cleared by another initiator's reset gets no
   * answer (TAS=0), so after a short wait it is written off and, for a
   * write, its range is rewritten before being compared.
   */
  async function load(c: TestInitiator, region: number, rng: Prng, stop: () => boolean) {
    const res = { rounds: 0, miscompares: 0, errors: 0, cleared: 0, uas: 0 };
    const run = async (cdbBytes: Buffer, o: { dataOut?: Buffer; read?: number }) => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const { itt } = startCommand(c, 0, cdbBytes, { edtl: o.read ?? o.dataOut!.length, read: o.read !== undefined, write: !!o.dataOut, immediateData: o.dataOut });
        const r = await awaitResponse(c, itt, { dataOut: o.dataOut, timeoutMs: 1500 });
        if (!r) {
          res.cleared++;
          continue;
        }
        if (r.status === 2 && r.sense && (r.sense[2] & 0x0f) === 6) {
          res.uas++;
          continue;
        }
        return r;
      }
      return null;
    };
    while (!stop()) {
      res.rounds++;
      const n = rng.range(1, 32);
      const lba = region * 4096 + rng.int(4096 - n);
      const data = rng.bytes(n * BS);
      const w = await run(cdb.write10(lba, n), { dataOut: data });
      if (!w || w.status !== 0) {
        res.errors++;
        continue;
      }
      const r = await run(cdb.read10(lba, n), { read: n * BS });
      if (!r || r.status !== 0) {
        res.errors++;
        continue;
      }
      if (!r.data.equals(data)) res.miscompares++;
    }
    return res;
  }

  it('LOGICAL UNIT RESET and TARGET WARM RESET while four sessions do verified I/O', async () => {
    const clients = await Promise.all(Array.from({ length: 4 }, (_, i) => openSession(td.port, { initiatorName: `iqn.2026-11.org.xcopyd:load-${i}`, keys: { ImmediateData: 'Yes', InitialR2T: 'No', FirstBurstLength: '65536' } })));
    for (const c of clients) await clearUnitAttentions(c, 0);
    const admin = await openSession(td.port, { initiatorName: 'iqn.2026-11.org.xcopyd:admin' });
    await clearUnitAttentions(admin, 0);
    let stop = false;
    const runs = clients.map((c, i) => load(c, i, new Prng(seed + i), () => stop));
    await new Promise((r) => setTimeout(r, 500));
    expect(await admin.tmf(5, 0)).toBe(0); // LOGICAL UNIT RESET
    await new Promise((r) => setTimeout(r, 500));
    expect(await admin.tmf(6, 0)).toBe(0); // TARGET WARM RESET
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    const results = await Promise.all(runs);
    console.log(`resets under load (seed ${seed}): ${JSON.stringify(results)}`);
    for (const r of results) {
      expect(r.miscompares).toBe(0);
      expect(r.errors).toBe(0);
      expect(r.rounds).toBeGreaterThan(3);
    }
    // Every session still works, and nothing is left in the task set.
    for (const c of clients) {
      await clearUnitAttentions(c, 0);
      expect((await c.command(0, cdb.read10(0, 1), { read: BS })).status).toBe(0);
    }
    expect(await waitUntil(() => internals(td).tasks.size === 0, 10_000)).toBe(true);
    for (const c of [...clients, admin]) {
      await c.logout();
      c.close();
    }
    await expectClean(td, 0);
  });
});
