import { ScsiStatus } from '../../scsi/types';
import { makeDevice, task, senseOf, dataOf, MemoryStore } from './helpers';

const BS = 512;
const BLOCKS = 1024;

function rw10(op: number, lba: number, blocks: number, flags = 0): number[] {
  return [op, flags, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
}
function rw16(op: number, lba: bigint, blocks: number, flags = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = op;
  b[1] = flags;
  b.writeBigUInt64BE(lba, 2);
  b.writeUInt32BE(blocks, 10);
  return b;
}
function pattern(blocks: number, seed: number): Buffer {
  const b = Buffer.alloc(blocks * BS);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

describe('READ / WRITE', () => {
  let store: MemoryStore;
  let device: ReturnType<typeof makeDevice>;
  beforeEach(() => {
    store = new MemoryStore(BLOCKS * BS);
    device = makeDevice([store]);
  });

  it.each([
    ['10', (lba: number, n: number, w: boolean) => rw10(w ? 0x2a : 0x28, lba, n)],
    ['12', (lba: number, n: number, w: boolean) => [w ? 0xaa : 0xa8, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, 0, n, 0, 0]],
    ['16', (lba: number, n: number, w: boolean) => [...rw16(w ? 0x8a : 0x88, BigInt(lba), n)]],
    ['6', (lba: number, n: number, w: boolean) => [w ? 0x0a : 0x08, 0, (lba >> 8) & 0xff, lba & 0xff, n, 0]],
  ])('round trip with %s-byte CDBs', async (_n, cdb) => {
    const data = pattern(3, 11);
    const w = await device.execute(task(cdb(100, 3, true), { dataOut: data }));
    expect(w.status).toBe(ScsiStatus.GOOD);
    expect(w.dataOutLength).toBe(3 * BS);
    expect(store.data.subarray(100 * BS, 103 * BS).equals(data)).toBe(true);
    const r = await device.execute(task(cdb(100, 3, false), { edtl: 3 * BS }));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(r.dataInLength).toBe(3 * BS);
    expect(dataOf(r).equals(data)).toBe(true);
  });

  it('READ(6) transfer length 0 means 256 blocks', async () => {
    const r = await device.execute(task([0x08, 0, 0, 0, 0, 0], { edtl: 256 * BS }));
    expect(r.dataInLength).toBe(256 * BS);
  });

  it('READ(10) transfer length 0: GOOD, no data', async () => {
    const r = await device.execute(task(rw10(0x28, 0, 0)));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(r.dataInLength ?? 0).toBe(0);
  });

  it('LBA range: lba + count > capacity -> 5/21/00; exactly to the end is fine', async () => {
    expect((await device.execute(task(rw10(0x28, BLOCKS - 2, 2), { edtl: 2 * BS }))).status).toBe(ScsiStatus.GOOD);
    const s = senseOf(await device.execute(task(rw10(0x28, BLOCKS - 1, 2), { edtl: 2 * BS })));
    expect([s.key, s.asc, s.ascq]).toEqual([5, 0x21, 0]);
    expect(senseOf(await device.execute(task(rw10(0x28, BLOCKS + 1, 0)))).asc).toBe(0x21);
    expect((await device.execute(task(rw10(0x28, BLOCKS, 0)))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await device.execute(task(rw16(0x88, 0xffffffffffffffffn, 1)))).asc).toBe(0x21);
    expect(senseOf(await device.execute(task(rw10(0x2a, BLOCKS, 1), { dataOut: pattern(1, 0) }))).asc).toBe(0x21);
  });

  it('transfer length above MAXIMUM TRANSFER LENGTH -> 5/24/00', async () => {
    const big = makeDevice([new MemoryStore(40000 * BS)]);
    const s = senseOf(await big.execute(task(rw10(0x28, 0, 16385), { edtl: 16385 * BS })));
    expect([s.asc, s.fieldPointer]).toEqual([0x24, 7]);
  });

  it('READ overflow (EDTL < length): sends EDTL bytes, reports the full length', async () => {
    store.data.fill(0x5a, 0, 2 * BS);
    const r = await device.execute(task(rw10(0x28, 0, 2), { edtl: 200 }));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(r.dataInLength).toBe(2 * BS);
    expect(dataOf(r).length).toBe(200);
  });

  it('WRITE underflow (EDTL > length): takes only the CDB length', async () => {
    const t = task(rw10(0x2a, 0, 1), { dataOut: pattern(2, 1) });
    const r = await device.execute(t);
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(t.requested).toEqual([BS]);
    expect(r.dataOutLength).toBe(BS);
    expect(store.data.subarray(BS, 2 * BS).every((x) => x === 0)).toBe(true);
  });

  it('WRITE overflow by whole blocks: writes what EDTL covers, GOOD, dataOutLength = CDB length', async () => {
    const t = task(rw10(0x2a, 0, 2), { dataOut: pattern(1, 2), edtl: BS });
    const r = await device.execute(t);
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(r.dataOutLength).toBe(2 * BS);
    expect(store.data.subarray(0, BS).equals(pattern(1, 2))).toBe(true);
    expect(store.data.subarray(BS, 2 * BS).every((x) => x === 0)).toBe(true);
  });

  it('WRITE overflow by a partial block: 5/0E/03, nothing written', async () => {
    const r = await device.execute(task(rw10(0x2a, 0, 1), { dataOut: Buffer.alloc(200, 1), edtl: 200 }));
    const s = senseOf(r);
    expect([s.key, s.asc, s.ascq]).toEqual([5, 0x0e, 0x03]);
    expect(r.dataOutLength).toBe(BS);
    expect(store.writes).toBe(0);
  });

  it('FUA makes the write durable; WCE=1 without FUA does not', async () => {
    await device.execute(task(rw10(0x2a, 0, 1), { dataOut: pattern(1, 3) }));
    expect(store.fuaWrites).toBe(0);
    await device.execute(task(rw10(0x2a, 0, 1, 0x08), { dataOut: pattern(1, 3) }));
    expect(store.fuaWrites).toBe(1);
  });

  it('WRPROTECT bits -> 5/24/00 at byte 1', async () => {
    const s = senseOf(await device.execute(task(rw10(0x2a, 0, 1, 0x20), { dataOut: pattern(1, 0) })));
    expect([s.asc, s.fieldPointer, s.bit]).toEqual([0x24, 1, 5]);
  });

  it('read-only LU: writes -> 7/27/00, reads fine', async () => {
    const ro = makeDevice([new MemoryStore(BLOCKS * BS, BS, BS, true)]);
    const s = senseOf(await ro.execute(task(rw10(0x2a, 0, 1), { dataOut: pattern(1, 0) })));
    expect([s.key, s.asc, s.ascq]).toEqual([7, 0x27, 0]);
    expect((await ro.execute(task(rw10(0x28, 0, 1), { edtl: BS }))).status).toBe(ScsiStatus.GOOD);
  });

  it('store errors: ENOSPC -> 7/27/07, EIO on write -> 3/0C/00, EIO on read -> 3/11/00, other -> 4/44/00', async () => {
    store.failNext = 'ENOSPC';
    let s = senseOf(await device.execute(task(rw10(0x2a, 0, 1), { dataOut: pattern(1, 0) })));
    expect([s.key, s.asc, s.ascq]).toEqual([7, 0x27, 7]);
    store.failNext = 'EIO';
    s = senseOf(await device.execute(task(rw10(0x2a, 0, 1), { dataOut: pattern(1, 0) })));
    expect([s.key, s.asc, s.ascq]).toEqual([3, 0x0c, 0]);
    store.failNext = 'EIO';
    s = senseOf(await device.execute(task(rw10(0x28, 0, 1), { edtl: BS })));
    expect([s.key, s.asc, s.ascq]).toEqual([3, 0x11, 0]);
    store.failNext = 'EWEIRD';
    s = senseOf(await device.execute(task(rw10(0x28, 0, 1), { edtl: BS })));
    expect([s.key, s.asc, s.ascq]).toEqual([4, 0x44, 0]);
  });
});

describe('VERIFY / WRITE AND VERIFY', () => {
  let store: MemoryStore;
  let device: ReturnType<typeof makeDevice>;
  beforeEach(() => {
    store = new MemoryStore(BLOCKS * BS);
    device = makeDevice([store]);
    pattern(4, 9).copy(store.data, 10 * BS);
  });

  it('BYTCHK=01b match -> GOOD; mismatch -> E/1D/00 with the byte offset', async () => {
    const ok = await device.execute(task(rw10(0x2f, 10, 4, 0x02), { dataOut: pattern(4, 9) }));
    expect(ok.status).toBe(ScsiStatus.GOOD);
    const bad = pattern(4, 9);
    bad[BS + 17] ^= 0xff;
    const r = await device.execute(task(rw10(0x2f, 10, 4, 0x02), { dataOut: bad }));
    const s = senseOf(r);
    expect([s.key, s.asc, s.ascq, s.valid, s.information]).toEqual([0xe, 0x1d, 0, true, BS + 17]);
  });

  it('BYTCHK=00b: no data compared, GOOD', async () => {
    const t = task(rw10(0x2f, 10, 4, 0x00), { edtl: 0 });
    expect((await device.execute(t)).status).toBe(ScsiStatus.GOOD);
    expect(t.requested).toEqual([]);
  });

  it('BYTCHK=11b: one block compared against every block', async () => {
    store.data.fill(0x33, 0, 3 * BS);
    expect((await device.execute(task(rw10(0x2f, 0, 3, 0x06), { dataOut: Buffer.alloc(BS, 0x33) }))).status).toBe(ScsiStatus.GOOD);
    store.data[2 * BS + 5] = 0;
    const s = senseOf(await device.execute(task(rw10(0x2f, 0, 3, 0x06), { dataOut: Buffer.alloc(BS, 0x33) })));
    expect(s.key).toBe(0xe);
  });

  it('BYTCHK=10b -> 5/24/00', async () => {
    expect(senseOf(await device.execute(task(rw10(0x2f, 0, 1, 0x04), { dataOut: Buffer.alloc(BS) }))).asc).toBe(0x24);
  });

  it('WRITE AND VERIFY writes durably; overflow with EDTL 0 is GOOD and writes nothing', async () => {
    const r = await device.execute(task(rw10(0x2e, 0, 1, 0x02), { dataOut: pattern(1, 4) }));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(store.fuaWrites).toBe(1);
    const r0 = await device.execute(task(rw10(0x2e, 5, 1, 0x02), { edtl: 0 }));
    expect(r0.status).toBe(ScsiStatus.GOOD);
    expect(r0.dataOutLength).toBe(BS);
    expect(store.writes).toBe(1);
  });
});

describe('SYNCHRONIZE CACHE', () => {
  it('flushes; range past capacity -> 5/21/00', async () => {
    const store = new MemoryStore(BLOCKS * BS);
    const device = makeDevice([store]);
    expect((await device.execute(task([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).status).toBe(ScsiStatus.GOOD);
    expect(store.flushes).toBe(1);
    expect(senseOf(await device.execute(task(rw10(0x35, BLOCKS - 1, 2)))).asc).toBe(0x21);
  });
});
