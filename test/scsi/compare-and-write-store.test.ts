/**
 * COMPARE AND WRITE on a store that compares and writes itself
 * (BackingStore.compareAndWrite, the RBD store's rbd_compare_and_write,
 * atomic in the OSD and so across nodes): the core hands the whole operation
 * to the store under the same range lock, maps its miscompare offset to
 * MISCOMPARE's INFORMATION, and keeps FUA; it never reads and writes itself.
 */
import { ScsiStatus } from '../../scsi/types';
import type { WriteOptions } from '../../scsi/backing-store';
import { makeDevice, task, senseOf, MemoryStore } from './helpers';

const BS = 512;

function caw(lba: number, nlb: number, flags = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x89;
  b[1] = flags;
  b.writeBigUInt64BE(BigInt(lba), 2);
  b[13] = nlb;
  return b;
}

/** A memory store whose compare-and-write is its own; reads by the core are counted. */
class CawStore extends MemoryStore {
  reads = 0;
  caws: Array<{ offset: number; fua: boolean }> = [];
  gate: Promise<void> | undefined;

  override async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    return super.read(offset, length);
  }

  async compareAndWrite(offset: number, compare: Buffer, data: Buffer, options: WriteOptions = {}): Promise<number | null> {
    this.caws.push({ offset, fua: options.fua === true });
    if (this.gate) await this.gate;
    const current = this.data.subarray(offset, offset + compare.length);
    for (let i = 0; i < compare.length; i++) if (current[i] !== compare[i]) return i;
    data.copy(this.data, offset);
    this.writes++;
    return null;
  }
}

describe('COMPARE AND WRITE through the store', () => {
  it('uses the store: writes on match, miscompare -> E/1D/00 with its offset, nothing written, no read by the core', async () => {
    const store = new CawStore(64 * BS);
    store.data.fill(1, 3 * BS, 5 * BS);
    const device = makeDevice([store]);
    const ok = Buffer.concat([Buffer.alloc(2 * BS, 1), Buffer.alloc(2 * BS, 2)]);
    expect((await device.execute(task(caw(3, 2), { dataOut: ok }))).status).toBe(ScsiStatus.GOOD);
    expect(store.caws).toEqual([{ offset: 3 * BS, fua: false }]);
    expect(store.data.subarray(3 * BS, 5 * BS).every((b) => b === 2)).toBe(true);
    const bad = Buffer.concat([Buffer.alloc(2 * BS, 2), Buffer.alloc(2 * BS, 3)]);
    bad[BS + 9] = 0;
    const s = senseOf(await device.execute(task(caw(3, 2), { dataOut: bad })));
    expect([s.key, s.asc, s.ascq, s.valid, s.information]).toEqual([0xe, 0x1d, 0, true, BS + 9]);
    expect(store.data.subarray(3 * BS, 5 * BS).every((b) => b === 2)).toBe(true);
    expect(store.reads).toBe(0);
  });

  it('FUA=1 reaches the store as fua', async () => {
    const store = new CawStore(64 * BS);
    const device = makeDevice([store]);
    const ok = Buffer.concat([Buffer.alloc(BS, 0), Buffer.alloc(BS, 7)]);
    expect((await device.execute(task(caw(0, 1, 0x08), { dataOut: ok }))).status).toBe(ScsiStatus.GOOD);
    expect(store.caws).toEqual([{ offset: 0, fua: true }]);
  });

  it('holds the range: a WRITE to the same LBA waits for the store compare-and-write', async () => {
    const store = new CawStore(64 * BS);
    const device = makeDevice([store]);
    let open!: () => void;
    store.gate = new Promise<void>((r) => (open = r));
    const cawP = device.execute(task(caw(0, 1), { dataOut: Buffer.concat([Buffer.alloc(BS, 0), Buffer.alloc(BS, 0xaa)]) }));
    await new Promise((r) => setImmediate(r));
    const wP = device.execute(task([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: Buffer.alloc(BS, 0xbb) }));
    await new Promise((r) => setImmediate(r));
    expect(store.writes).toBe(0);
    open();
    expect((await cawP).status).toBe(ScsiStatus.GOOD);
    expect((await wP).status).toBe(ScsiStatus.GOOD);
    expect(store.data[0]).toBe(0xbb);
  });

  it('longer than the store\'s compareAndWriteMaxBytes: the core reads, compares and writes itself', async () => {
    const store = new CawStore(64 * BS);
    Object.assign(store, { compareAndWriteMaxBytes: BS });
    const device = makeDevice([store]);
    const one = Buffer.concat([Buffer.alloc(BS, 0), Buffer.alloc(BS, 4)]);
    expect((await device.execute(task(caw(0, 1), { dataOut: one }))).status).toBe(ScsiStatus.GOOD);
    expect(store.caws.length).toBe(1);
    const two = Buffer.concat([Buffer.alloc(2 * BS, 0), Buffer.alloc(2 * BS, 5)]);
    expect((await device.execute(task(caw(8, 2), { dataOut: two }))).status).toBe(ScsiStatus.GOOD);
    expect(store.caws.length).toBe(1);
    expect(store.reads).toBe(1);
    expect(store.data.subarray(8 * BS, 10 * BS).every((b) => b === 5)).toBe(true);
  });

  it('a store failure maps like a write failure (EIO -> 3/0C/00)', async () => {
    const store = new CawStore(64 * BS);
    store.compareAndWrite = async () => {
      throw Object.assign(new Error('EIO'), { code: 'EIO' });
    };
    const device = makeDevice([store]);
    const s = senseOf(await device.execute(task(caw(0, 1), { dataOut: Buffer.alloc(2 * BS) })));
    expect([s.key, s.asc, s.ascq]).toEqual([3, 0x0c, 0]);
  });
});
