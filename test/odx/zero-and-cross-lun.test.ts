/**
 * The block device zero ROD token; cross-LUN and within-LUN copies; OFFSET
 * INTO ROD; many destination ranges; mixed block sizes (512-byte source,
 * 4096-byte destination); zero-fill past the end of the ROD with a partial,
 * contiguous TRANSFER COUNT (reference 2.11).
 */
import {
  BS, SENSE, expectGood, expectSense, odxDaemon, pattern, readBlocks, rrti, session, tokenFor, writeBlocks,
  writeUsingToken, zeroToken, type Range, type TestInitiator,
} from './odx';
import type { TestDaemon } from '../support/daemon';

const BIG = 4096;
let d: TestDaemon;
let c: TestInitiator;
let listId = 0x4000;

beforeAll(async () => {
  d = await odxDaemon({
    targets: [
      {
        iqn: 'iqn.2026-11.org.xcopyd:default',
        luns: [
          { lun: 0, path: 'lun0.img', size: '64MiB' },
          { lun: 1, path: 'lun1.img', size: '64MiB', blockSize: 4096 },
        ],
      },
    ],
  });
  c = await session(d.port);
});
afterAll(async () => {
  c.close();
  await d.stop();
});

describe('zero ROD token (FFFF_0001h)', () => {
  it('zeroes every listed range and nothing else; RRTI counts the blocks', async () => {
    await writeBlocks(c, 0, 0, Buffer.alloc(300 * BS, 0x77));
    const ranges: Range[] = [[10, 20], [50, 100], [200, 1]];
    expectGood(await writeUsingToken(c, 0, ++listId, zeroToken(), ranges));
    const got = await readBlocks(c, 0, 0, 300);
    for (let b = 0; b < 300; b++) {
      const zero = ranges.some(([l, n]) => b >= l && b < l + n);
      expect(got.subarray(b * BS, (b + 1) * BS).every((x) => x === (zero ? 0 : 0x77))).toBe(true);
    }
    const info = await rrti(c, 0, listId);
    expect([info.responseToSa, info.status, info.transferCount]).toEqual([0x11, 1, 121n]);
  });

  it('works on a 4096-byte LU too, and the zero token needs no POPULATE TOKEN', async () => {
    await writeBlocks(c, 1, 0, Buffer.alloc(16 * BIG, 0x44), BIG);
    expectGood(await writeUsingToken(c, 1, ++listId, zeroToken(), [[4, 8]]));
    const got = await readBlocks(c, 1, 0, 16, BIG);
    expect(got.subarray(4 * BIG, 12 * BIG).every((x) => x === 0)).toBe(true);
    expect(got.subarray(0, 4 * BIG).every((x) => x === 0x44)).toBe(true);
  });
});

describe('cross-LUN and within-LUN', () => {
  it('within one LUN: a token of LUN 0 written elsewhere on LUN 0', async () => {
    const data = pattern(512 * BS, 21);
    await writeBlocks(c, 0, 1000, data);
    const token = await tokenFor(c, 0, ++listId, [[1000, 512]]);
    expectGood(await writeUsingToken(c, 0, ++listId, token, [[9000, 512]]));
    expect((await readBlocks(c, 0, 9000, 512)).equals(data)).toBe(true);
  });

  it('mixed block sizes: 512-byte source ranges into 4096-byte destination ranges, with OFFSET INTO ROD', async () => {
    const data = pattern(1024 * BS, 22); // 512 KiB = 128 destination blocks
    await writeBlocks(c, 0, 3000, data.subarray(0, 512 * BS));
    await writeBlocks(c, 0, 7000, data.subarray(512 * BS));
    const token = await tokenFor(c, 0, ++listId, [[3000, 512], [7000, 512]]);
    // skip the first 8 destination blocks (32 KiB) of the ROD, then 3 fragments of 40 blocks
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[100, 40], [300, 40], [500, 40]], { offset: 8 }));
    const got = Buffer.concat([await readBlocks(c, 1, 100, 40, BIG), await readBlocks(c, 1, 300, 40, BIG), await readBlocks(c, 1, 500, 40, BIG)]);
    expect(got.equals(data.subarray(8 * BIG, 128 * BIG))).toBe(true);
  });

  it('up to 64 destination fragments (Windows)', async () => {
    const data = pattern(64 * 16 * BS, 23);
    await writeBlocks(c, 0, 20000, data);
    const token = await tokenFor(c, 0, ++listId, [[20000, 64 * 16]]);
    const ranges: Range[] = Array.from({ length: 64 }, (_, i) => [30000 + i * 32, 16]);
    expectGood(await writeUsingToken(c, 0, ++listId, token, ranges));
    for (let i = 0; i < 64; i += 9) expect((await readBlocks(c, 0, 30000 + i * 32, 16)).equals(data.subarray(i * 16 * BS, (i + 1) * 16 * BS))).toBe(true);
  });

  it('destination beyond the ROD: whole blocks copied, the partial one zero-filled, the rest untouched; A/0D/04 with the count', async () => {
    // 9 source blocks of 512 = 4608 bytes = 1 whole 4096 block + 512 bytes
    const data = pattern(9 * BS, 24);
    await writeBlocks(c, 0, 40000, data);
    const token = await tokenFor(c, 0, ++listId, [[40000, 9]]);
    await writeBlocks(c, 1, 1000, Buffer.alloc(4 * BIG, 0x99), BIG);
    const s = expectSense(await writeUsingToken(c, 1, ++listId, token, [[1000, 4]]), SENSE.DATA_UNDERRUN);
    expect([s.key, s.valid, s.information]).toEqual([0xa, true, 2]);
    const info = await rrti(c, 1, listId);
    expect([info.status, info.transferCount, info.completionStatus]).toEqual([0x03, 2n, 0x02]);
    expect(info.sense[12]).toBe(0x0d);
    const got = await readBlocks(c, 1, 1000, 4, BIG);
    expect(got.subarray(0, 9 * BS).equals(data)).toBe(true);
    expect(got.subarray(9 * BS, 2 * BIG).every((x) => x === 0)).toBe(true);
    expect(got.subarray(2 * BIG).every((x) => x === 0x99)).toBe(true);
  });
});
