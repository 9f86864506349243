/**
 * Point in time (SBC-4 ROD type 0080_0000h; issue 5 "Point in time"): after
 * POPULATE TOKEN, whatever writes the source — WRITE, WRITE SAME, UNMAP,
 * EXTENDED COPY, WRITE USING TOKEN landing there — does not change what the
 * token delivers. Change-vulnerable tokens are cancelled by such a write;
 * access-upon-reference tokens deliver the new bytes (RTV=1 types).
 */
import {
  BS, ROD_TYPE, SENSE, expectGood, expectSense, odxDaemon, pattern, readBlocks, session, tokenFor, unmapCdb, unmapParams,
  writeBlocks, writeSame16Cdb, writeUsingToken, type TestInitiator,
} from './odx';
import type { TestDaemon } from '../support/daemon';

let d: TestDaemon;
let c: TestInitiator;
let listId = 0x2000;

beforeAll(async () => {
  d = await odxDaemon();
  c = await session(d.port);
});
afterAll(async () => {
  c.close();
  await d.stop();
});

const N = 256; // blocks per case
let base = 0;
function area(): number {
  base += 4 * N;
  return base;
}

async function xcopyOnto(lba: number, from: number, blocks: number): Promise<void> {
  // EXTENDED COPY(LID1) LUN 1 -> LUN 0 with two E4h CSCDs naming the LUs by NAA (from VPD 83h)
  const naa = async (lun: number): Promise<Buffer> => {
    const r = await c.command(lun, Buffer.from([0x12, 0x01, 0x83, 0x01, 0x00, 0]), { read: 256 });
    const len = r.data[4 + 3];
    return r.data.subarray(8, 8 + len);
  };
  const e4 = (id: Buffer): Buffer => {
    const x = Buffer.alloc(32);
    x[0] = 0xe4;
    x[4] = 0x01;
    x[5] = 0x03;
    x[7] = id.length;
    id.copy(x, 8);
    x.writeUIntBE(BS, 29, 3);
    return x;
  };
  const seg = Buffer.alloc(28);
  seg[0] = 0x02;
  seg.writeUInt16BE(0x18, 2);
  seg.writeUInt16BE(0, 4);
  seg.writeUInt16BE(1, 6);
  seg.writeUInt16BE(blocks, 10);
  seg.writeBigUInt64BE(BigInt(from), 12);
  seg.writeBigUInt64BE(BigInt(lba), 20);
  const h = Buffer.alloc(16);
  h[0] = 9;
  h.writeUInt16BE(64, 2);
  h.writeUInt32BE(28, 8);
  const p = Buffer.concat([h, e4(await naa(1)), e4(await naa(0)), seg]);
  const cdb = Buffer.alloc(16);
  cdb[0] = 0x83;
  cdb.writeUInt32BE(p.length, 10);
  expectGood(await c.command(0, cdb, { dataOut: p }), 'EXTENDED COPY');
}

type Overwrite = (lba: number, blocks: number) => Promise<void>;

const overwrites: Array<[string, Overwrite]> = [
  ['WRITE', (lba, n) => writeBlocks(c, 0, lba, Buffer.alloc(n * BS, 0xee))],
  ['WRITE SAME', async (lba, n) => {
    expectGood(await c.command(0, writeSame16Cdb(lba, n), { dataOut: Buffer.alloc(BS, 0xdd) }), 'WRITE SAME');
  }],
  ['WRITE SAME UNMAP', async (lba, n) => {
    expectGood(await c.command(0, writeSame16Cdb(lba, n, { unmap: true }), { dataOut: Buffer.alloc(BS) }), 'WRITE SAME UNMAP');
  }],
  ['UNMAP', async (lba, n) => {
    const p = unmapParams([[lba + 8, n - 16]]);
    expectGood(await c.command(0, unmapCdb(p.length), { dataOut: p }), 'UNMAP');
  }],
  ['EXTENDED COPY', async (lba, n) => {
    await writeBlocks(c, 1, 60000, Buffer.alloc(n * BS, 0xcc));
    await xcopyOnto(lba, 60000, n);
  }],
  ['WRITE USING TOKEN', async (lba, n) => {
    await writeBlocks(c, 1, 61000, Buffer.alloc(n * BS, 0xbb));
    const other = await tokenFor(c, 1, ++listId, [[61000, n]]);
    expectGood(await writeUsingToken(c, 0, ++listId, other, [[lba, n]]), 'WUT onto the source');
  }],
];

describe('point in time: writes to the source after POPULATE TOKEN do not reach the token', () => {
  it.each(overwrites)('%s over the whole source range', async (_name, overwrite) => {
    const src = area();
    const old = pattern(N * BS, src);
    await writeBlocks(c, 0, src, old);
    const token = await tokenFor(c, 0, ++listId, [[src, N]]);
    await overwrite(src, N);
    expect((await readBlocks(c, 0, src, N)).equals(old)).toBe(false); // the source did change
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[src, N]]));
    expect((await readBlocks(c, 1, src, N)).equals(old)).toBe(true);
  });

  it('8 WRITEs at once over a fresh token\'s source (as the Linux initiator splits a 1 MiB O_DIRECT write): the first saves share one side file, the token keeps every old byte', async () => {
    const src = area();
    const old = pattern(4 * N * BS, 12);
    await writeBlocks(c, 0, src, old);
    const token = await tokenFor(c, 0, ++listId, [[src, 4 * N]]);
    const K = 8;
    const n = (4 * N) / K;
    const writers = await Promise.all(Array.from({ length: K }, (_, i) => session(d.port, { initiatorName: `iqn.2026-11.org.example:pit-writer${i}` })));
    try {
      await Promise.all(writers.map((w, i) => writeBlocks(w, 0, src + i * n, Buffer.alloc(n * BS, 0xe0 + i))));
    } finally {
      for (const w of writers) w.close();
    }
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[src, 4 * N]]));
    expect((await readBlocks(c, 1, src, 4 * N)).equals(old)).toBe(true);
  });

  it('a partial overwrite in the middle of a multi-range token, then two WUTs: both deliver the image', async () => {
    const a = area();
    const b = area();
    const old = Buffer.concat([pattern(N * BS, 1), pattern(N * BS, 2)]);
    await writeBlocks(c, 0, a, old.subarray(0, N * BS));
    await writeBlocks(c, 0, b, old.subarray(N * BS));
    const token = await tokenFor(c, 0, ++listId, [[a, N], [b, N]]);
    await writeBlocks(c, 0, a + N - 10, Buffer.alloc(20 * BS, 0x11)); // straddles nothing else
    await writeBlocks(c, 0, b + 5, Buffer.alloc(3 * BS, 0x22));
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[70000, 2 * N]]));
    await writeBlocks(c, 0, b, Buffer.alloc(N * BS, 0x33)); // again, after a use
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[80000, 2 * N]]));
    expect((await readBlocks(c, 1, 70000, 2 * N)).equals(old)).toBe(true);
    expect((await readBlocks(c, 1, 80000, 2 * N)).equals(old)).toBe(true);
  });

  it('WUT within one LUN onto the token\'s own source range delivers the image (saved before it is overwritten)', async () => {
    const src = area();
    const old = pattern(2 * N * BS, 77);
    await writeBlocks(c, 0, src, old);
    const token = await tokenFor(c, 0, ++listId, [[src, 2 * N]]);
    expectGood(await writeUsingToken(c, 0, ++listId, token, [[src + N, 2 * N]])); // overlaps the second half
    expect((await readBlocks(c, 0, src + N, 2 * N)).equals(old)).toBe(true);
  });

  it('change-vulnerable (RTV=1, 0080_0001h): a write to the source cancels the token (5/23/08)', async () => {
    const src = area();
    await writeBlocks(c, 0, src, pattern(N * BS, 5));
    const token = await tokenFor(c, 0, ++listId, [[src, N]], { rtv: true, rodType: ROD_TYPE.PIT_CV });
    expect(token.readUInt32BE(0)).toBe(ROD_TYPE.PIT_CV);
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[src, N]]), 'before the write');
    await writeBlocks(c, 0, src + 3, Buffer.alloc(BS, 1));
    expectSense(await writeUsingToken(c, 1, ++listId, token, [[src, N]]), SENSE.TOKEN_CANCELLED);
  });

  it('access upon reference (RTV=1, 0001_0000h): the token delivers the source as it is when used', async () => {
    const src = area();
    await writeBlocks(c, 0, src, pattern(N * BS, 6));
    const token = await tokenFor(c, 0, ++listId, [[src, N]], { rtv: true, rodType: ROD_TYPE.AUR });
    expect(token.readUInt32BE(0)).toBe(ROD_TYPE.AUR);
    const now = pattern(N * BS, 7);
    await writeBlocks(c, 0, src, now);
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[src, N]]));
    expect((await readBlocks(c, 1, src, N)).equals(now)).toBe(true);
  });

  it('point in time "any" (0080_FFFFh) is created as persistent (0080_0002h) and keeps its image', async () => {
    const src = area();
    const old = pattern(N * BS, 8);
    await writeBlocks(c, 0, src, old);
    const token = await tokenFor(c, 0, ++listId, [[src, N]], { rtv: true, rodType: ROD_TYPE.PIT_ANY });
    expect(token.readUInt32BE(0)).toBe(ROD_TYPE.PIT_PERSISTENT);
    await writeBlocks(c, 0, src, Buffer.alloc(N * BS, 9));
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[src, N]]));
    expect((await readBlocks(c, 1, src, N)).equals(old)).toBe(true);
  });

  it('the side-file bound cancels the oldest tokens cleanly (5/23/08), newer ones keep working', async () => {
    const store = d.daemon.rodTokens!;
    const saved = store.maxSideFileBytes;
    store.maxSideFileBytes = (N + N / 2) * BS;
    try {
      const a = area();
      const b = area();
      await writeBlocks(c, 0, a, pattern(N * BS, 10));
      const old = pattern(N * BS, 11);
      await writeBlocks(c, 0, b, old);
      const older = await tokenFor(c, 0, ++listId, [[a, N]]);
      const newer = await tokenFor(c, 0, ++listId, [[b, N]]);
      await writeBlocks(c, 0, a, Buffer.alloc(N * BS, 1)); // older saves N blocks
      await writeBlocks(c, 0, b, Buffer.alloc(N * BS, 2)); // newer needs N more: over the bound, older goes
      expectSense(await writeUsingToken(c, 1, ++listId, older, [[a, N]]), SENSE.TOKEN_CANCELLED);
      expectGood(await writeUsingToken(c, 1, ++listId, newer, [[b, N]]));
      expect((await readBlocks(c, 1, b, N)).equals(old)).toBe(true);
      expect(store.spaceUsed).toBeLessThanOrEqual(store.maxSideFileBytes);
    } finally {
      store.maxSideFileBytes = saved;
    }
  });
});
