/**
 * Many tokens at once: concurrent PT/WUT pairs on distinct list identifiers,
 * REPORT ALL ROD TOKENS, the live-token cap (the least recently used idle token goes), RRTI per list ID.
 */
import {
  BS, SENSE, expectGood, expectSense, odxDaemon, pattern, populateToken, readBlocks, reportAllRodTokensCdb, rrti, session,
  tokenFor, writeBlocks, writeUsingToken, type TestInitiator,
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

describe('many concurrent tokens', () => {
  it('32 tokens made and used at the same time over 8 sessions, each on its own list identifier, each delivering its own bytes', async () => {
    const K = 32;
    const S = 8;
    const N = 128;
    const sessions = await Promise.all(Array.from({ length: S }, (_, i) => session(d.port, { initiatorName: `iqn.2026-11.org.example:odx${i}` })));
    try {
      const datas = Array.from({ length: K }, (_, i) => pattern(N * BS, 100 + i));
      for (let i = 0; i < K; i++) await writeBlocks(c, 0, i * N, datas[i]);
      const tokens: Buffer[] = new Array(K);
      // each session makes its share of the tokens while the others do too
      await Promise.all(sessions.map(async (s, j) => {
        for (let i = j; i < K; i += S) tokens[i] = await tokenFor(s, 0, 0x5000 + i, [[i * N, N]]);
      }));
      // overwrite all sources, then use all tokens concurrently
      await writeBlocks(c, 0, 0, Buffer.alloc(K * N * BS, 0xab));
      await Promise.all(sessions.map(async (s, j) => {
        for (let i = j; i < K; i += S) {
          expectGood(await writeUsingToken(s, 1, 0x6000 + i, tokens[i], [[(K - 1 - i) * N, N]]));
          const info = await rrti(s, 1, 0x6000 + i);
          expect([info.status, info.transferCount]).toEqual([1, BigInt(N)]);
        }
      }));
      for (let i = 0; i < K; i++) expect((await readBlocks(c, 1, (K - 1 - i) * N, N)).equals(datas[i])).toBe(true);
      const all = await c.command(0, reportAllRodTokensCdb(), { read: 65536 });
      expectGood(all);
      const ids = new Set<string>();
      for (let off = 8; off < all.data.length; off += 96) ids.add(all.data.subarray(off + 8, off + 16).toString('hex'));
      for (const t of tokens) expect(ids.has(t.subarray(8, 16).toString('hex'))).toBe(true);
      expect(all.data.readUInt32BE(0)).toBe(all.data.length - 4);
    } finally {
      for (const s of sessions) s.close();
    }
  });

  it('at the live-token cap a PT cancels the least recently used idle token (5/23/08 on its use), as Windows never deletes its tokens; a deleted token frees a slot without cancelling (5/55/0D only when every token is in use: test/scsi/copy/token-store-events)', async () => {
    const store = d.daemon.rodTokens!;
    const saved = store.maxLiveTokens;
    for (const t of store.tokens()) store.invalidate(t, 'deleted'); // the other tests' tokens are done
    store.maxLiveTokens = 3;
    try {
      const made: Buffer[] = [];
      for (let i = 0; i < 3; i++) made.push(await tokenFor(c, 0, 0x7000 + i, [[i, 1]]));
      // made[0] is used after the others were made: made[1] is the least recently used
      await new Promise((r) => setTimeout(r, 5));
      expectGood(await writeUsingToken(c, 1, 0x7200, made[0], [[0, 1]]));
      expectGood(await populateToken(c, 0, 0x7100, [[10, 1]]));
      expectSense(await writeUsingToken(c, 1, 0x7201, made[1], [[1, 1]]), [[0x5, 0x23, 0x08]]);
      expectGood(await writeUsingToken(c, 1, 0x7202, made[2], [[2, 1]], { delTkn: true }));
      expectGood(await populateToken(c, 0, 0x7101, [[11, 1]]));
      expectGood(await writeUsingToken(c, 1, 0x7203, made[0], [[3, 1]]));
    } finally {
      store.maxLiveTokens = saved;
    }
  });

  it('RRTI for every list identifier of the nexus: PT, WUT and an unknown one (5/24/00 at byte 2)', async () => {
    await tokenFor(c, 0, 0x7300, [[0, 8]]);
    const info = await rrti(c, 0, 0x7300);
    expect(info.responseToSa).toBe(0x10);
    const r = await c.command(0, Buffer.from([0x84, 0x07, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]), { read: 4096 });
    const s = expectSense(r, [[0x5, 0x24, 0x00]]);
    expect([s.cd, s.fieldPointer]).toEqual([true, 2]);
    // the same list identifier on another LU of the nexus is another operation
    const other = await c.command(1, Buffer.from([0x84, 0x07, 0, 0, 0x73, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]), { read: 4096 });
    expectSense(other, [[0x5, 0x24, 0x00]]);
  });
});
