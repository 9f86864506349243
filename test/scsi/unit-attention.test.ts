import { ScsiStatus, TmfFunction } from '../../scsi/types';
import { makeDevice, task, senseOf, dataOf, nexus, MemoryStore } from './helpers';

const TUR = [0, 0, 0, 0, 0, 0];
const INQUIRY = [0x12, 0, 0, 0, 36, 0];
const REQUEST_SENSE = [0x03, 0, 0, 0, 18, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];

describe('unit attentions', () => {
  it('POWER ON/RESET on the first command of a new nexus, then GOOD', async () => {
    const device = makeDevice();
    const n = nexus();
    device.attachNexus(n);
    const r1 = await device.execute(task(TUR, { nexus: n }));
    const s = senseOf(r1);
    expect([r1.status, s.key, s.asc, s.ascq]).toEqual([ScsiStatus.CHECK_CONDITION, 6, 0x29, 0]);
    expect((await device.execute(task(TUR, { nexus: n }))).status).toBe(ScsiStatus.GOOD);
  });

  it('INQUIRY and REPORT LUNS neither report nor clear it; REQUEST SENSE returns and clears it', async () => {
    const device = makeDevice();
    const n = nexus();
    device.attachNexus(n);
    expect((await device.execute(task(INQUIRY, { nexus: n }))).status).toBe(ScsiStatus.GOOD);
    expect((await device.execute(task(REPORT_LUNS, { nexus: n }))).status).toBe(ScsiStatus.GOOD);
    const rs = await device.execute(task(REQUEST_SENSE, { nexus: n }));
    expect(rs.status).toBe(ScsiStatus.GOOD);
    const d = dataOf(rs);
    expect([d[0], d[2] & 0xf, d[12], d[13]]).toEqual([0x70, 6, 0x29, 0]);
    const again = dataOf(await device.execute(task(REQUEST_SENSE, { nexus: n })));
    expect([again[2] & 0xf, again[12]]).toEqual([0, 0]);
    expect((await device.execute(task(TUR, { nexus: n }))).status).toBe(ScsiStatus.GOOD);
  });

  it('are per nexus: one nexus clearing does not clear another', async () => {
    const device = makeDevice();
    const a = nexus();
    const b = nexus();
    device.attachNexus(a);
    device.attachNexus(b);
    await device.execute(task(TUR, { nexus: a }));
    expect(senseOf(await device.execute(task(TUR, { nexus: b }))).asc).toBe(0x29);
  });

  it('REQUEST SENSE on a missing LUN: LOGICAL UNIT NOT SUPPORTED as data with GOOD', async () => {
    const device = makeDevice();
    const r = await device.execute(task(REQUEST_SENSE, { lun: 7 }));
    expect(r.status).toBe(ScsiStatus.GOOD);
    const d = dataOf(r);
    expect([d[2] & 0xf, d[12]]).toEqual([5, 0x25]);
  });

  it('LOGICAL UNIT RESET -> 6/29/03 for every nexus', async () => {
    const device = makeDevice();
    const a = nexus();
    const b = nexus();
    device.attachNexus(a);
    device.attachNexus(b);
    await device.execute(task(TUR, { nexus: a }));
    await device.execute(task(TUR, { nexus: b }));
    expect(await device.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, a, 0)).toBe('complete');
    for (const n of [a, b]) {
      const s = senseOf(await device.execute(task(TUR, { nexus: n })));
      expect([s.key, s.asc, s.ascq]).toEqual([6, 0x29, 0x03]);
    }
    expect(await device.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, a, 9)).toBe('no-such-lun');
  });

  it('detachNexus drops the queue', async () => {
    const device = makeDevice();
    const n = nexus();
    device.attachNexus(n);
    device.detachNexus(n);
    expect((await device.execute(task(TUR, { nexus: n }))).status).toBe(ScsiStatus.GOOD);
  });
});

describe('task abort', () => {
  const WRITE10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];

  it('a task waiting on dataOut is released by its own signal and resolves TASK ABORTED', async () => {
    const store = new MemoryStore(64 * 512);
    const device = makeDevice([store]);
    const ac = new AbortController();
    const p = device.execute(task(WRITE10, { edtl: 512, hangDataOut: true, signal: ac.signal }));
    await new Promise((r) => setImmediate(r));
    ac.abort();
    const r = await p;
    expect(r).toEqual({ status: ScsiStatus.TASK_ABORTED, aborted: true });
    expect(store.writes).toBe(0);
  });

  it('CLEAR TASK SET from another nexus aborts, waits, and raises 6/2F/00 for the victim', async () => {
    const device = makeDevice();
    const victim = nexus();
    const other = nexus();
    const p = device.execute(task(WRITE10, { edtl: 512, hangDataOut: true, nexus: victim }));
    await new Promise((r) => setImmediate(r));
    let settled = false;
    void p.then(() => (settled = true));
    expect(await device.taskManagement(TmfFunction.CLEAR_TASK_SET, other, 0)).toBe('complete');
    expect(settled).toBe(true);
    expect((await p).aborted).toBe(true);
    const s = senseOf(await device.execute(task(TUR, { nexus: victim })));
    expect([s.key, s.asc, s.ascq]).toEqual([6, 0x2f, 0x00]);
    expect((await device.execute(task(TUR, { nexus: other }))).status).toBe(ScsiStatus.GOOD);
  });

  it('ABORT TASK SET only touches the caller’s tasks', async () => {
    const device = makeDevice();
    const a = nexus();
    const b = nexus();
    const ta = device.execute(task(WRITE10, { edtl: 512, hangDataOut: true, nexus: a }));
    let bDone = false;
    const acB = new AbortController();
    const tb = device.execute(task(WRITE10, { edtl: 512, hangDataOut: true, nexus: b, signal: acB.signal }));
    void tb.then(() => (bDone = true));
    await new Promise((r) => setImmediate(r));
    expect(await device.taskManagement(TmfFunction.ABORT_TASK_SET, a, 0)).toBe('complete');
    expect((await ta).aborted).toBe(true);
    expect(bDone).toBe(false);
    acB.abort();
    expect((await tb).aborted).toBe(true);
  });

  it('an already aborted task is not executed', async () => {
    const store = new MemoryStore(64 * 512);
    const device = makeDevice([store]);
    const ac = new AbortController();
    ac.abort();
    const r = await device.execute(task(WRITE10, { dataOut: Buffer.alloc(512), signal: ac.signal }));
    expect(r.aborted).toBe(true);
    expect(store.writes).toBe(0);
  });

  it('capacityChanged() (the resize hook) -> 6/2A/09 CAPACITY DATA HAS CHANGED for every nexus', async () => {
    const device = makeDevice();
    const a = nexus();
    const b = nexus();
    for (const n of [a, b]) {
      device.attachNexus(n);
      await device.execute(task(TUR, { nexus: n }));
    }
    device.logicalUnit(0)!.capacityChanged();
    for (const n of [a, b]) {
      const s = senseOf(await device.execute(task(TUR, { nexus: n })));
      expect([s.key, s.asc, s.ascq]).toEqual([6, 0x2a, 0x09]);
    }
  });
});
