/**
 * ddpt 0.96 / 0.97 (and ddpt's trunk as of 2026) build POPULATE TOKEN and WRITE USING TOKEN
 * parameter lists with every block device range descriptor one byte early. Facts from ddpt's
 * source (github doug-gilbert/ddpt, src/ddpt_xcopy.c):
 *  - do_pop_tok(): `for (k = 0, n = 15; k < elems; ...)` then `sg_put_unaligned_be64(lba, pl + n);
 *    n += 8; sg_put_unaligned_be32(num, pl + n); n += 4 + 4;`, then
 *    `sg_put_unaligned_be16(sz_bdrd, pl + 14)` (over the first LBA's top byte) and `len = n + 1`;
 *  - do_wut(): the same loop from `n = 535`, then `sg_put_unaligned_be16(sz_bdrd, pl + 534)`.
 * Until svn trunk r313 (git 4331cad, 2015-12-02, "unaligned work"; ddpt 0.95 and older) the
 * loop wrote `pl[++n] = ...`, a pre-increment, so n = 15 put the first byte at 16 as SBC-3/4
 * say; that commit switched to sg_put_unaligned_be64(lba, pl + n) without moving n to 16/536.
 * SBC-4 (POPULATE TOKEN / WRITE USING TOKEN parameter lists; reference 2.11): the PT header is
 * 16 bytes, the WUT header 536, and a range descriptor is LBA (8), NUMBER OF LOGICAL BLOCKS (4),
 * reserved (4). Our decoder follows the standard; this file pins what it makes of ddpt's lists:
 *  - a shifted descriptor reads as LBA' = LBA << 8 | NUM >> 24 and NUM' = (NUM & ffffffh) << 8,
 *    which is a well-formed request for other blocks: nothing in the bytes tells it apart
 *    (the reserved bytes stay zero), so a target must honour it (ddptctl --pt=0,1 gets 256);
 *  - where those blocks do not exist, the answer is the standard's CHECK CONDITION, LOGICAL
 *    BLOCK ADDRESS OUT OF RANGE with the first bad LBA, and no token is made / nothing written;
 *  - handing ddpt LBA/256 and NUM/256 (test/interop/guest/odx.sh) asks for exactly the
 *    intended ranges.
 */
import {
  BS, SENSE, expectGood, expectSense, odxDaemon, pattern, populateTokenCdb, readBlocks, rrti, session, tokenFor,
  writeBlocks, writeUsingTokenCdb, type Range, type TestInitiator,
} from './odx';
import type { TestDaemon } from '../support/daemon';

const CAPACITY = (64 * 1024 * 1024) / BS;

/** Write big-endian `v` in `bytes` bytes at `at` (what sg_put_unaligned_be64/32/16 do). */
function putBe(b: Buffer, at: number, v: bigint, bytes: number): void {
  for (let i = bytes - 1; i >= 0; i--, v >>= 8n) b[at + i] = Number(v & 0xffn);
}

/** do_pop_tok() of ddpt 0.97, for its scatter-gather list `ranges` (flags, timeout and ROD type 0). */
function ddpt097PtList(ranges: Range[]): Buffer {
  const pl = Buffer.alloc(16 + 16 * ranges.length); // sg_memalign: zeroed
  let n = 15;
  for (const [lba, num] of ranges) {
    putBe(pl, n, BigInt(lba), 8);
    n += 8;
    putBe(pl, n, BigInt(num), 4);
    n += 4 + 4;
  }
  putBe(pl, 14, BigInt(16 * ranges.length), 2);
  const len = n + 1;
  putBe(pl, 0, BigInt(len - 2), 2);
  return pl.subarray(0, len);
}

/** do_wut() of ddpt 0.97 (offset into ROD 0, no DEL_TKN, no IMMED). */
function ddpt097WutList(token: Buffer, ranges: Range[]): Buffer {
  const pl = Buffer.alloc(536 + 16 * ranges.length);
  token.copy(pl, 16, 0, 512);
  let n = 535;
  for (const [lba, num] of ranges) {
    putBe(pl, n, BigInt(lba), 8);
    n += 8;
    putBe(pl, n, BigInt(num), 4);
    n += 4 + 4;
  }
  const sz = 16 * ranges.length;
  putBe(pl, 534, BigInt(sz), 2);
  const len = 536 + sz;
  putBe(pl, 0, BigInt(len - 2), 2);
  return pl;
}

/** How a standard decoder reads ddpt 0.97's descriptor (LBA < 2^56). */
const asRead = ([lba, num]: Range): Range => [lba * 256 + Math.floor(num / 2 ** 24), (num % 2 ** 24) * 256];

let d: TestDaemon;
let c: TestInitiator;
let listId = 0xdd00;

beforeAll(async () => {
  d = await odxDaemon();
  c = await session(d.port);
  await writeBlocks(c, 0, 0, pattern(4096 * BS, 0xdd));
});
afterAll(async () => {
  c.close();
  await d.stop();
});

describe("ddpt 0.97's range descriptors, one byte early", () => {
  it('the layout: a standard reader sees LBA << 8 | NUM >> 24 and (NUM & ffffffh) << 8, reserved bytes zero', () => {
    const ranges: Range[] = [[3, 0x01000002], [0x1234, 7]];
    const pl = ddpt097PtList(ranges);
    expect(pl.length).toBe(16 + 32);
    expect(pl.readUInt16BE(0)).toBe(pl.length - 2);
    expect(pl.readUInt16BE(14)).toBe(32);
    ranges.forEach((r, i) => {
      const at = 16 + 16 * i;
      expect([Number(pl.readBigUInt64BE(at)), pl.readUInt32BE(at + 8)]).toEqual(asRead(r));
      expect(pl.readUInt32BE(at + 12)).toBe(0);
    });
    const w = ddpt097WutList(Buffer.alloc(512, 0xee), ranges);
    expect(w.readUInt16BE(534)).toBe(32);
    expect([Number(w.readBigUInt64BE(536)), w.readUInt32BE(544)]).toEqual(asRead(ranges[0]));
    expect(w.subarray(16, 528).equals(Buffer.alloc(512, 0xee))).toBe(true);
  });

  it('ddptctl --pt=0,1 is indistinguishable from a request for 256 blocks: GOOD, transfer count 256', async () => {
    const p = ddpt097PtList([[0, 1]]);
    const lid = ++listId;
    expectGood(await c.command(0, populateTokenCdb(lid, p.length), { dataOut: p }), 'PT');
    expect((await rrti(c, 0, lid)).transferCount).toBe(256n);
  });

  it("ddpt --odx's 32 MiB PT as ddpt sends it -> 5/21/00 with the first bad LBA, no token made", async () => {
    const before = d.daemon.rodTokens!.liveCount;
    const p = ddpt097PtList([[0, 65536]]); // read as LBA 0, 16M blocks: past the 128 Ki-block LU
    const s = expectSense(await c.command(0, populateTokenCdb(++listId, p.length), { dataOut: p }), SENSE.LBA_OUT_OF_RANGE);
    expect([s.valid, s.information]).toEqual([true, CAPACITY]);
    expect(d.daemon.rodTokens!.liveCount).toBe(before);
    // a range starting past the LU (LBA 1024 reads as 262144): INFORMATION is that LBA
    const q = ddpt097PtList([[1024, 8]]);
    const s2 = expectSense(await c.command(0, populateTokenCdb(++listId, q.length), { dataOut: q }), SENSE.LBA_OUT_OF_RANGE);
    expect(s2.information).toBe(1024 * 256);
    expect(d.daemon.rodTokens!.liveCount).toBe(before);
  });

  it("ddpt's WUT whose shifted range leaves the LU -> 5/21/00, nothing written", async () => {
    const token = await tokenFor(c, 0, ++listId, [[0, 2048]]);
    const marker = Buffer.alloc(2048 * BS, 0x3c);
    await writeBlocks(c, 1, 0, marker);
    const p = ddpt097WutList(token, [[0, 2048]]); // read as LBA 0, 524288 blocks
    expectSense(await c.command(1, writeUsingTokenCdb(++listId, p.length), { dataOut: p, timeoutMs: 60000 }), SENSE.LBA_OUT_OF_RANGE);
    expect((await readBlocks(c, 1, 0, 2048)).equals(marker)).toBe(true);
  });

  it('the guest workaround (LBA/256, NUM/256 handed to ddpt) asks for exactly the intended ranges', async () => {
    const intended: Range[] = [[512, 1024], [2048, 512]];
    const scaled = intended.map(([l, n]): Range => [l / 256, n / 256]);
    const pt = ddpt097PtList(scaled);
    const lid = ++listId;
    expectGood(await c.command(0, populateTokenCdb(lid, pt.length), { dataOut: pt }), 'PT');
    const info = await rrti(c, 0, lid);
    expect(info.transferCount).toBe(1536n);
    const dest: Range[] = [[8192, 1536]];
    const wut = ddpt097WutList(info.token!, dest.map(([l, n]): Range => [l / 256, n / 256]));
    expectGood(await c.command(1, writeUsingTokenCdb(++listId, wut.length), { dataOut: wut, timeoutMs: 60000 }), 'WUT');
    const src = Buffer.concat([await readBlocks(c, 0, 512, 1024), await readBlocks(c, 0, 2048, 512)]);
    expect((await readBlocks(c, 1, 8192, 1536)).equals(src)).toBe(true);
  });
});
