/**
 * Windows' ODX discovery and command sequence (reference 2.11, 2.13, 2.15):
 * INQUIRY 3PC, VPD 8Fh parsed the way Windows fills DEVICE_COPY_OFFLOAD_DESCRIPTOR,
 * then POPULATE TOKEN -> RRTI -> WRITE USING TOKEN -> RRTI, bytes verified.
 */
import { cdb } from '../support/initiator';
import {
  BS, expectGood, odxDaemon, parseRrti, pattern, populateToken, readBlocks, rrti, rrtiCdb, session, writeBlocks,
  writeUsingToken, type TestInitiator,
} from './odx';
import type { TestDaemon } from '../support/daemon';

let d: TestDaemon;
let c: TestInitiator;

beforeAll(async () => {
  d = await odxDaemon();
  c = await session(d.port);
});
afterAll(async () => {
  c.close();
  await d.stop();
});

/** Parse VPD 8Fh as Windows does: walk descriptors, take 0000h, require page length >= 24h. */
function windowsOffloadDescriptor(page: Buffer) {
  const pageLength = page.readUInt16BE(2);
  const descs = new Map<number, Buffer>();
  for (let off = 4; off + 4 <= 4 + pageLength; ) {
    const type = page.readUInt16BE(off);
    const len = page.readUInt16BE(off + 2);
    descs.set(type, page.subarray(off, off + 4 + len));
    off += 4 + len;
  }
  const rod = descs.get(0x0000);
  return {
    pageLength,
    types: [...descs.keys()],
    descs,
    rod: rod && {
      length: rod.readUInt16BE(2),
      maximumDataDescriptors: rod.readUInt16BE(10),
      maximumTokenLifetime: rod.readUInt32BE(12),
      defaultTokenLifetime: rod.readUInt32BE(16),
      maximumTransferSize: rod.readBigUInt64BE(20),
      optimalTransferCount: rod.readBigUInt64BE(28),
    },
  };
}

describe('ODX: Windows discovery', () => {
  it('standard INQUIRY has 3PC set', async () => {
    const r = await c.command(0, cdb.inquiry(96), { read: 96 });
    expectGood(r);
    expect(r.data[5] & 0x08).toBe(0x08);
  });

  it('VPD 8Fh carries Block Device ROD Token Limits that Windows accepts', async () => {
    const r = await c.command(0, cdb.inquiry(4096, true, 0x8f), { read: 4096 });
    expectGood(r);
    expect(r.data[1]).toBe(0x8f);
    const w = windowsOffloadDescriptor(r.data);
    expect(w.pageLength).toBeGreaterThanOrEqual(0x24);
    expect(w.types).toEqual([...w.types].sort((a, b) => a - b)); // ascending descriptor types
    expect(w.types).toEqual(expect.arrayContaining([0x0000, 0x0001, 0x0106, 0x0108, 0x8001]));
    expect(w.rod).toBeDefined();
    expect(w.rod!.length).toBe(0x20);
    expect(w.rod!.maximumDataDescriptors).toBeGreaterThanOrEqual(64);
    expect(w.rod!.maximumTokenLifetime).toBe(600);
    expect(w.rod!.defaultTokenLifetime).toBe(60);
    expect(w.rod!.maximumTransferSize).toBeGreaterThan(0n);
    expect(w.rod!.optimalTransferCount).toBeGreaterThan(0n);
    expect(w.rod!.optimalTransferCount).toBeLessThanOrEqual(w.rod!.maximumTransferSize);
    // Supported commands: 83h 10h 11h 1Ch, 84h 07h 08h
    const sc = w.descs.get(0x0001)!;
    const list = [...sc.subarray(5, 5 + sc[4])];
    expect(list.slice(0, 2 + list[1])).toEqual([0x83, 5, 0x00, 0x01, 0x10, 0x11, 0x1c]);
    expect(list.slice(7)).toEqual([0x84, 6, 0x00, 0x03, 0x04, 0x05, 0x07, 0x08]);
    // ROD Token Features: MAXIMUM TOKEN INACTIVITY TIMEOUT and a block features descriptor whose MAXIMUM BYTES match 0000h
    const f = w.descs.get(0x0106)!;
    expect(f.readUInt32BE(24)).toBe(600);
    expect(f.readUInt16BE(46)).toBe(48);
    expect(f.readBigUInt64BE(48 + 8)).toBe(w.rod!.maximumTransferSize * BigInt(BS));
    expect(f.readBigUInt64BE(48 + 16)).toBe(w.rod!.optimalTransferCount * BigInt(BS));
    // Supported ROD types: point in time (in+out) ... and the zero token (in only)
    const t = w.descs.get(0x0108)!;
    const n = t.readUInt16BE(6) / 64;
    const types = Array.from({ length: n }, (_, i) => [t.readUInt32BE(8 + 64 * i), t[12 + 64 * i] & 0x03]);
    expect(types).toEqual([[0x0001_0000, 3], [0x0080_0000, 3], [0x0080_0001, 3], [0x0080_0002, 3], [0xffff_0001, 2]]);
  });

  it("OPTIMAL TRANSFER COUNT is the measured default (limits.ts), the token store's setting when changed, and stays within Windows' time budget at 1 GiB/s", async () => {
    const vpd = async () => windowsOffloadDescriptor((await c.command(0, cdb.inquiry(4096, true, 0x8f), { read: 4096 })).data);
    const store = d.daemon.rodTokens!;
    const measured = store.optimalTransferBytes;
    expect((await vpd()).rod!.optimalTransferCount).toBe(BigInt(measured / BS));
    // a WUT of the optimal size moves in under a second even at 1 GiB/s (Windows gives up after ~4 s)
    expect(measured).toBeLessThanOrEqual(1024 * 1024 * 1024);
    store.optimalTransferBytes = 8 * 1024 * 1024;
    try {
      const w = await vpd();
      expect(w.rod!.optimalTransferCount).toBe(BigInt((8 * 1024 * 1024) / BS));
      expect(w.descs.get(0x0106)!.readBigUInt64BE(48 + 16)).toBe(BigInt(8 * 1024 * 1024));
    } finally {
      store.optimalTransferBytes = measured;
    }
  });
});

describe('ODX: Windows command sequence PT -> RRTI -> WUT -> RRTI', () => {
  it('copies 4 MiB from LUN 0 to LUN 1 in two fragments, the RRTI data as Windows reads it', async () => {
    const data = pattern(4 * 1024 * 1024, 1);
    await writeBlocks(c, 0, 1000, data);
    // PT of two source fragments
    const half = data.length / BS / 2;
    expectGood(await populateToken(c, 0, 0x100, [[1000, half], [1000 + half, half]]));
    const pt = await rrti(c, 0, 0x100);
    expect(pt.responseToSa).toBe(0x10);
    expect(pt.status).toBe(0x01);
    expect(pt.completionStatus).toBe(0x00);
    expect(pt.units).toBe(0xf1);
    expect(pt.transferCount).toBe(BigInt(2 * half));
    expect(pt.segments).toBe(0);
    expect(pt.estimatedDelay).toBe(0xfffffffe);
    expect(pt.descriptorsLength).toBe(514);
    expect(pt.availableData).toBe(32 - 4 + pt.senseFieldLength + 4 + 514);
    expect(pt.token!.readUInt32BE(0)).toBe(0x0080_0000);
    expect(pt.token!.readUInt16BE(6)).toBe(0x01f8);
    // WUT to LUN 1 in three destination fragments
    expectGood(await writeUsingToken(c, 1, 0x101, pt.token!, [[0, 1000], [5000, 3000], [20000, 2 * half - 4000]]));
    const wut = await rrti(c, 1, 0x101);
    expect([wut.responseToSa, wut.status, wut.units, wut.transferCount, wut.descriptorsLength]).toEqual([0x11, 0x01, 0xf1, BigInt(2 * half), 0]);
    const got = Buffer.concat([await readBlocks(c, 1, 0, 1000), await readBlocks(c, 1, 5000, 3000), await readBlocks(c, 1, 20000, 2 * half - 4000)]);
    expect(got.equals(data)).toBe(true);
  });

  it('RRTI with a short allocation length truncates, AVAILABLE DATA stays whole', async () => {
    expectGood(await populateToken(c, 0, 0x102, [[0, 8]]));
    const r = await c.command(0, rrtiCdb(0x102, 40), { read: 40 });
    expectGood(r);
    expect(r.data.length).toBe(40);
    expect(r.data.readUInt32BE(0)).toBe(32 - 4 + 4 + 514);
    expect(parseRrti(Buffer.concat([r.data, Buffer.alloc(600)])).status).toBe(1);
  });

  it('IMMED=1 PT and WUT return GOOD at once; RRTI reports completion and the count', async () => {
    const data = pattern(64 * BS, 3);
    await writeBlocks(c, 0, 300, data);
    expectGood(await populateToken(c, 0, 0x103, [[300, 64]], { immed: true }));
    let pt = await rrti(c, 0, 0x103);
    // background: poll as a host does, with a pause (bounded: 200 x 10 ms); 100 polls back to back ran out under load
    for (let i = 0; i < 200 && pt.status >= 0x10; i++) pt = await new Promise((r) => setTimeout(r, 10)).then(() => rrti(c, 0, 0x103));
    expect(pt.status).toBe(1);
    expectGood(await writeUsingToken(c, 1, 0x104, pt.token!, [[700, 64]], { immed: true }));
    let wut = await rrti(c, 1, 0x104);
    for (let i = 0; i < 200 && wut.status >= 0x10; i++) wut = await new Promise((r) => setTimeout(r, 10)).then(() => rrti(c, 1, 0x104));
    expect([wut.status, wut.transferCount]).toEqual([1, 64n]);
    expect((await readBlocks(c, 1, 700, 64)).equals(data)).toBe(true);
  });
});
