/**
 * Every refusal of POPULATE TOKEN / WRITE USING TOKEN (reference 2.11
 * validation table), with the field pointer the standard names, and nothing
 * written on refusal.
 */
import {
  BS, SENSE, copyOperationAbortCdb, expectGood, expectSense, odxDaemon, pattern, populateToken, populateTokenCdb, ptParams,
  readBlocks, session, tokenFor, writeBlocks, writeUsingToken, writeUsingTokenCdb, wutParams, type Range, type TestInitiator,
} from './odx';
import type { TestDaemon } from '../support/daemon';

let d: TestDaemon;
let c: TestInitiator;
let listId = 0x8000;
let token: Buffer;
const CAPACITY = (64 * 1024 * 1024) / BS;

beforeAll(async () => {
  d = await odxDaemon();
  c = await session(d.port);
  await writeBlocks(c, 0, 0, pattern(64 * BS, 1));
  token = await tokenFor(c, 0, ++listId, [[0, 64]]);
});
afterAll(async () => {
  c.close();
  await d.stop();
});

describe('POPULATE TOKEN refusals', () => {
  const cases: Array<[string, () => Buffer, readonly (readonly [number, number, number])[], number | undefined]> = [
    ['POPULATE TOKEN DATA LENGTH < 1Eh -> 5/26/00 at byte 0', () => ptParams([[0, 8]], { dataLength: 0x1d }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 0],
    ['range descriptor length < 16 -> 5/26/00 at byte 14', () => ptParams([[0, 8]], { rangeLength: 8 }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 14],
    ['INACTIVITY TIMEOUT > 600 -> 5/26/00 at byte 4', () => ptParams([[0, 8]], { inactivity: 601 }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 4],
    ['RTV=1 with a ROD type PT does not create (zero token) -> 5/26/00 at byte 8', () => ptParams([[0, 8]], { rtv: true, rodType: 0xffff0001 }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 8],
    ['RTV=1 with a reserved ROD type -> 5/26/00 at byte 8', () => ptParams([[0, 8]], { rtv: true, rodType: 0x00000005 }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 8],
    ['more range descriptors than MAXIMUM RANGE DESCRIPTORS -> 5/26/08', () => ptParams(Array.from({ length: 129 }, (_, i): Range => [i * 2, 1])), SENSE.TOO_MANY_SEGMENT_DESCRIPTORS, undefined],
    ['a range beyond capacity -> 5/21/00', () => ptParams([[CAPACITY - 4, 8]]), SENSE.LBA_OUT_OF_RANGE, undefined],
    ['overlapping ranges -> 5/26/00 at the second descriptor', () => ptParams([[0, 8], [4, 8]]), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 32],
    ['more than MAXIMUM TOKEN TRANSFER SIZE (2 GiB) -> 5/26/00 at the count that crosses it', () => ptParams(Array.from({ length: 33 }, (): Range => [0, CAPACITY])), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 16 + 32 * 16 + 8],
  ];
  it.each(cases)('%s', async (_n, params, set, pointer) => {
    const before = d.daemon.rodTokens!.liveCount;
    const p = params();
    const s = expectSense(await c.command(0, populateTokenCdb(++listId, p.length), { dataOut: p }), set);
    if (pointer !== undefined) expect([s.sksv, s.cd, s.fieldPointer]).toEqual([true, false, pointer]);
    expect(d.daemon.rodTokens!.liveCount).toBe(before); // no token made
  });

  it('PARAMETER LIST LENGTH 1..15 -> 5/1A/00; 0 -> GOOD, nothing done', async () => {
    expectSense(await c.command(0, populateTokenCdb(++listId, 15), { dataOut: Buffer.alloc(15) }), SENSE.PARAMETER_LIST_LENGTH_ERROR);
    expectGood(await c.command(0, populateTokenCdb(++listId, 0)));
  });

  it('the INFORMATION of 5/21/00 is the first LBA out of range', async () => {
    const s = expectSense(await populateToken(c, 0, ++listId, [[CAPACITY + 10, 1]]), SENSE.LBA_OUT_OF_RANGE);
    expect([s.valid, s.information]).toEqual([true, CAPACITY + 10]);
  });

  it('a reserved CDB bit -> 5/24/00 with its pointer', async () => {
    const cdb = populateTokenCdb(++listId, 0);
    cdb[3] = 0x01;
    const s = expectSense(await c.command(0, cdb), SENSE.INVALID_FIELD_IN_CDB);
    expect([s.cd, s.fieldPointer]).toEqual([true, 3]);
  });
});

describe('WRITE USING TOKEN refusals write nothing', () => {
  const DST = 20000;
  async function refused(p: Buffer, set: readonly (readonly [number, number, number])[], pointer?: number): Promise<void> {
    const marker = Buffer.alloc(64 * BS, 0x3c);
    await writeBlocks(c, 1, DST, marker);
    const s = expectSense(await c.command(1, writeUsingTokenCdb(++listId, p.length), { dataOut: p }), set);
    if (pointer !== undefined) expect([s.sksv, s.cd, s.fieldPointer]).toEqual([true, false, pointer]);
    expect((await readBlocks(c, 1, DST, 64)).equals(marker)).toBe(true);
  }

  it('WRITE USING TOKEN DATA LENGTH < 226h -> 5/26/00 at byte 0', () => refused(wutParams(token, [[DST, 64]], { dataLength: 0x225 }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 0));
  it('range descriptor length < 16 -> 5/26/00 at byte 534', () => refused(wutParams(token, [[DST, 64]], { rangeLength: 0 }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 534));
  it('OFFSET INTO ROD at or past the bytes represented -> 5/26/00 at byte 8', () => refused(wutParams(token, [[DST, 64]], { offset: 64 }), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 8));
  it('destination beyond capacity -> 5/21/00', () => refused(wutParams(token, [[DST, 64], [CAPACITY - 1, 2]]), SENSE.LBA_OUT_OF_RANGE));
  it('overlapping destination ranges -> 5/26/00', () => refused(wutParams(token, [[DST, 64], [DST + 63, 1]]), SENSE.INVALID_FIELD_IN_PARAMETER_LIST, 536 + 16));
  it('too many destination ranges -> 5/26/08', () => refused(wutParams(token, Array.from({ length: 129 }, (_, i): Range => [DST + 100 + i, 1])), SENSE.TOO_MANY_SEGMENT_DESCRIPTORS));
  it('PARAMETER LIST LENGTH shorter than the header -> 5/1A/00', async () => {
    expectSense(await c.command(1, writeUsingTokenCdb(++listId, 100), { dataOut: Buffer.alloc(100) }), SENSE.PARAMETER_LIST_LENGTH_ERROR);
  });
});

describe('COPY OPERATION ABORT', () => {
  it('a list identifier with nothing in progress -> 5/24/00 at byte 2', async () => {
    const s = expectSense(await c.command(0, copyOperationAbortCdb(0xabcdef)), SENSE.INVALID_FIELD_IN_CDB);
    expect(s.fieldPointer).toBe(2);
  });

  it('aborting a background (IMMED=1) WRITE USING TOKEN: RRTI then reads TERMINATED (60h) or, if it won the race, completed', async () => {
    const big = await tokenFor(c, 0, ++listId, [[0, 65536]]);
    const id = ++listId;
    expectGood(await writeUsingToken(c, 1, id, big, [[0, 65536]], { immed: true }));
    const r = await c.command(1, copyOperationAbortCdb(id));
    if (r.status !== 0) expectSense(r, SENSE.INVALID_FIELD_IN_CDB);
    const info = await (await import('./odx')).rrti(c, 1, id);
    expect([0x60, 0x01]).toContain(info.status);
    if (info.status === 0x60) expect(info.completionStatus).toBe(0x40);
  });
});
