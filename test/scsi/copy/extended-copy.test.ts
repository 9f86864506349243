/**
 * EXTENDED COPY: every descriptor, and every header/length/count/type/index/
 * range error with the sense the standard names and its pointer.
 */
import { ScsiStatus } from '../../../scsi/types';
import { ScsiDevice } from '../../../scsi/scsi-device';
import { MemoryStore, silentLogger, task, senseOf } from '../helpers';
import { BS, b2b, bo, e4, e4T10, identityWith, lid1, lid4, pattern, rcrCdb, verify, xcopyCdb } from './helpers';
import { MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS } from '../../../scsi/copy/limits';

const BLOCKS = 2048;

function setup(o: { blockSizes?: number[]; blocks?: number } = {}) {
  const sizes = o.blockSizes ?? [BS, BS];
  const stores = sizes.map((bs) => new MemoryStore((o.blocks ?? BLOCKS) * BS, bs));
  const device = new ScsiDevice({
    logger: silentLogger,
    luns: stores.map((store, i) => ({ lun: i, store, identity: identityWith(i) })),
  });
  const naa = (i: number) => device.logicalUnit(i)!.identity.naa;
  const xcopy = (params: Buffer, lun = 0, sa: 0 | 1 = 0) =>
    device.execute(task(xcopyCdb(sa, params.length), { lun, dataOut: params }));
  return { stores, device, naa, xcopy };
}

function sense(r: { status: number; sense?: Buffer }) {
  expect(r.status).toBe(ScsiStatus.CHECK_CONDITION);
  const s = senseOf(r);
  return { key: s.key, asc: s.asc, ascq: s.ascq, sksv: s.sksv, fp: s.fieldPointer, cd: s.cd, sd: (r.sense![15] & 0x20) !== 0, csi: r.sense!.readUInt32BE(8), valid: s.valid, info: s.information };
}

describe('EXTENDED COPY(LID1) data movement', () => {
  it('02h between two LUs named by NAA E4h descriptors (QEMU form), and FFFFh for this LU', async () => {
    const { stores, naa, xcopy } = setup();
    const data = pattern(64 * BS, 1);
    data.copy(stores[0].data, 10 * BS);
    const r = await xcopy(lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 64, 10, 100)]));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(stores[1].data.subarray(100 * BS, 164 * BS).equals(data)).toBe(true);
    // FFFFh = the LU that received the command; within one LU at another offset
    const r2 = await xcopy(lid1([], [b2b(0xffff, 0xffff, 64, 10, 1000)]));
    expect(r2.status).toBe(ScsiStatus.GOOD);
    expect(stores[0].data.subarray(1000 * BS, 1064 * BS).equals(data)).toBe(true);
  });

  it('matches every LU designator of VPD 83h: T10 vendor ID and EUI-64 as well as NAA', async () => {
    const stores = [new MemoryStore(BLOCKS * BS), new MemoryStore(BLOCKS * BS)];
    const eui = Buffer.from('0ac0de0102030405', 'hex');
    const device = new ScsiDevice({
      logger: silentLogger,
      luns: [
        { lun: 0, store: stores[0], identity: identityWith(0) },
        { lun: 1, store: stores[1], identity: { ...identityWith(1), eui64: eui } },
      ],
    });
    pattern(8 * BS, 2).copy(stores[0].data, 0);
    const viaT10 = lid1([e4T10('XCOPYD', 'SERIAL0'), e4(eui, { type: 0x02 })], [b2b(0, 1, 8, 0, 8)]);
    const r = await device.execute(task(xcopyCdb(0, viaT10.length), { dataOut: viaT10 }));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(stores[1].data.subarray(8 * BS, 16 * BS).equals(stores[0].data.subarray(0, 8 * BS))).toBe(true);
  });

  it('0Ah copies bytes at byte offsets and preserves the bytes around them', async () => {
    const { stores, naa, xcopy } = setup();
    stores[0].data.set(pattern(4 * BS, 3), 0);
    stores[1].data.fill(0xee, 0, 8 * BS);
    const r = await xcopy(lid1([e4(naa(0)), e4(naa(1))], [bo(0, 1, 1000, 1, 2, 7, 300)]));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(stores[1].data.subarray(2 * BS + 300, 2 * BS + 1300).equals(stores[0].data.subarray(BS + 7, BS + 1007))).toBe(true);
    expect(stores[1].data[2 * BS + 299]).toBe(0xee);
    expect(stores[1].data[2 * BS + 1300]).toBe(0xee);
    // byte offset >= block size: COPY ABORTED, INVALID FIELD, pointer SD=1 byte 28
    const bad = sense(await xcopy(lid1([e4(naa(0)), e4(naa(1))], [bo(0, 1, 10, 0, 0, BS, 0)])));
    expect([bad.key, bad.asc, bad.ascq, bad.sd, bad.fp]).toEqual([0xa, 0x26, 0x00, true, 28]);
  });

  it('07h verify CSCD (TUR=0 and TUR=1) resolves the CSCD and moves nothing', async () => {
    const { naa, xcopy, stores } = setup();
    const writes = stores[1].writes;
    expect((await xcopy(lid1([e4(naa(1))], [verify(0), verify(0, true)]))).status).toBe(ScsiStatus.GOOD);
    expect(stores[1].writes).toBe(writes);
  });

  it('different block sizes where the bytes line up: 512 -> 4096 (DC=0 and DC=1); a residue needs PAD', async () => {
    const { stores, naa, xcopy } = setup({ blockSizes: [512, 4096], blocks: 1024 });
    const data = pattern(16 * 512, 4);
    data.copy(stores[0].data, 0);
    // 16 source blocks = 2 destination blocks
    expect((await xcopy(lid1([e4(naa(0)), e4(naa(1), { blockLength: 4096 })], [b2b(0, 1, 16, 0, 3)]))).status).toBe(ScsiStatus.GOOD);
    expect(stores[1].data.subarray(3 * 4096, 5 * 4096).equals(data)).toBe(true);
    // DC=1: 1 destination block = 8 source blocks
    expect((await xcopy(lid1([e4(naa(0)), e4(naa(1), { blockLength: 4096 })], [b2b(0, 1, 1, 8, 10, { dc: true })]))).status).toBe(ScsiStatus.GOOD);
    expect(stores[1].data.subarray(10 * 4096, 11 * 4096).equals(data.subarray(8 * 512, 16 * 512))).toBe(true);
    // 3 source blocks do not fill a 4096 block: PAD=0 -> A/26/0A UNEXPECTED INEXACT SEGMENT
    const inexact = sense(await xcopy(lid1([e4(naa(0)), e4(naa(1), { blockLength: 4096 })], [b2b(0, 1, 3, 0, 20)])));
    expect([inexact.key, inexact.asc, inexact.ascq, inexact.csi]).toEqual([0xa, 0x26, 0x0a, 0]);
    // PAD=1 on the destination: zeros fill the block
    stores[1].data.fill(0x55, 20 * 4096, 21 * 4096);
    expect((await xcopy(lid1([e4(naa(0)), e4(naa(1), { blockLength: 4096, pad: true })], [b2b(0, 1, 3, 0, 20)]))).status).toBe(ScsiStatus.GOOD);
    expect(stores[1].data.subarray(20 * 4096, 20 * 4096 + 1536).equals(data.subarray(0, 1536))).toBe(true);
    expect(stores[1].data.subarray(20 * 4096 + 1536, 21 * 4096).every((x) => x === 0)).toBe(true);
    // DISK BLOCK LENGTH that is not the LU's: A/26/00 pointing (SD=0) at byte 29 of that CSCD
    const bl = sense(await xcopy(lid1([e4(naa(0)), e4(naa(1), { blockLength: 512 })], [b2b(0, 1, 8, 0, 0)])));
    expect([bl.key, bl.asc, bl.ascq, bl.sd, bl.fp]).toEqual([0xa, 0x26, 0x00, false, 16 + 32 + 29]);
  });

  it('LU ID TYPE is ignored for E4h (SPC-4, libiscsi ValidTgtDescr); PDT other than disk -> A/0D/03', async () => {
    const { naa, xcopy } = setup();
    expect((await xcopy(lid1([e4(naa(0), { luIdType: 2 })], [b2b(0, 0, 8, 0, 100)]))).status).toBe(ScsiStatus.GOOD);
    const s = sense(await xcopy(lid1([e4(naa(0), { pdt: 1 })], [b2b(0, 0, 8, 0, 100)])));
    expect([s.key, s.asc, s.ascq]).toEqual([0xa, 0x0d, 0x03]);
  });

  it('overlapping source and destination in one LU copy as if through a buffer (memmove)', async () => {
    const { stores, xcopy } = setup({ blocks: 8192 });
    const data = pattern(4096 * BS, 5);
    data.copy(stores[0].data, 0);
    expect((await xcopy(lid1([], [b2b(0xffff, 0xffff, 4096, 0, 100)]))).status).toBe(ScsiStatus.GOOD);
    expect(stores[0].data.subarray(100 * BS, 4196 * BS).equals(data)).toBe(true);
    data.copy(stores[0].data, 100 * BS);
    expect((await xcopy(lid1([], [b2b(0xffff, 0xffff, 4096, 100, 0)]))).status).toBe(ScsiStatus.GOOD);
    expect(stores[0].data.subarray(0, 4096 * BS).equals(data)).toBe(true);
  });

  it('a READ sent after the copy completed sees the copied data', async () => {
    const { stores, device, naa, xcopy } = setup();
    pattern(8 * BS, 6).copy(stores[0].data, 0);
    expect((await xcopy(lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 8, 0, 40)]))).status).toBe(ScsiStatus.GOOD);
    const r = await device.execute(task([0x28, 0, 0, 0, 0, 40, 0, 0, 8, 0], { lun: 1, edtl: 8 * BS }));
    expect(Buffer.concat(r.dataIn!).equals(stores[0].data.subarray(0, 8 * BS))).toBe(true);
  });
});

describe('EXTENDED COPY parameter list errors (before any data moves: ILLEGAL REQUEST)', () => {
  const good = (naa: Buffer) => lid1([e4(naa)], [b2b(0, 0, 8, 0, 100)]);

  it('PARAMETER LIST LENGTH 0 -> GOOD, nothing transferred', async () => {
    const { device } = setup();
    const t = task(xcopyCdb(0, 0), { dataOut: Buffer.alloc(0) });
    expect((await device.execute(t)).status).toBe(ScsiStatus.GOOD);
    expect(t.requested).toEqual([]);
  });

  it('truncated header, CSCD list or segment list -> 5/1A/00', async () => {
    const { naa, xcopy } = setup();
    const p = good(naa(0));
    for (const n of [8, 16 + 31, 16 + 32 + 27]) {
      const s = sense(await xcopy(p.subarray(0, n)));
      expect([s.key, s.asc, s.ascq]).toEqual([5, 0x1a, 0]);
    }
    const l4 = lid4([e4(naa(0))], [b2b(0, 0, 8, 0, 100)]);
    expect(sense(await xcopy(l4.subarray(0, 40), 0, 1)).asc).toBe(0x1a);
  });

  it('LIST ID USAGE 01b -> 5/26/00 at byte 1 bit 4; 11b with a LIST IDENTIFIER -> 5/26/00 at byte 0', async () => {
    const { naa, xcopy } = setup();
    const a = sense(await xcopy(lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100)], { usage: 1 })));
    expect([a.key, a.asc, a.ascq, a.cd, a.fp, a.sksv]).toEqual([5, 0x26, 0, false, 1, true]);
    const b = sense(await xcopy(lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100)], { usage: 3, listId: 5 })));
    expect([b.asc, b.fp]).toEqual([0x26, 0]);
    expect((await xcopy(lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100)], { usage: 3, listId: 0 }))).status).toBe(ScsiStatus.GOOD);
  });

  it('LID4: PARAMETER LIST FORMAT other than 01h -> 5/26/00 at byte 0', async () => {
    const { naa, xcopy } = setup();
    const p = lid4([e4(naa(0))], [b2b(0, 0, 8, 0, 100)]);
    p[0] = 0x02;
    const s = sense(await xcopy(p, 0, 1));
    expect([s.asc, s.fp]).toEqual([0x26, 0]);
  });

  it('CSCD list length not a multiple of 32 -> 5/26/00 at byte 2', async () => {
    const { naa, xcopy } = setup();
    const p = good(naa(0));
    p.writeUInt16BE(31, 2);
    const s = sense(await xcopy(p));
    expect([s.asc, s.ascq, s.fp]).toEqual([0x26, 0, 2]);
  });

  it('descriptor limits: list length first (1A/00), then too many CSCDs (26/06), then too many segments (26/08)', async () => {
    const { naa, xcopy } = setup();
    const many = (n: number, f: () => Buffer) => Array.from({ length: n }, f);
    const c = sense(await xcopy(lid1(many(MAX_CSCD_DESCRIPTORS + 1, () => e4(naa(0))), [b2b(0, 0, 1, 0, 100)])));
    expect([c.asc, c.ascq]).toEqual([0x26, 0x06]);
    const s = sense(await xcopy(lid1([e4(naa(0))], many(MAX_SEGMENT_DESCRIPTORS + 1, () => b2b(0, 0, 1, 0, 100)))));
    expect([s.asc, s.ascq]).toEqual([0x26, 0x08]);
    const cscds = many(MAX_CSCD_DESCRIPTORS + 1, () => e4(naa(0)));
    const segs = many(Math.ceil((MAX_DESCRIPTOR_LIST_LENGTH - 32 * cscds.length) / 28) + 1, () => b2b(0, 0, 1, 0, 100));
    const l = sense(await xcopy(lid1(cscds, segs)));
    expect([l.asc, l.ascq]).toEqual([0x1a, 0]);
  });

  it('inline data beyond MAXIMUM INLINE DATA LENGTH (0) -> 5/26/0B', async () => {
    const { naa, xcopy } = setup();
    const p = Buffer.concat([lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100)], { inline: 4 }), Buffer.alloc(4)]);
    expect(sense(await xcopy(p)).ascq).toBe(0x0b);
  });

  it('unsupported CSCD type -> 5/26/07; unsupported segment type -> 5/26/09; wrong DESCRIPTOR LENGTH -> 5/26/00', async () => {
    const { naa, xcopy } = setup();
    const fc = e4(naa(0));
    fc[0] = 0xe0;
    const a = sense(await xcopy(lid1([fc], [b2b(0, 0, 8, 0, 100)])));
    expect([a.key, a.asc, a.ascq, a.fp]).toEqual([5, 0x26, 0x07, 16]);
    const stream = Buffer.alloc(24);
    stream[0] = 0x03;
    stream.writeUInt16BE(20, 2);
    const b = sense(await xcopy(lid1([e4(naa(0))], [stream])));
    expect([b.asc, b.ascq, b.fp]).toEqual([0x26, 0x09, 48]);
    const seg = b2b(0, 0, 8, 0, 100);
    const longer = Buffer.concat([seg, Buffer.alloc(4)]);
    longer.writeUInt16BE(0x1c, 2);
    const c = sense(await xcopy(lid1([e4(naa(0))], [longer])));
    expect([c.asc, c.ascq, c.fp]).toEqual([0x26, 0, 50]);
  });

  it('a CDB bit outside the usage mask -> 5/24/00 with its pointer; unknown 84h service action -> 5/24/00 byte 1', async () => {
    const { device } = setup();
    const cdb = xcopyCdb(0, 0);
    cdb[5] = 1;
    const s = sense(await device.execute(task(cdb, { dataOut: Buffer.alloc(0) })));
    expect([s.asc, s.fp, s.cd]).toEqual([0x24, 5, true]);
    const u = sense(await device.execute(task(rcrCdb(0x02, 0))));
    expect([u.asc, u.fp]).toEqual([0x24, 1]);
  });
});

describe('EXTENDED COPY segment errors (COPY ABORTED, segment number in CSI)', () => {
  it('CSCD index beyond the list -> A/08/04 pointing (SD=1) at the DESTINATION CSCD DESCRIPTOR ID', async () => {
    const { naa, xcopy } = setup();
    const s = sense(await xcopy(lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 8), b2b(0, 1, 8, 0, 100)])));
    expect([s.key, s.asc, s.ascq, s.sd, s.fp, s.csi]).toEqual([0xa, 0x08, 0x04, true, 6, 1]);
  });

  it('beyond capacity (source or destination) -> COPY ABORTED, and nothing of the list is done', async () => {
    const { stores, naa, xcopy } = setup();
    stores[0].data.fill(0x11, 0, 8 * BS);
    const s = sense(await xcopy(lid1([e4(naa(0))], [b2b(0, 0, 8, 0, 100), b2b(0, 0, 2048, 0, BLOCKS - 1)])));
    expect([s.key, s.asc, s.ascq, s.sd, s.fp, s.csi, s.valid]).toEqual([0xa, 0, 0, true, 20, 1, false]);
    expect(stores[0].data[100 * BS]).toBe(0); // segment 0 did not run either
    const src = sense(await xcopy(lid1([e4(naa(0))], [b2b(0, 0, 8, BLOCKS - 4, 0)])));
    expect([src.key, src.fp, src.csi]).toEqual([0xa, 12, 0]);
  });

  it('a designator no LU of the nexus has -> A/0D/02 COPY TARGET DEVICE NOT REACHABLE', async () => {
    const { xcopy } = setup();
    const stranger = Buffer.from('600a0000000000000000000000000099', 'hex');
    const s = sense(await xcopy(lid1([e4(stranger)], [b2b(0, 0, 8, 0, 100)])));
    expect([s.key, s.asc, s.ascq, s.sd, s.fp]).toEqual([0xa, 0x0d, 0x02, false, 16]);
  });

  it('an I/O failure mid-way -> A/0D/01 with the failed segment, the CSCD pointer and the residual', async () => {
    const { stores, naa, xcopy } = setup({ blocks: 16384 });
    let writes = 0;
    const realWrite = stores[1].write.bind(stores[1]);
    stores[1].write = async (off, data, o) => {
      if (++writes === 3) throw Object.assign(new Error('EIO'), { code: 'EIO' });
      return realWrite(off, data, o);
    };
    // segment 0: 1 MiB (one buffered write); segment 1: 4 MiB, fails on its second 1 MiB write
    const r = await xcopy(lid1([e4(naa(0)), e4(naa(1))], [b2b(0, 1, 2048, 0, 0), b2b(0, 1, 8192, 0, 4096)]));
    const s = sense(r);
    expect([s.key, s.asc, s.ascq, s.csi, s.sd, s.fp]).toEqual([0xa, 0x0d, 0x01, 1, false, 48]);
    expect(s.valid).toBe(true);
    expect(s.info).toBe(8192 - 2048); // destination blocks of segment 1 not written
  });
});
