import { ScsiStatus } from '../../scsi/types';
import { makeDevice, task, senseOf, dataOf, MemoryStore } from './helpers';

const inquiry = (evpd: number, page: number, alloc = 255, lun = 0) => task([0x12, evpd, page, alloc >> 8, alloc & 0xff, 0], { lun });

describe('INQUIRY', () => {
  const device = makeDevice([new MemoryStore(2048 * 512, 512, 4096)]);

  it('standard data: PDT 0, SPC-4, HISUP/RDF 2, CMDQUE, identity fields', async () => {
    const r = await device.execute(inquiry(0, 0, 96));
    expect(r.status).toBe(ScsiStatus.GOOD);
    const d = dataOf(r);
    expect(d.length).toBe(96);
    expect(d[0]).toBe(0x00);
    expect(d[2]).toBe(0x06);
    expect(d[3]).toBe(0x12);
    expect(d[4]).toBe(91);
    expect(d[5] & 0x08).toBe(0x08); // 3PC: EXTENDED COPY is in the command table
    expect(d[7] & 0x02).toBe(0x02);
    expect(d.subarray(8, 16).toString('ascii')).toBe('XCOPYD  ');
    expect(d.subarray(16, 32).toString('ascii')).toBe('test disk       ');
    expect(d.subarray(32, 36).toString('ascii')).toBe('0001');
    expect(d.readUInt16BE(58)).toBe(0x00a0);
  });

  it('is limited by the allocation length (36 bytes)', async () => {
    const r = await device.execute(inquiry(0, 0, 36));
    expect(r.dataInLength).toBe(36);
  });

  it('LUN without a logical unit: PQ 011b / PDT 1Fh with GOOD', async () => {
    const r = await device.execute(inquiry(0, 0, 36, 5));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(dataOf(r)[0]).toBe(0x7f);
  });

  it('EVPD=0 with a page code -> 5/24/00 at byte 2', async () => {
    const s = senseOf(await device.execute(inquiry(0, 0x80)));
    expect([s.key, s.asc, s.fieldPointer]).toEqual([5, 0x24, 2]);
  });

  it('unsupported VPD page -> 5/24/00', async () => {
    expect(senseOf(await device.execute(inquiry(1, 0x99))).asc).toBe(0x24);
  });

  it('VPD 00h lists pages in ascending order, each one answers', async () => {
    const d = dataOf(await device.execute(inquiry(1, 0)));
    const pages = [...d.subarray(4, 4 + d.readUInt16BE(2))];
    expect(pages).toEqual([0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2]);
    for (const p of pages) {
      const r = await device.execute(inquiry(1, p));
      expect(r.status).toBe(ScsiStatus.GOOD);
      expect(dataOf(r)[1]).toBe(p);
    }
  });

  it('VPD 80h: serial from configuration', async () => {
    const d = dataOf(await device.execute(inquiry(1, 0x80)));
    expect(d.subarray(4, 4 + d[3]).toString('ascii')).toBe('SERIAL0');
  });

  it('VPD 83h: NAA 6, T10 vendor ID, relative target port, target port group', async () => {
    const d = dataOf(await device.execute(inquiry(1, 0x83)));
    const len = d.readUInt16BE(2);
    const descs: Array<{ codeSet: number; assoc: number; type: number; value: Buffer }> = [];
    for (let off = 4; off < 4 + len; ) {
      const l = d[off + 3];
      descs.push({ codeSet: d[off] & 0x0f, assoc: (d[off + 1] >> 4) & 3, type: d[off + 1] & 0x0f, value: d.subarray(off + 4, off + 4 + l) });
      off += 4 + l;
    }
    expect(descs.map((x) => [x.codeSet, x.assoc, x.type])).toEqual([[1, 0, 3], [2, 0, 1], [1, 1, 4], [1, 1, 5]]);
    expect(descs[0].value.length).toBe(16);
    expect(descs[0].value[0] >> 4).toBe(6);
    expect(descs[1].value.toString('ascii')).toBe('XCOPYD  SERIAL0');
    expect(descs[2].value.readUInt16BE(2)).toBe(1);
    expect(descs[3].value.readUInt16BE(2)).toBe(1);
  });

  it('VPD B0h: page length 3Ch and limits', async () => {
    const d = dataOf(await device.execute(inquiry(1, 0xb0)));
    expect(d.readUInt16BE(2)).toBe(0x3c);
    expect(d.length).toBe(64);
    expect(d.readUInt32BE(8)).toBe((8 * 1024 * 1024) / 512); // MAXIMUM TRANSFER LENGTH
    expect(d.readUInt16BE(6)).toBe(8); // OTLG = physical/logical
  });

  it('VPD B1h: non-rotating medium', async () => {
    const d = dataOf(await device.execute(inquiry(1, 0xb1)));
    expect(d.readUInt16BE(4)).toBe(1);
  });
});

describe('READ CAPACITY', () => {
  const device = makeDevice([new MemoryStore(2048 * 512, 512, 4096)]);

  it('(10): last LBA and block length', async () => {
    const d = dataOf(await device.execute(task([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
    expect(d.readUInt32BE(0)).toBe(2047);
    expect(d.readUInt32BE(4)).toBe(512);
  });

  it('(16): last LBA, block length, physical block exponent 3', async () => {
    const d = dataOf(await device.execute(task([0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])));
    expect(d.readBigUInt64BE(0)).toBe(2047n);
    expect(d.readUInt32BE(8)).toBe(512);
    expect(d[13] & 0x0f).toBe(3);
  });

  it('(10): LBA without PMI -> 5/24/00', async () => {
    expect(senseOf(await device.execute(task([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]))).asc).toBe(0x24);
  });
});

describe('REPORT LUNS', () => {
  const device = makeDevice([new MemoryStore(64 * 512), new MemoryStore(64 * 512)]);
  const rl = (sel: number, alloc = 4096, lun = 0) => task([0xa0, 0, sel, 0, 0, 0, alloc >>> 24, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0], { lun });

  it('select 0: every LU, peripheral addressing', async () => {
    const d = dataOf(await device.execute(rl(0)));
    expect(d.readUInt32BE(0)).toBe(16);
    expect([...d.subarray(8, 16)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...d.subarray(16, 24)]).toEqual([0, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('select 1: the REPORT LUNS well-known LUN; select 2: both', async () => {
    const d1 = dataOf(await device.execute(rl(1)));
    expect([...d1.subarray(8, 16)]).toEqual([0xc1, 0x01, 0, 0, 0, 0, 0, 0]);
    expect(dataOf(await device.execute(rl(2))).readUInt32BE(0)).toBe(24);
  });

  it('works on the well-known LUN and on a missing LUN', async () => {
    expect((await device.execute(rl(0, 4096, 0xc101))).status).toBe(ScsiStatus.GOOD);
    expect((await device.execute(rl(0, 4096, 9))).status).toBe(ScsiStatus.GOOD);
  });

  it('allocation length < 16 or unknown select report -> 5/24/00', async () => {
    const s = senseOf(await device.execute(rl(0, 15)));
    expect([s.asc, s.fieldPointer]).toEqual([0x24, 6]);
    expect(senseOf(await device.execute(rl(7))).fieldPointer).toBe(2);
  });

  it('other commands to a missing LUN -> 5/25/00', async () => {
    const s = senseOf(await device.execute(task([0, 0, 0, 0, 0, 0], { lun: 9 })));
    expect([s.key, s.asc]).toEqual([5, 0x25]);
  });
});

describe('MODE SENSE', () => {
  const store = new MemoryStore(128 * 512, 512, 512, true);
  const device = makeDevice([store]);

  it('(6) all pages: header, block descriptor, pages 08h/0Ah/1Ch; WP and DPOFUA', async () => {
    const d = dataOf(await device.execute(task([0x1a, 0, 0x3f, 0, 255, 0])));
    expect(d[0]).toBe(d.length - 1);
    expect(d[2]).toBe(0x90);
    expect(d[3]).toBe(8);
    expect(d.readUInt32BE(4)).toBe(128);
    expect(d.readUInt32BE(8) & 0xffffff).toBe(512);
    const pages: number[] = [];
    for (let off = 12; off < d.length; off += 2 + d[off + 1]) pages.push(d[off] & 0x3f);
    expect(pages).toEqual([0x08, 0x0a, 0x1c]);
    expect(d[12 + 2] & 0x04).toBe(0x04); // WCE
  });

  it('(10) with DBD, caching page changeable mask has only WCE', async () => {
    const d = dataOf(await device.execute(task([0x5a, 0x08, 0x48, 0, 0, 0, 0, 0, 255, 0])));
    expect(d.readUInt16BE(6)).toBe(0);
    expect(d[8]).toBe(0x08);
    expect(d[10]).toBe(0x04);
  });

  it('(10) LLBAA: 16-byte block descriptor', async () => {
    const d = dataOf(await device.execute(task([0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0])));
    expect(d[4] & 1).toBe(1);
    expect(d.readUInt16BE(6)).toBe(16);
    expect(d.readBigUInt64BE(8)).toBe(128n);
  });

  it('saved values -> 5/39/00; unknown page -> 5/24/00', async () => {
    expect(senseOf(await device.execute(task([0x1a, 0, 0xc8, 0, 255, 0]))).asc).toBe(0x39);
    expect(senseOf(await device.execute(task([0x1a, 0, 0x15, 0, 255, 0]))).asc).toBe(0x24);
  });
});

describe('REPORT TARGET PORT GROUPS', () => {
  const device = makeDevice();
  const rtpg = (b1: number, alloc = 1024) => task([0xa3, b1, 0, 0, 0, 0, alloc >>> 24, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0]);

  it('INQUIRY advertises implicit ALUA (TPGS=01b)', async () => {
    expect(dataOf(await device.execute(task([0x12, 0, 0, 0, 36, 0])))[5] & 0x30).toBe(0x10);
  });

  it('one group, active/optimized, with the relative target port; extended header', async () => {
    const d = dataOf(await device.execute(rtpg(0x0a)));
    expect(d.readUInt32BE(0)).toBe(d.length - 4);
    expect([d[4] & 0x0f, d[5] & 0x01, d.readUInt16BE(6), d[11], d.readUInt16BE(14)]).toEqual([0, 1, 1, 1, 1]);
    const x = dataOf(await device.execute(rtpg(0x2a)));
    expect(x[4]).toBe(0x10);
    expect(x.readUInt16BE(10)).toBe(1);
  });

  it('reserved parameter data format -> 5/24/00', async () => {
    expect(senseOf(await device.execute(rtpg(0x4a))).asc).toBe(0x24);
  });
});
