/** MODE SELECT(6/10): changeable bits from the page table, WCE honoured, D_SENSE, 2A/01, saved pages. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScsiStatus } from '../../scsi/types';
import { ScsiDevice } from '../../scsi/scsi-device';
import { cdbOf, dataOf, identity, MemoryStore, nexus, senseOf, silentLogger, task } from './helpers';

const BS = 512;
const TUR = [0, 0, 0, 0, 0, 0];

function device(persistPath?: string, store = new MemoryStore(1024 * BS)): ScsiDevice {
  return new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store, identity: identity(), persistPath }] });
}

/** MODE SENSE(10) of one page, DBD=1, page control `pc`. */
async function sensePage(d: ScsiDevice, page: number, pc = 0, n = nexus()): Promise<Buffer> {
  const r = await d.execute(task(cdbOf([0x5a, 0x08, (pc << 6) | page, 0, 0, 0, 0, 0x01, 0x00, 0], 10), { nexus: n }));
  expect(r.status).toBe(ScsiStatus.GOOD);
  return dataOf(r).subarray(8);
}

/** MODE SELECT(10) PF=1 with `page` (and SP). */
function select10(page: Buffer, sp = false, header = Buffer.alloc(8)): { cdb: Buffer; data: Buffer } {
  const data = Buffer.concat([header, page]);
  const cdb = cdbOf([0x55, 0x10 | (sp ? 1 : 0)], 10);
  cdb.writeUInt16BE(data.length, 7);
  return { cdb, data };
}

function select6(page: Buffer): { cdb: Buffer; data: Buffer } {
  const data = Buffer.concat([Buffer.alloc(4), page]);
  return { cdb: cdbOf([0x15, 0x10, 0, 0, data.length, 0], 6), data };
}

describe('MODE SELECT', () => {
  it('caching page: WCE is changeable; WCE=0 makes every write durable (FUA); others see 2A/01, the sender does not', async () => {
    const store = new MemoryStore(1024 * BS);
    const d = device(undefined, store);
    const a = nexus();
    const b = nexus();
    for (const n of [a, b]) {
      d.attachNexus(n);
      await d.execute(task(TUR, { nexus: n }));
    }
    const changeable = await sensePage(d, 0x08, 1, a);
    expect(changeable[2]).toBe(0x04);
    const page = await sensePage(d, 0x08, 0, a);
    expect(page[2] & 0x04).toBe(0x04);
    page[2] &= ~0x04;
    page[0] &= 0x3f; // PS is reserved in MODE SELECT
    const { cdb, data } = select10(page);
    expect((await d.execute(task(cdb, { nexus: a, dataOut: data }))).status).toBe(ScsiStatus.GOOD);
    expect((await sensePage(d, 0x08, 0, a))[2] & 0x04).toBe(0);
    expect((await sensePage(d, 0x08, 2, a))[2] & 0x04).toBe(0x04); // default unchanged
    expect((await d.execute(task(TUR, { nexus: a }))).status).toBe(ScsiStatus.GOOD);
    const s = senseOf(await d.execute(task(TUR, { nexus: b })));
    expect([s.key, s.asc, s.ascq]).toEqual([6, 0x2a, 0x01]);

    const before = store.fuaWrites;
    const w = await d.execute(task(cdbOf([0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0], 10), { nexus: a, dataOut: Buffer.alloc(BS, 3) }));
    expect(w.status).toBe(ScsiStatus.GOOD);
    expect(store.fuaWrites).toBe(before + 1);
  });

  it('MODE SELECT(6) works the same way', async () => {
    const d = device();
    const page = await sensePage(d, 0x08);
    page[2] &= ~0x04;
    const { cdb, data } = select6(page);
    expect((await d.execute(task(cdb, { dataOut: data }))).status).toBe(ScsiStatus.GOOD);
    expect((await sensePage(d, 0x08))[2] & 0x04).toBe(0);
  });

  it('a bit that is not changeable -> 5/26/00 pointing into the parameter list', async () => {
    const d = device();
    const page = await sensePage(d, 0x08);
    page[2] |= 0x01; // RCD
    const { cdb, data } = select10(page);
    const s = senseOf(await d.execute(task(cdb, { dataOut: data })));
    expect([s.key, s.asc, s.cd, s.fieldPointer, s.bit]).toEqual([5, 0x26, false, 8 + 2, 0]);
  });

  it('wrong page length, unknown page, subpage format -> 5/26/00', async () => {
    const d = device();
    const page = await sensePage(d, 0x08);
    const short = Buffer.from(page);
    short[1] = 0x0a;
    expect(senseOf(await d.execute(task(select10(short).cdb, { dataOut: select10(short).data }))).fieldPointer).toBe(9);
    const unknown = Buffer.from(page);
    unknown[0] = 0x19;
    expect(senseOf(await d.execute(task(select10(unknown).cdb, { dataOut: select10(unknown).data }))).asc).toBe(0x26);
    const spf = Buffer.from(page);
    spf[0] |= 0x40;
    expect(senseOf(await d.execute(task(select10(spf).cdb, { dataOut: select10(spf).data }))).bit).toBe(6);
  });

  it('control page D_SENSE=1: CHECK CONDITION sense comes in descriptor format (72h)', async () => {
    const d = device();
    expect((await sensePage(d, 0x0a, 1))[2]).toBe(0x04);
    const page = await sensePage(d, 0x0a);
    page[2] |= 0x04;
    const { cdb, data } = select10(page);
    expect((await d.execute(task(cdb, { dataOut: data }))).status).toBe(ScsiStatus.GOOD);
    const r = await d.execute(task(cdbOf([0x88, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0], 16)));
    expect(r.sense![0]).toBe(0x72);
    expect([r.sense![1] & 0x0f, r.sense![2]]).toEqual([5, 0x21]);
  });

  it('PF=0 -> 5/24/00 at byte 1 bit 4; length 0 is GOOD; SP=1 without saved pages -> 5/24/00 byte 1 bit 0; PC=3 -> 5/39/00', async () => {
    const d = device();
    const page = await sensePage(d, 0x08);
    const { data } = select10(page);
    const pf0 = cdbOf([0x55, 0x00, 0, 0, 0, 0, 0, 0, data.length, 0], 10);
    const s = senseOf(await d.execute(task(pf0, { dataOut: data })));
    expect([s.asc, s.fieldPointer, s.bit]).toEqual([0x24, 1, 4]);
    expect((await d.execute(task(cdbOf([0x55, 0x10], 10)))).status).toBe(ScsiStatus.GOOD);
    const sp = select10(page, true);
    const s2 = senseOf(await d.execute(task(sp.cdb, { dataOut: sp.data })));
    expect([s2.asc, s2.fieldPointer, s2.bit]).toEqual([0x24, 1, 0]);
    const s3 = senseOf(await d.execute(task(cdbOf([0x5a, 0x08, 0xc8, 0, 0, 0, 0, 1, 0, 0], 10))));
    expect([s3.asc]).toEqual([0x39]);
  });

  it('a block descriptor with another block length -> 5/26/00', async () => {
    const d = device();
    const page = await sensePage(d, 0x08);
    const header = Buffer.alloc(16);
    header.writeUInt16BE(8, 6);
    header.writeUIntBE(4096, 8 + 5, 3);
    const { cdb, data } = select10(page, false, header);
    expect(senseOf(await d.execute(task(cdb, { dataOut: data }))).fieldPointer).toBe(13);
  });

  describe('saved pages (persistPath)', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'xcopyd-mode-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('SP=1 saves; PC=3 reports the saved values; a new LU starts from them', async () => {
      const path = join(dir, 'lu.json');
      const d = device(path);
      expect((await sensePage(d, 0x08, 3))[2] & 0x04).toBe(0x04);
      expect((await sensePage(d, 0x08))[0] & 0x80).toBe(0x80); // PS
      const page = await sensePage(d, 0x08);
      page[0] &= 0x3f;
      page[2] &= ~0x04;
      const { cdb, data } = select10(page, true);
      expect((await d.execute(task(cdb, { dataOut: data }))).status).toBe(ScsiStatus.GOOD);
      expect((await sensePage(d, 0x08, 3))[2] & 0x04).toBe(0);
      const again = device(path);
      expect((await sensePage(again, 0x08))[2] & 0x04).toBe(0);
      expect((await sensePage(again, 0x08, 2))[2] & 0x04).toBe(0x04);
    });
  });
});
