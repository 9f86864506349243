/**
 * Issue 11 point 5, list identifiers as QEMU sends them, over iSCSI: QEMU's iscsi driver
 * (block/iscsi.c, copy_range) always builds its EXTENDED COPY with LIST IDENTIFIER 1 and LIST
 * ID USAGE 10b (status retained, but QEMU never asks for it), two E4h NAA CSCDs and one 02h
 * segment. With `qemu-img convert -C -W` several copy coroutines run at once, so copies with
 * the same list identifier overlap in time on one session; today the second is refused with
 * OPERATION IN PROGRESS (5/00/16) and QEMU silently turns offload off for the rest of the run.
 * For usage 10b/11b a duplicate list identifier must not be refused.
 *
 * Here the copies go out together in one write (test/support/pipelined.ts), so they are all
 * running before any finishes: LID1 as QEMU sends it, and LID4 with the same usage.
 * (The real qemu-img run is test/interop/qemu-xcopy-overlap.test.ts.)
 */
import path from 'node:path';
import type { TestDaemon } from '../support/daemon';
import { fastPattern, naaOf, readFileAt, writeFileAt } from '../support/host-xcopy';
import { pipelined } from '../support/pipelined';
import { b2b, e4, lid1, lid4, xcopyCdb } from '../scsi/copy/helpers';
import { BS, odxDaemon, type TestInitiator, session } from './odx';

const MiB = 1024 * 1024;
const COPY_BLOCKS = (16 * MiB) / BS;
const IN_FLIGHT = 4;
const ROUNDS = 3;

let d: TestDaemon;
let c: TestInitiator;
let naa: [Buffer, Buffer];

beforeAll(async () => {
  d = await odxDaemon({}, '256MiB');
  c = await session(d.port);
  naa = [await naaOf(c, 0), await naaOf(c, 1)];
}, 60_000);
afterAll(async () => {
  c.close();
  await d.stop();
});

const lunFile = (lun: number) => path.join(d.dataDir, `lun${lun}.img`);

describe("QEMU's list identifier: ID 1, LIST ID USAGE 10b, copies overlapping on one session", () => {
  jest.setTimeout(120_000);

  // Issue 11 point 5: every copy after the first of a batch got 5/00/16 (OPERATION IN PROGRESS) before.
  it.each([
    ['LID1 (as QEMU sends it)', 0 as const],
    ['LID4', 1 as const],
  ])(`%s: ${IN_FLIGHT} copies of 16 MiB with list ID 1 in flight at once, ${ROUNDS} rounds: none refused, bytes right`, async (_label, sa) => {
    const source = fastPattern(IN_FLIGHT * COPY_BLOCKS * BS, 40 + sa);
    writeFileAt(lunFile(0), 0, source);
    const refused: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const cmds = Array.from({ length: IN_FLIGHT }, (_, k) => {
        const seg = b2b(0, 1, COPY_BLOCKS, k * COPY_BLOCKS, (round * IN_FLIGHT + k) * COPY_BLOCKS);
        const params = sa === 0 ? lid1([e4(naa[0]), e4(naa[1])], [seg], { listId: 1, usage: 0b10 }) : lid4([e4(naa[0]), e4(naa[1])], [seg], { listId: 1, usage: 0b10 });
        return { lun: 0, cdb: xcopyCdb(sa, params.length), dataOut: params };
      });
      const results = await pipelined(c, cmds);
      results.forEach((r, k) => {
        if (r.status !== 0) refused.push(`round ${round} copy ${k}: ${r.sense ? `${(r.sense[2] & 0xf).toString(16)}/${r.sense[12].toString(16)}/${r.sense[13].toString(16)}` : `status ${r.status}`}`);
      });
    }
    expect(refused).toEqual([]);
    for (let round = 0; round < ROUNDS; round++) {
      expect(readFileAt(lunFile(1), round * IN_FLIGHT * COPY_BLOCKS * BS, source.length).equals(source)).toBe(true);
    }
  });

  // Not weakened: with LIST ID USAGE 00b the initiator will ask for the results by that ID, so
  // a second copy under an ID still in use is refused (SPC-5 5.17.4.3: OPERATION IN PROGRESS).
  it.each([
    ['LID1', 0 as const],
    ['LID4', 1 as const],
  ])('%s with LIST ID USAGE 00b: of two overlapping copies with one list ID, the second is refused with 5/00/16, the first completes', async (_label, sa) => {
    const cmds = [0, 1].map((k) => {
      const seg = b2b(0, 1, COPY_BLOCKS, k * COPY_BLOCKS, ((224 + 16 * k) * MiB) / BS);
      const params = sa === 0 ? lid1([e4(naa[0]), e4(naa[1])], [seg], { listId: 7, usage: 0b00 }) : lid4([e4(naa[0]), e4(naa[1])], [seg], { listId: 7, usage: 0b00 });
      return { lun: 0, cdb: xcopyCdb(sa, params.length), dataOut: params };
    });
    const [first, second] = await pipelined(c, cmds);
    expect(first.status).toBe(0);
    expect(second.status).toBe(2);
    expect([second.sense![2] & 0x0f, second.sense![12], second.sense![13]]).toEqual([0x5, 0x00, 0x16]);
  });
});
