/**
 * Copy operations: background copies (IMMED=1) with progress, COPY OPERATION ABORT,
 * LID1 list identifier rules and retention, RECEIVE COPY RESULTS service actions,
 * task-management aborts and LU resets stopping the copy I/O before the command ends,
 * and RESERVATION CONFLICT from the internal port.
 */
import { ScsiStatus, TmfFunction } from '../../../scsi/types';
import { ScsiDevice } from '../../../scsi/scsi-device';
import { MemoryStore, silentLogger, task, senseOf, nexus as makeNexus } from '../helpers';
import { BS, PacedStore, b2b, coaCdb, e4, identityWith, lid1, lid4, pattern, rcrCdb, xcopyCdb } from './helpers';
import pino from 'pino';
import { designatorsOf } from '../../../scsi/copy/cscd';
import { MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS, SUPPORTED_CSCD_IDS } from '../../../scsi/copy/limits';

const BLOCKS = 16384; // 8 MiB LUNs

function setup() {
  const stores = [new PacedStore(BLOCKS * BS), new PacedStore(BLOCKS * BS)];
  const device = new ScsiDevice({ logger: silentLogger, luns: stores.map((store, i) => ({ lun: i, store, identity: identityWith(i) })) });
  const naa = (i: number) => device.logicalUnit(i)!.identity.naa;
  return { stores, device, naa };
}

const tick = () => new Promise((r) => setImmediate(r));
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 2));
  }
}

function lid4Status(d: Buffer) {
  return {
    available: d.readUInt32BE(0),
    sa: d[4],
    status: d[5] & 0x7f,
    delay: d.readUInt32BE(8),
    completion: d[12],
    senseField: d[13],
    senseLength: d[14],
    units: d[15],
    transfer: Number(d.readBigUInt64BE(16)),
    segments: d.readUInt16BE(24),
  };
}

describe('background copies (EXTENDED COPY(LID4) IMMED=1)', () => {
  it('returns at once; RECEIVE COPY STATUS(LID4) reports progress, then completion', async () => {
    const { stores, device, naa } = setup();
    const data = pattern(4096 * BS, 9);
    data.copy(stores[0].data, 0);
    stores[0].paused = true;
    const p = lid4([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 4096, 0, 0)], { listId: 0x01020304, immed: true });
    const r = await device.execute(task(xcopyCdb(1, p.length), { dataOut: p }));
    expect(r.status).toBe(ScsiStatus.GOOD);
    const st = async () => lid4Status(Buffer.concat((await device.execute(task(rcrCdb(0x05, 0x01020304)))).dataIn!));
    let s = await st();
    expect([s.sa, s.status, s.transfer, s.delay]).toEqual([0x01, 0x12, 0, 100]); // in progress, background
    // let a few steps through
    stores[0].resume();
    stores[0].paused = true;
    await until(() => device.copyManager.running()[0]?.bytesTransferred > 0);
    s = await st();
    expect(s.status).toBe(0x12);
    expect(s.transfer).toBeGreaterThan(0);
    expect(s.transfer).toBeLessThan(4096 * BS);
    expect(device.copyManager.running()[0].percent).toBeLessThan(100);
    stores[0].resume();
    await until(() => device.copyManager.running().length === 0);
    s = await st();
    expect(s).toMatchObject({ status: 0x01, completion: 0x00, transfer: 4096 * BS, segments: 1, units: 0, delay: 0xfffffffe, senseLength: 0 });
    expect(stores[1].data.subarray(0, 4096 * BS).equals(data)).toBe(true);
  });

  it('COPY OPERATION ABORT stops it: I/O has stopped when the abort returns; status 60h, retained', async () => {
    const { stores, device, naa } = setup();
    stores[0].paused = true;
    const p = lid4([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 4096, 0, 0)], { listId: 7, immed: true });
    expect((await device.execute(task(xcopyCdb(1, p.length), { dataOut: p }))).status).toBe(ScsiStatus.GOOD);
    await until(() => stores[0].active === 1);
    const a = await device.execute(task(coaCdb(7)));
    expect(a.status).toBe(ScsiStatus.GOOD);
    expect(stores[0].active).toBe(0);
    const s = lid4Status(Buffer.concat((await device.execute(task(rcrCdb(0x05, 7)))).dataIn!));
    expect([s.status, s.completion]).toEqual([0x60, 0x40]);
    // not in progress any more -> 5/24/00 at the LIST IDENTIFIER
    const again = senseOf(await device.execute(task(coaCdb(7))));
    expect([again.key, again.asc, again.fieldPointer]).toEqual([5, 0x24, 2]);
  });

  it('a foreground copy ended by COPY OPERATION ABORT from the same nexus returns A/2F/02', async () => {
    const { stores, device, naa } = setup();
    stores[0].paused = true;
    const p = lid4([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 4096, 0, 0)], { listId: 9 });
    const fg = device.execute(task(xcopyCdb(1, p.length), { dataOut: p }));
    await until(() => stores[0].active === 1);
    expect((await device.execute(task(coaCdb(9)))).status).toBe(ScsiStatus.GOOD);
    const s = senseOf(await fg);
    expect([s.key, s.asc, s.ascq]).toEqual([0xa, 0x2f, 0x02]);
  });

  it('LU reset aborts background copies of the LU, and their I/O has stopped when the reset completes', async () => {
    const { stores, device, naa } = setup();
    stores[0].paused = true;
    const p = lid4([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 4096, 0, 0)], { listId: 11, immed: true });
    await device.execute(task(xcopyCdb(1, p.length), { dataOut: p }));
    await until(() => stores[0].active === 1);
    expect(await device.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, makeNexus(), 0)).toBe('complete');
    expect(stores[0].active).toBe(0);
    expect(device.copyManager.running()).toEqual([]);
  });

  it('ABORT TASK of a foreground copy: the command ends only after the copy I/O stopped', async () => {
    const { stores, device, naa } = setup();
    stores[0].paused = true;
    const ac = new AbortController();
    const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 4096, 0, 0)], { listId: 3 });
    const fg = device.execute(task(xcopyCdb(0, p.length), { dataOut: p, signal: ac.signal }));
    await until(() => stores[0].active === 1);
    ac.abort();
    const r = await fg;
    expect(r.aborted).toBe(true);
    expect(stores[0].active).toBe(0);
    // ABORT TASK does not discard the status (reference 2.2): it reads as completed with errors
    const st = Buffer.concat((await device.execute(task(rcrCdb(0x00, 3)))).dataIn!);
    expect(st[4]).toBe(0x02);
  });
});

describe('LID1 list identifiers, retention and RECEIVE COPY RESULTS', () => {
  it('a list identifier in use by a running copy -> 5/00/16; after completion it is reused', async () => {
    const { stores, device, naa } = setup();
    stores[0].paused = true;
    const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 1024, 0, 0)], { listId: 5 });
    const first = device.execute(task(xcopyCdb(0, p.length), { dataOut: p }));
    await until(() => stores[0].active === 1);
    const dup = senseOf(await device.execute(task(xcopyCdb(0, p.length), { dataOut: p })));
    expect([dup.key, dup.asc, dup.ascq]).toEqual([5, 0x00, 0x16]);
    // another nexus has its own namespace
    const other = makeNexus();
    await device.execute(task([0x00, 0, 0, 0, 0, 0], { nexus: other })); // clear nothing; no UA without attach
    // RECEIVE COPY STATUS(LID1) while running: in progress, not discarded
    const running = Buffer.concat((await device.execute(task(rcrCdb(0x00, 5)))).dataIn!);
    expect([running.readUInt32BE(0), running[4]]).toEqual([8, 0x00]);
    // FAILURE DETAILS of a running copy -> 5/24/00
    expect(senseOf(await device.execute(task(rcrCdb(0x04, 5)))).asc).toBe(0x24);
    stores[0].resume();
    expect((await first).status).toBe(ScsiStatus.GOOD);
    expect((await device.execute(task(xcopyCdb(0, p.length), { dataOut: p }))).status).toBe(ScsiStatus.GOOD);
  });

  it('LIST ID USAGE 10b (QEMU: list ID 1 every time, results never asked for): a duplicate of a running copy runs too, LID1 and LID4; 00b still refuses', async () => {
    for (const sa of [0, 1] as const) {
      const { stores, device, naa } = setup();
      stores[0].paused = true;
      const mk = (src: number, dst: number, usage: number) => {
        const seg = [b2b(0, 1, 256, src, dst)];
        return sa === 0 ? lid1([e4(naa(0)), e4(naa(1))], seg, { listId: 1, usage }) : lid4([e4(naa(0)), e4(naa(1))], seg, { listId: 1, usage });
      };
      pattern(1024 * BS, 21).copy(stores[0].data, 0);
      const a = mk(0, 0, 2);
      const b = mk(256, 256, 2);
      const first = device.execute(task(xcopyCdb(sa, a.length), { dataOut: a }));
      await until(() => stores[0].active === 1);
      const second = device.execute(task(xcopyCdb(sa, b.length), { dataOut: b }));
      await until(() => stores[0].active === 2);
      // 00b keeps SPC-5 5.17.4.3: a list identifier in use -> 5/00/16
      const c = mk(512, 512, 0);
      const dup = senseOf(await device.execute(task(xcopyCdb(sa, c.length), { dataOut: c })));
      expect([dup.key, dup.asc, dup.ascq]).toEqual([5, 0x00, 0x16]);
      stores[0].resume();
      expect([(await first).status, (await second).status]).toEqual([ScsiStatus.GOOD, ScsiStatus.GOOD]);
      expect(stores[1].data.subarray(0, 512 * BS).equals(stores[0].data.subarray(0, 512 * BS))).toBe(true);
      await device.close();
    }
  });

  it('RECEIVE COPY STATUS(LID1) returns a completed status once, then 5/24/00', async () => {
    const { device, naa } = setup();
    const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 8, 0, 0), b2b(0, 1, 8, 8, 8)], { listId: 0x21, usage: 2 });
    expect((await device.execute(task(xcopyCdb(0, p.length), { dataOut: p }))).status).toBe(ScsiStatus.GOOD);
    const st = Buffer.concat((await device.execute(task(rcrCdb(0x00, 0x21)))).dataIn!);
    expect([st.readUInt32BE(0), st[4], st.readUInt16BE(5), st[7], st.readUInt32BE(8)]).toEqual([8, 0x01, 2, 0x00, 16 * BS]);
    const gone = senseOf(await device.execute(task(rcrCdb(0x00, 0x21))));
    expect([gone.key, gone.asc, gone.fieldPointer, gone.cd]).toEqual([5, 0x24, 2, true]);
  });

  it('LIST ID USAGE 11b retains nothing', async () => {
    const { device, naa } = setup();
    const p = lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100)], { listId: 0, usage: 3 });
    expect((await device.execute(task(xcopyCdb(0, p.length), { dataOut: p }))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await device.execute(task(rcrCdb(0x00, 0)))).asc).toBe(0x24);
  });

  it('RECEIVE COPY FAILURE DETAILS(LID1) returns the sense of a failed copy once; none for a good one', async () => {
    const { device, naa } = setup();
    const bad = lid1([e4(naa(0))], [b2b(0, 1, 8, 0, 0)], { listId: 0x31 });
    const r = await device.execute(task(xcopyCdb(0, bad.length), { dataOut: bad }));
    const d = Buffer.concat((await device.execute(task(rcrCdb(0x04, 0x31)))).dataIn!);
    expect(d.readUInt32BE(0)).toBe(d.length - 4);
    expect(d[56]).toBe(0x02);
    expect(d.subarray(60, 60 + d.readUInt16BE(58)).equals(r.sense!)).toBe(true);
    expect(senseOf(await device.execute(task(rcrCdb(0x04, 0x31)))).asc).toBe(0x24);
    const good = lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100)], { listId: 0x32 });
    await device.execute(task(xcopyCdb(0, good.length), { dataOut: good }));
    expect(Buffer.concat((await device.execute(task(rcrCdb(0x04, 0x32)))).dataIn!).readUInt32BE(0)).toBe(0);
  });

  it('the retained status of a nexus goes with the nexus (I_T nexus loss), and expires after the retention time', async () => {
    const { device, naa } = setup();
    const n = makeNexus();
    device.attachNexus(n);
    await device.execute(task([0, 0, 0, 0, 0, 0], { nexus: n })); // takes the power-on UA
    const p = lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100)], { listId: 0x41 });
    expect((await device.execute(task(xcopyCdb(0, p.length), { dataOut: p, nexus: n }))).status).toBe(ScsiStatus.GOOD);
    expect(device.copyManager.find(n.key, 0, 0x41)?.state).toBe('completed');
    device.detachNexus(n);
    expect(device.copyManager.find(n.key, 0, 0x41)).toBeUndefined();
  });

  it('RECEIVE COPY OPERATING PARAMETERS reports the engine limits; VPD 8Fh the same numbers', async () => {
    const { device } = setup();
    const op = Buffer.concat((await device.execute(task(rcrCdb(0x03, 0)))).dataIn!);
    expect(op.readUInt32BE(0)).toBe(op.length - 4);
    expect(op[4] & 1).toBe(1); // SNLID
    expect([op.readUInt16BE(8), op.readUInt16BE(10), op.readUInt32BE(12)]).toEqual([MAX_CSCD_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH]);
    expect([...op.subarray(44, 44 + op[43])]).toEqual([0x02, 0x07, 0x0a, 0xe4]);
    const vpd = Buffer.concat((await device.execute(task([0x12, 0x01, 0x8f, 0x10, 0x00, 0], { edtl: 4096 }))).dataIn!);
    expect([vpd[1], vpd.readUInt16BE(2)]).toEqual([0x8f, vpd.length - 4]);
    const descs = new Map<number, Buffer>();
    let types: number[] = [];
    for (let off = 4; off < vpd.length; ) {
      const type = vpd.readUInt16BE(off);
      const len = vpd.readUInt16BE(off + 2);
      expect(len % 4).toBe(0);
      descs.set(type, vpd.subarray(off, off + 4 + len));
      types.push(type);
      off += 4 + len;
    }
    // ascending type order; 0000h/0106h/0108h come with POPULATE TOKEN (issue 5)
    expect(types).toEqual([0x0000, 0x0001, 0x0004, 0x0008, 0x000c, 0x0106, 0x0108, 0x8001]);
    const sc = descs.get(0x0001)!;
    expect([...sc.subarray(5, 5 + sc[4])]).toEqual([0x83, 5, 0x00, 0x01, 0x10, 0x11, 0x1c, 0x84, 6, 0x00, 0x03, 0x04, 0x05, 0x07, 0x08]);
    const pd = descs.get(0x0004)!;
    expect([pd.readUInt16BE(8), pd.readUInt16BE(10), pd.readUInt32BE(12), pd.readUInt32BE(16)]).toEqual([MAX_CSCD_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, 0]);
    const sd = descs.get(0x0008)!;
    expect([...sd.subarray(5, 5 + sd[4])]).toEqual([...op.subarray(44, 44 + op[43])]);
    const ids = descs.get(0x000c)!;
    expect(ids.readUInt16BE(4)).toBe(2 * SUPPORTED_CSCD_IDS.length);
    expect(ids.readUInt16BE(6)).toBe(0xffff);
    const gco = descs.get(0x8001)!;
    expect([gco.readUInt32BE(4), gco.readUInt32BE(8)]).toEqual([op.readUInt16BE(34), op[36]]);
    // MAXIMUM SEGMENT LENGTH (issue 11 point 6): the same in both, and not 0 ("no limit", which
    // ESXi's xcopy-use-array-values rule cannot use as a transfer size): 256 MiB, as LIO reports.
    expect(gco.readUInt32BE(12)).toBe(op.readUInt32BE(16));
    expect(op.readUInt32BE(16)).toBe(256 * 1024 * 1024);
    types = [];
  });
});

describe('copy I/O passes the pipeline checks of host I/O', () => {
  it('a destination whose reservation another initiator holds -> RESERVATION CONFLICT, nothing written', async () => {
    const { stores, device, naa } = setup();
    const real = device.admitCopyIo.bind(device);
    const spy = jest.spyOn(device, 'admitCopyIo').mockImplementation((n, lun, cdb) => (lun === 1 && cdb[0] === 0x8a ? ScsiStatus.RESERVATION_CONFLICT : real(n, lun, cdb)));
    stores[0].data.fill(0x77, 0, 8 * BS);
    const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 8, 0, 0)]);
    const r = await device.execute(task(xcopyCdb(0, p.length), { dataOut: p }));
    expect(r.status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect(stores[1].data[0]).toBe(0);
    spy.mockRestore();
  });

  it('a write-protected destination -> COPY ABORTED (third-party device failure) naming the segment', async () => {
    const src = new MemoryStore(BLOCKS * BS);
    const ro = new MemoryStore(BLOCKS * BS, 512, 512, true);
    const device = new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store: src, identity: identityWith(0) }, { lun: 1, store: ro, identity: identityWith(1) }] });
    const p = lid1([e4(identityWith(0).naa), e4(identityWith(1).naa)], [b2b(0, 1, 8, 0, 0)]);
    const s = senseOf(await device.execute(task(xcopyCdb(0, p.length), { dataOut: p })));
    expect([s.key, s.asc, s.ascq, s.fieldPointer]).toEqual([0xa, 0x0d, 0x01, 48]);
  });
});

describe('per-command costs kept off the copy path (issue 12)', () => {
  it('the outcome line of a foreground copy is written once the command has its result (after the status), in the next check phase', async () => {
    const lines: Array<{ msg: string; copy?: number; bytes?: number }> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const stores = [new MemoryStore(BLOCKS * BS), new MemoryStore(BLOCKS * BS)];
    const device = new ScsiDevice({ logger, luns: stores.map((store, i) => ({ lun: i, store, identity: identityWith(i) })) });
    const naa = (i: number) => device.logicalUnit(i)!.identity.naa;
    for (let id = 1; id <= 3; id++) {
      const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 8 * id, 0, 0)], { listId: id });
      const r = await device.execute(task(xcopyCdb(0, p.length), { dataOut: p }));
      expect(r.status).toBe(ScsiStatus.GOOD);
      // the result is ready; the line is not written yet ...
      expect(lines.filter((l) => l.copy === id)).toEqual([]);
      // ... nor in the first setImmediate queued once the result is known (a transport's: iSCSI uncorks
      // the status PDU there) ...
      await tick();
      expect(lines.filter((l) => l.copy === id)).toEqual([]);
      await tick();
      // ... but right after it, exactly once
      expect(lines.filter((l) => l.copy === id)).toEqual([expect.objectContaining({ msg: 'copy completed', bytes: 8 * id * BS })]);
    }
    await device.close();
  });

  it('hundreds of retained operations later, copies are still admitted and each list identifier finds its own (the running count goes down as each ends)', async () => {
    const { stores, device, naa } = setup();
    pattern(64 * BS, 4).copy(stores[0].data, 0);
    const N = 300; // more than TOTAL_CONCURRENT_COPIES (255), all retained (LIST ID USAGE 00b)
    for (let id = 0; id < N; id++) {
      const p = lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 1 + (id % 64), 0, 0)], { listId: id & 0xff });
      expect((await device.execute(task(xcopyCdb(0, p.length), { dataOut: p }))).status).toBe(ScsiStatus.GOOD);
    }
    expect(device.copyManager.running()).toEqual([]);
    // list IDs 0..43 were used twice (copies 256..299 replaced the first ones): RECEIVE COPY STATUS(LID1) finds the newest
    for (const id of [0, 43, 44, 255]) {
      const r = await device.execute(task(rcrCdb(0x00, id)));
      expect(r.status).toBe(ScsiStatus.GOOD);
      const d = Buffer.concat(r.dataIn!);
      const last = id < N - 256 ? id + 256 : id;
      expect([d[4], d.readUInt16BE(5), d[7]]).toEqual([0x01, 1, 0]); // completed, one segment, TRANSFER COUNT in bytes
      expect(d.readUInt32BE(8)).toBe((1 + (last % 64)) * BS);
    }
    await device.close();
  });

  it('an LU\'s designators are built once (every CSCD and token creator resolution compares against them)', () => {
    const { device } = setup();
    const lu = device.logicalUnit(0)!;
    expect(designatorsOf(lu)).toBe(designatorsOf(lu));
    expect(designatorsOf(lu)[0].value.equals(lu.identity.naa)).toBe(true);
  });
});
