/**
 * Forged, altered, expired, deleted tokens (reference 2.12 validation table):
 * each refused with its INVALID TOKEN OPERATION ASCQ, and nothing written.
 */
import { randomBytes } from 'node:crypto';
import {
  BS, SENSE, expectGood, expectSense, odxDaemon, pattern, readBlocks, session, tokenFor, writeBlocks, writeUsingToken,
  type SenseSet, type TestInitiator,
} from './odx';
import type { TestDaemon } from '../support/daemon';

let d: TestDaemon;
let c: TestInitiator;
let listId = 0x3000;
const SRC = 100;
const DST = 5000;
const N = 64;

beforeAll(async () => {
  d = await odxDaemon();
  c = await session(d.port);
  await writeBlocks(c, 0, SRC, pattern(N * BS, 1));
});
afterAll(async () => {
  c.close();
  await d.stop();
});

async function refused(token: Buffer, set: SenseSet, what: string): Promise<void> {
  const marker = Buffer.alloc(N * BS, 0x5a);
  await writeBlocks(c, 1, DST, marker);
  expectSense(await writeUsingToken(c, 1, ++listId, token, [[DST, N]]), set, what);
  expect((await readBlocks(c, 1, DST, N)).equals(marker)).toBe(true); // nothing written on refusal
}

describe('presented tokens that are not valid', () => {
  it('any single changed byte (sampled across all 512) is refused; the original still works', async () => {
    const token = await tokenFor(c, 0, ++listId, [[SRC, N]]);
    for (const i of [0, 3, 5, 6, 7, 8, 15, 16, 30, 47, 48, 63, 64, 96, 100, 128, 200, 431, 432, 440, 447, 448, 479, 480, 511]) {
      const bad = Buffer.from(token);
      bad[i] ^= 0x40;
      const set: SenseSet = i <= 3 ? SENSE.UNSUPPORTED_TOKEN_TYPE : i === 6 || i === 7 ? SENSE.INVALID_TOKEN_LENGTH : SENSE.TOKEN_FORGED;
      await refused(bad, set, `byte ${i}`);
    }
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[DST, N]]));
    expect((await readBlocks(c, 1, DST, N)).equals(pattern(N * BS, 1))).toBe(true);
  });

  it('a made-up token with the right header is refused', async () => {
    const t = randomBytes(512);
    t.writeUInt32BE(0x0080_0000, 0);
    t.writeUInt16BE(0, 4);
    t.writeUInt16BE(0x01f8, 6);
    await refused(t, SENSE.TOKEN_FORGED, 'random body');
  });

  it('ROD TOKEN LENGTH other than 01F8h -> 5/23/0A; an unknown ROD type -> 5/23/01', async () => {
    const token = await tokenFor(c, 0, ++listId, [[SRC, N]]);
    const len = Buffer.from(token);
    len.writeUInt16BE(0x01f0, 6);
    await refused(len, SENSE.INVALID_TOKEN_LENGTH, 'length');
    const type = Buffer.from(token);
    type.writeUInt32BE(0xfffffff0, 0);
    await refused(type, SENSE.UNSUPPORTED_TOKEN_TYPE, 'type');
  });

  it('DEL_TKN deletes the token once the WUT completes: the next use gets TOKEN DELETED', async () => {
    const token = await tokenFor(c, 0, ++listId, [[SRC, N]]);
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[DST, N]], { delTkn: true }));
    await refused(token, SENSE.TOKEN_DELETED, 'deleted');
  });

  it('an idle token expires after its INACTIVITY TIMEOUT (1 s): TOKEN EXPIRED; a use restarts the timer', async () => {
    const token = await tokenFor(c, 0, ++listId, [[SRC, N]], { inactivity: 1 });
    await new Promise((r) => setTimeout(r, 700));
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[DST, N]]), 'used within the timeout');
    await new Promise((r) => setTimeout(r, 700));
    expectGood(await writeUsingToken(c, 1, ++listId, token, [[DST, N]]), 'the use restarted the timer');
    await new Promise((r) => setTimeout(r, 2300));
    await refused(token, SENSE.TOKEN_EXPIRED, 'expired');
  });

  it('a token sealed under this data directory\'s secret but from before a restart is cancelled, not accepted', async () => {
    const token = await tokenFor(c, 0, ++listId, [[SRC, N]]);
    // The same copy manager secret, but the token store is new (as after a daemon restart).
    const store = d.daemon.rodTokens!;
    for (const t of store.tokens()) store.invalidate(t, 'cancelled');
    await refused(token, SENSE.TOKEN_CANCELLED, 'cancelled');
  });
});
