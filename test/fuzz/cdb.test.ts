/**
 * CDB decoding through the command table (issue 7, hostile input): random
 * CDBs for every opcode (and service action) of the table, run through
 * ScsiDevice.execute like the transport runs them — usage-mask validation,
 * LU state and reservation checks, the handler, the backing store. CDB bytes
 * lean towards zero and small values so that lengths and LBAs land inside
 * the LU often enough to reach the handlers' deeper checks; one CDB in five
 * ignores the usage mask. Data-Out is random, cut short or zero-padded to
 * EDTL as an initiator may send it.
 *
 * Oracle (fuzz-support.ts runChecked): an allowed status, sense never
 * HARDWARE ERROR (4/44/00 = an unexpected exception) nor MEDIUM ERROR, no
 * error logged, no throw, no hang. Each run gets a fresh device and issues
 * one to three commands, so state (reservations, mode pages, a stopped unit)
 * carries between them and a failure replays from its seed.
 */
import fc from 'fast-check';
import { COMMAND_TABLE, type CommandEntry } from '../../scsi/command-table';
import { BS, LU_BLOCKS, bytes, corpus, fuzzParams, fuzzTask, hex, makeFuzzDevice, runChecked, summarizeOutcomes, trackUnhandled } from './fuzz-support';

jest.setTimeout(120_000);

const ENTRIES = COMMAND_TABLE.entries;

/** A byte: mostly 0 or small, sometimes anything. */
const cdbByte = fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 8 }) }, { weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) });

/** A CDB for `entry`: opcode and service action fixed, the rest fuzzed, usually inside the usage mask. */
function cdbFor(entry: CommandEntry): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.array(cdbByte, { minLength: 32, maxLength: 32 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: -2, max: 16 }))
    .map(([raw, maskMode, lenDelta]) => {
      // Length: mostly exact, sometimes longer (extended CDB AHS) or shorter than the table says.
      const len = lenDelta < 0 ? Math.max(1, entry.cdbLength + lenDelta) : lenDelta > 12 ? entry.cdbLength + lenDelta - 12 : entry.cdbLength;
      const c = Buffer.alloc(len);
      for (let i = 0; i < len; i++) c[i] = raw[i];
      c[0] = entry.opcode;
      if (maskMode !== 0) for (let i = 1; i < Math.min(len, entry.cdbLength); i++) c[i] &= entry.usage[i];
      // Small numbers everywhere past byte 1: LBAs and lengths inside the LU reach the handlers' data paths.
      if (maskMode === 4) {
        const keep = [2 + (raw[30] % Math.max(1, len - 2)), 2 + (raw[31] % Math.max(1, len - 2))];
        for (let i = 2; i < len; i++) c[i] = keep.includes(i) ? c[i] & 0x07 : 0;
      }
      if (entry.serviceAction !== undefined && len > 1) c[1] = (c[1] & 0xe0) | entry.serviceAction;
      return c;
    });
}

interface Cmd {
  entry: number;
  cdb: Buffer;
  edtl: number;
  data: Buffer;
  lun: number;
  otherNexus: boolean;
}

const commandArb: fc.Arbitrary<Cmd> = fc.integer({ min: 0, max: ENTRIES.length - 1 }).chain((i) =>
  fc.record({
    entry: fc.constant(i),
    cdb: cdbFor(ENTRIES[i]),
    edtl: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 64 * BS }), fc.constantFrom(BS, 8 * BS, 24, 0xffff, LU_BLOCKS * BS)),
    data: bytes(2048),
    lun: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(7) }),
    otherNexus: fc.boolean(),
  }),
);

async function runSequence(cmds: Cmd[]): Promise<string | null> {
  const fd = await makeFuzzDevice();
  try {
    for (const c of cmds) {
      const task = fuzzTask(c.cdb, { nexus: c.otherNexus ? fd.other : fd.nexus, lun: c.lun, edtl: c.edtl, data: c.data });
      const bad = await runChecked(fd, task);
      if (bad) return `${ENTRIES[c.entry].name}: ${bad}`;
    }
    // Let IMMED copies and anything else started in the background settle or fail now.
    await new Promise((r) => setTimeout(r, 0));
    if (fd.errors.length) return `error logged after the commands: ${JSON.stringify(fd.errors[0]).slice(0, 2000)}`;
    return null;
  } finally {
    await fd.close();
  }
}

interface CorpusEntry {
  cdb: string;
  edtl: number;
  data?: string;
  lun?: number;
}

describe('CDB fuzz through the command table', () => {
  let unhandled: ReturnType<typeof trackUnhandled>;
  beforeAll(() => (unhandled = trackUnhandled()));
  afterAll(() => {
    unhandled.stop();
    console.log(`GOOD/all per opcode: ${summarizeOutcomes()}`);
  });
  afterEach(() => expect(unhandled.list).toEqual([]));

  it('replays the committed corpus (inputs that once broke something, or reach deep paths)', async () => {
    for (const e of corpus<CorpusEntry>('cdb')) {
      const cdb = hex(e.cdb);
      const entry = Math.max(0, ENTRIES.findIndex((x) => x.opcode === cdb[0]));
      const bad = await runSequence([{ entry, cdb, edtl: e.edtl, data: e.data ? hex(e.data) : Buffer.alloc(0), lun: e.lun ?? 0, otherNexus: false }]);
      expect(bad).toBeNull();
    }
  });

  it('every opcode of the table: a few random CDBs each', async () => {
    // A sweep first, so no entry depends on the random draw to be visited at all.
    for (const [i, entry] of ENTRIES.entries()) {
      await fc.assert(
        fc.asyncProperty(cdbFor(entry), bytes(1024), fc.integer({ min: 0, max: 16 * BS }), async (cdb, data, edtl) => {
          const bad = await runSequence([{ entry: i, cdb, edtl, data, lun: 0, otherNexus: false }]);
          if (bad) throw new Error(bad);
        }),
        { ...fuzzParams(12), interruptAfterTimeLimit: 2_000 },
      );
    }
  });

  it('random sequences of one to three commands on a fresh device', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 3 }), async (cmds) => {
        const bad = await runSequence(cmds);
        if (bad) throw new Error(bad);
      }),
      fuzzParams(1500),
    );
  });
});
