/**
 * Windows' time budget (issue 5 section 6): a foreground WRITE USING TOKEN
 * that cannot finish before its deadline completes with a partial, contiguous
 * TRANSFER COUNT (A/0D/04, INFORMATION = count; RRTI 03h with the count), and
 * Windows resumes with OFFSET INTO ROD = that count. The deadline is set to
 * 50 ms here, so a command runs a few steps (the first 1 MiB, each at most
 * four times the largest before: step-pacer.ts) and stops.
 */
import { BS, SENSE, expectGood, expectSense, odxDaemon, pattern, readBlocks, rrti, session, tokenFor, writeBlocks, writeUsingToken, type TestInitiator } from './odx';
import type { TestDaemon } from '../support/daemon';

let d: TestDaemon;
let c: TestInitiator;

beforeAll(async () => {
  d = await odxDaemon({}, '256MiB');
  c = await session(d.port);
});
afterAll(async () => {
  c.close();
  await d.stop();
});

describe('WRITE USING TOKEN at its deadline', () => {
  // 160 MiB written, copied in many partial rounds and read back through the JS test initiator:
  // ~18 s alone, more beside the other jest worker in CI. A bound on hangs, not a speed test.
  jest.setTimeout(180_000);
  it('stops with a partial contiguous count and is resumed from it until done; the bytes arrive', async () => {
    const blocks = (160 * 1024 * 1024) / BS;
    const data = pattern(blocks * BS, 9);
    await writeBlocks(c, 0, 0, data);
    const token = await tokenFor(c, 0, 1, [[0, blocks]]);
    const store = d.daemon.rodTokens!;
    const saved = store.wutDeadlineMs;
    store.wutDeadlineMs = 50;
    try {
      let done = 0;
      let rounds = 0;
      while (done < blocks) {
        const id = 100 + rounds++;
        const r = await writeUsingToken(c, 1, id, token, [[done, blocks - done]], { offset: done });
        const info = await rrti(c, 1, id);
        if (r.status === 0) {
          expect(info.status).toBe(1);
          done += Number(info.transferCount);
          break;
        }
        const s = expectSense(r, SENSE.DATA_UNDERRUN);
        expect(s.key).toBe(0xa);
        expect(info.status).toBe(0x03);
        expect(BigInt(s.information)).toBe(info.transferCount);
        expect(info.transferCount).toBeGreaterThan(0n);
        done += Number(info.transferCount);
      }
      expect(done).toBe(blocks);
      expect(rounds).toBeGreaterThan(1);
    } finally {
      store.wutDeadlineMs = saved;
    }
    expect((await readBlocks(c, 1, 0, blocks)).equals(data)).toBe(true);
  });

  it('with the default deadline, a 160 MiB WUT completes in one command', async () => {
    const token = await tokenFor(c, 0, 2, [[0, (160 * 1024 * 1024) / BS]]);
    expectGood(await writeUsingToken(c, 1, 3, token, [[0, (160 * 1024 * 1024) / BS]]));
  });
});
