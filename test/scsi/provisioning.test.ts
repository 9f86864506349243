import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScsiStatus } from '../../scsi/types';
import { FileStore } from '../../src/backing/file-store';
import { ScsiDevice } from '../../scsi/scsi-device';
import { makeDevice, task, senseOf, dataOf, MemoryStore, silentLogger, identity } from './helpers';

const BS = 512;

function ws16(lba: number, blocks: number, flags = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x93;
  b[1] = flags;
  b.writeBigUInt64BE(BigInt(lba), 2);
  b.writeUInt32BE(blocks, 10);
  return b;
}
function ws10(lba: number, blocks: number, flags = 0): number[] {
  return [0x41, flags, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
}
function unmapList(ranges: Array<[number, number]>): Buffer {
  const b = Buffer.alloc(8 + 16 * ranges.length);
  b.writeUInt16BE(b.length - 2, 0);
  b.writeUInt16BE(16 * ranges.length, 2);
  ranges.forEach(([lba, n], i) => {
    b.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
    b.writeUInt32BE(n, 16 + 16 * i);
  });
  return b;
}
const unmapCdb = (len: number) => [0x42, 0, 0, 0, 0, 0, 0, len >> 8, len & 0xff, 0];
function glbs(lba: number, alloc = 4096): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x9e;
  b[1] = 0x12;
  b.writeBigUInt64BE(BigInt(lba), 2);
  b.writeUInt32BE(alloc, 10);
  return b;
}
function caw(lba: number, nlb: number, flags = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x89;
  b[1] = flags;
  b.writeBigUInt64BE(BigInt(lba), 2);
  b[13] = nlb;
  return b;
}

describe('WRITE SAME', () => {
  it('replicates one block over the range', async () => {
    const store = new MemoryStore(256 * BS);
    const device = makeDevice([store]);
    const block = Buffer.alloc(BS, 0x42);
    expect((await device.execute(task(ws10(10, 20), { dataOut: block }))).status).toBe(ScsiStatus.GOOD);
    expect(store.data.subarray(10 * BS, 30 * BS).every((b) => b === 0x42)).toBe(true);
    expect(store.data[30 * BS]).toBe(0);
  });

  it('0 blocks = to the end of the medium (WSNZ=0); LBA past the end -> 5/21/00', async () => {
    const store = new MemoryStore(256 * BS);
    const device = makeDevice([store]);
    expect((await device.execute(task(ws10(250, 0), { dataOut: Buffer.alloc(BS, 1) }))).status).toBe(ScsiStatus.GOOD);
    expect(store.data.subarray(250 * BS).every((b) => b === 1)).toBe(true);
    expect(senseOf(await device.execute(task(ws10(257, 0), { dataOut: Buffer.alloc(BS) }))).asc).toBe(0x21);
  });

  it('longer than MAXIMUM WRITE SAME LENGTH -> 5/24/00', async () => {
    const small = new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store: new MemoryStore(256 * BS), identity: identity(), limits: { maxWriteSameLength: 8 } }] });
    expect(senseOf(await small.execute(task(ws10(0, 9), { dataOut: Buffer.alloc(BS) }))).asc).toBe(0x24);
    expect((await small.execute(task(ws10(0, 8), { dataOut: Buffer.alloc(BS) }))).status).toBe(ScsiStatus.GOOD);
  });

  it('UNMAP=1 with a zero block deallocates; NDOB needs no Data-Out', async () => {
    const store = new MemoryStore(256 * BS);
    store.data.fill(7);
    const device = makeDevice([store]);
    const t = task(ws16(16, 32, 0x09), { edtl: 0 });
    expect((await device.execute(t)).status).toBe(ScsiStatus.GOOD);
    expect(t.requested).toEqual([]);
    expect(store.punched).toEqual([[16 * BS, 32 * BS]]);
    expect(store.data.subarray(16 * BS, 48 * BS).every((b) => b === 0)).toBe(true);
  });

  it('UNMAP=1 deallocates whatever the block holds (LIO, tgtd; libiscsi WriteSame10.UnmapUntilEnd)', async () => {
    const store = new MemoryStore(256 * BS);
    const device = makeDevice([store]);
    await device.execute(task(ws16(0, 4, 0x08), { dataOut: Buffer.alloc(BS, 9) }));
    expect(store.punched).toEqual([[0, 4 * BS]]);
    expect(store.data.subarray(0, 4 * BS).every((b) => b === 0)).toBe(true);
  });

  it('UNMAP=1 on a store that cannot deallocate -> 5/24/00 at byte 1 bit 3', async () => {
    const device = makeDevice([new MemoryStore(256 * BS, BS, BS, false, false)]);
    const s = senseOf(await device.execute(task(ws16(0, 4, 0x08), { dataOut: Buffer.alloc(BS) })));
    expect([s.asc, s.fieldPointer, s.bit]).toEqual([0x24, 1, 3]);
  });

  it('Data-Out other than one block -> rejected, nothing written', async () => {
    const store = new MemoryStore(256 * BS);
    const device = makeDevice([store]);
    expect((await device.execute(task(ws10(0, 1), { dataOut: Buffer.alloc(2 * BS, 1) }))).status).toBe(ScsiStatus.CHECK_CONDITION);
    expect((await device.execute(task(ws10(0, 1), { dataOut: Buffer.alloc(BS / 2, 1) }))).status).toBe(ScsiStatus.CHECK_CONDITION);
    expect(store.writes).toBe(0);
  });
});

describe('UNMAP', () => {
  it('deallocates every descriptor', async () => {
    const store = new MemoryStore(256 * BS);
    store.data.fill(5);
    const device = makeDevice([store]);
    const list = unmapList([[0, 8], [100, 4]]);
    expect((await device.execute(task(unmapCdb(list.length), { dataOut: list }))).status).toBe(ScsiStatus.GOOD);
    expect(store.punched).toEqual([[0, 8 * BS], [100 * BS, 4 * BS]]);
  });

  it('length 0 is a no-op; 1..7 -> 5/1A/00; range past the end -> 5/21/00 and nothing unmapped', async () => {
    const store = new MemoryStore(256 * BS);
    const device = makeDevice([store]);
    expect((await device.execute(task(unmapCdb(0), { edtl: 0 }))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await device.execute(task(unmapCdb(6), { dataOut: Buffer.alloc(6) }))).asc).toBe(0x1a);
    const list = unmapList([[0, 8], [250, 8]]);
    expect(senseOf(await device.execute(task(unmapCdb(list.length), { dataOut: list }))).asc).toBe(0x21);
    expect(store.punched).toEqual([]);
  });

  it('too many descriptors -> 5/26/00', async () => {
    const device = makeDevice([new MemoryStore(4096 * BS)]);
    const list = unmapList(Array.from({ length: 257 }, (_, i): [number, number] => [i, 1]));
    const s = senseOf(await device.execute(task(unmapCdb(list.length), { dataOut: list })));
    expect([s.key, s.asc, s.cd]).toEqual([5, 0x26, false]);
  });
});

describe('COMPARE AND WRITE', () => {
  it('writes on match; miscompare -> E/1D/00 with offset, nothing written', async () => {
    const store = new MemoryStore(64 * BS);
    store.data.fill(1, 0, BS);
    const device = makeDevice([store]);
    const ok = Buffer.concat([Buffer.alloc(BS, 1), Buffer.alloc(BS, 2)]);
    expect((await device.execute(task(caw(0, 1), { dataOut: ok }))).status).toBe(ScsiStatus.GOOD);
    expect(store.data.subarray(0, BS).every((b) => b === 2)).toBe(true);
    const bad = Buffer.concat([Buffer.alloc(BS, 2), Buffer.alloc(BS, 3)]);
    bad[77] = 0;
    const s = senseOf(await device.execute(task(caw(0, 1), { dataOut: bad })));
    expect([s.key, s.asc, s.ascq, s.valid, s.information]).toEqual([0xe, 0x1d, 0, true, 77]);
    expect(store.data.subarray(0, BS).every((b) => b === 2)).toBe(true);
  });

  it('NLB 0 is GOOD; NLB above the limit -> 5/24/00; wrong Data-Out size -> rejected', async () => {
    const device = makeDevice([new MemoryStore(64 * BS)]);
    expect((await device.execute(task(caw(0, 0), { edtl: 0 }))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await device.execute(task(caw(0, 17), { dataOut: Buffer.alloc(34 * BS) }))).fieldPointer).toBe(13);
    expect((await device.execute(task(caw(0, 1), { dataOut: Buffer.alloc(3 * BS) }))).status).toBe(ScsiStatus.CHECK_CONDITION);
  });

  it('is atomic against a concurrent write to the same LBA', async () => {
    const store = new MemoryStore(64 * BS);
    const device = makeDevice([store]);
    // Slow the store's read so a WRITE can try to slip between compare and write.
    const origRead = store.read.bind(store);
    let releaseRead!: () => void;
    const gate = new Promise<void>((r) => (releaseRead = r));
    store.read = async (o, l) => {
      await gate;
      return origRead(o, l);
    };
    const cawP = device.execute(task(caw(0, 1), { dataOut: Buffer.concat([Buffer.alloc(BS, 0), Buffer.alloc(BS, 0xaa)]) }));
    await new Promise((r) => setImmediate(r));
    const wP = device.execute(task([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: Buffer.alloc(BS, 0xbb) }));
    await new Promise((r) => setImmediate(r));
    expect(store.writes).toBe(0); // the WRITE waits for the range
    releaseRead();
    expect((await cawP).status).toBe(ScsiStatus.GOOD);
    expect((await wP).status).toBe(ScsiStatus.GOOD);
    expect(store.data[0]).toBe(0xbb); // applied after, not lost in between
    expect(store.writes).toBe(2);
  });
});

describe('GET LBA STATUS on a sparse file', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'xcopyd-glbs-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const linux = process.platform === 'linux' ? it : it.skip;
  linux('reports mapped and deallocated extents; UNMAP/WRITE SAME UNMAP make holes', async () => {
    const store = await FileStore.open({ path: join(dir, 'lu.img'), sizeBytes: 8 * 1024 * 1024 });
    const device = makeDevice([store]);
    try {
      const mib = 2048; // blocks per MiB
      // Write 2 MiB at 2 MiB.
      for (let i = 0; i < 2; i++) {
        const w = Buffer.alloc(mib * BS, 0x11);
        const cdb = Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        cdb.writeUInt32BE(2 * mib + i * mib, 2);
        cdb.writeUInt16BE(mib, 7);
        expect((await device.execute(task(cdb, { dataOut: w }))).status).toBe(ScsiStatus.GOOD);
      }
      let d = dataOf(await device.execute(task(glbs(0))));
      expect(d.readBigUInt64BE(8)).toBe(0n);
      expect(d.readUInt32BE(16)).toBe(2 * mib);
      expect(d[20]).toBe(1); // deallocated
      expect(d.readBigUInt64BE(24)).toBe(BigInt(2 * mib));
      expect(d.readUInt32BE(32)).toBe(2 * mib);
      expect(d[36]).toBe(0); // mapped
      // UNMAP the first MiB of the data.
      const list = unmapList([[2 * mib, mib]]);
      expect((await device.execute(task(unmapCdb(list.length), { dataOut: list }))).status).toBe(ScsiStatus.GOOD);
      d = dataOf(await device.execute(task(glbs(2 * mib))));
      expect(d.readBigUInt64BE(8)).toBe(BigInt(2 * mib)); // first descriptor starts at the requested LBA
      expect(d[20]).toBe(1);
      expect(d.readUInt32BE(16)).toBe(mib);
      // WRITE SAME(16) UNMAP NDOB over the rest.
      expect((await device.execute(task(ws16(3 * mib, mib, 0x09), { edtl: 0 }))).status).toBe(ScsiStatus.GOOD);
      d = dataOf(await device.execute(task(glbs(0))));
      expect(d.readUInt32BE(0)).toBe(4 + 16); // one extent: all deallocated
      expect(d[20]).toBe(1);
      // VPD B2h and READ CAPACITY(16) advertise it.
      const b2 = dataOf(await device.execute(task([0x12, 1, 0xb2, 0, 64, 0])));
      expect(b2[5] & 0xe0).toBe(0xe0);
      const rc = dataOf(await device.execute(task([0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])));
      expect(rc[14] & 0xc0).toBe(0xc0);
      expect(senseOf(await device.execute(task(glbs(8 * mib)))).asc).toBe(0x21);
    } finally {
      await device.close();
    }
  });
});
