/**
 * A token resolves only for an I_T nexus that may access its source LU (the
 * copy scope: target ACLs, as for EXTENDED COPY CSCDs). Two targets: A lets
 * alice and bob in, B only bob. A token alice made on A:
 *  - works for bob on B (B's session may reach A: A's ACL names bob), cross-target;
 *  - is refused for carol on B (A does not let carol in), nothing written.
 */
import {
  BS, SENSE, expectGood, expectSense, odxDaemon, pattern, readBlocks, session, tokenFor, writeBlocks, writeUsingToken,
} from './odx';
import type { TestDaemon } from '../support/daemon';

const A = 'iqn.2026-11.org.xcopyd:a';
const B = 'iqn.2026-11.org.xcopyd:b';
const ALICE = 'iqn.2026-11.org.example:alice';
const BOB = 'iqn.2026-11.org.example:bob';
const CAROL = 'iqn.2026-11.org.example:carol';

let d: TestDaemon;

beforeAll(async () => {
  d = await odxDaemon({
    targets: [
      { iqn: A, allowedInitiators: [ALICE, BOB], luns: [{ lun: 0, path: 'a0.img', size: '16MiB' }] },
      { iqn: B, allowedInitiators: [BOB, CAROL], luns: [{ lun: 0, path: 'b0.img', size: '16MiB' }] },
    ],
  });
});
afterAll(async () => {
  await d.stop();
});

describe('ODX across targets obeys the ACLs', () => {
  it('bob (allowed on A and B) copies alice\'s token from A to B; carol (B only) is refused, B untouched', async () => {
    const alice = await session(d.port, { initiatorName: ALICE, targetName: A });
    const bob = await session(d.port, { initiatorName: BOB, targetName: B });
    const carol = await session(d.port, { initiatorName: CAROL, targetName: B });
    try {
      const data = pattern(32 * BS, 4);
      await writeBlocks(alice, 0, 10, data);
      const token = await tokenFor(alice, 0, 1, [[10, 32]]);

      const marker = Buffer.alloc(32 * BS, 0x66);
      await writeBlocks(carol, 0, 100, marker);
      expectSense(await writeUsingToken(carol, 0, 2, token, [[100, 32]]), SENSE.TOKEN_UNKNOWN, 'carol');
      expect((await readBlocks(carol, 0, 100, 32)).equals(marker)).toBe(true);

      expectGood(await writeUsingToken(bob, 0, 3, token, [[200, 32]]), 'bob');
      expect((await readBlocks(bob, 0, 200, 32)).equals(data)).toBe(true);

      // REPORT ALL ROD TOKENS shows the token to bob (may reach A), not to carol.
      const list = async (c: typeof bob) => {
        const r = await c.command(0, Buffer.from([0x84, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]), { read: 4096 });
        expectGood(r);
        return (r.data.readUInt32BE(0) - 4) / 96;
      };
      expect(await list(bob)).toBeGreaterThanOrEqual(1);
      expect(await list(carol)).toBe(0);
    } finally {
      alice.close();
      bob.close();
      carol.close();
    }
  });
});
