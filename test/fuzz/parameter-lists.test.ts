/**
 * Parameter lists under fuzz (issue 7, hostile input): EXTENDED COPY (LID1
 * and LID4, foreground and IMMED), POPULATE TOKEN, WRITE USING TOKEN (with a
 * real token of the run's device, then mutated), MODE SELECT(6/10) (from the
 * device's own MODE SENSE answer, then mutated) and PERSISTENT RESERVE OUT
 * (every service action, scope/type, SPEC_I_PT transport IDs), through
 * ScsiDevice.execute. Valid lists are the seeds; byte flips, length-field
 * smashes, truncation and extension are the mutations; the CDB's PARAMETER
 * LIST LENGTH and the EDTL usually agree with the list and sometimes do not.
 *
 * Oracle as in cdb.test.ts (an allowed status, sense never 4/xx nor 3/xx, no
 * error logged, no throw, no hang); after each run the copy manager's
 * background work (IMMED copies) is awaited through RECEIVE COPY STATUS and
 * the LUs outside the ranges a list could name are checked unchanged.
 */
import fc from 'fast-check';
import { ScsiStatus } from '../../scsi/types';
import { b2b, bo, e4, lid1, lid4, verify, xcopyCdb, rcrCdb } from '../scsi/copy/helpers';
import { populateTokenCdb, ptParams, rrtiCdb, wutParams, writeUsingTokenCdb, zeroToken, parseRrti } from '../odx/odx';
import {
  BS, LU_BLOCKS, bytes, corpus, fuzzParams, fuzzTask, hex, makeFuzzDevice, mutated, runChecked, summarizeOutcomes, trackUnhandled, type FuzzDevice,
} from './fuzz-support';

jest.setTimeout(180_000);

/** Parameter list length in the CDB and EDTL: usually the list's, sometimes not. */
const lengthsArb = fc.record({
  cdbLen: fc.oneof({ weight: 6, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 15, 16, 17, 0xffffffff) }),
  edtl: fc.oneof({ weight: 6, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 4096 }) }),
});

type Lengths = { cdbLen: number; edtl: number };

function withLength(cdb: Buffer, at: number, size: 1 | 2 | 4, len: number): Buffer {
  const c = Buffer.from(cdb);
  if (size === 1) c[at] = len & 0xff;
  else if (size === 2) c.writeUInt16BE(len & 0xffff, at);
  else c.writeUInt32BE(len >>> 0, at);
  return c;
}

async function run(fd: FuzzDevice, cdb: Buffer, data: Buffer, l: Lengths, lun = 0): Promise<void> {
  const edtl = l.edtl >= 0 ? l.edtl : data.length;
  const bad = await runChecked(fd, fuzzTask(cdb, { nexus: fd.nexus, lun, edtl, data }));
  if (bad) throw new Error(`${bad}\nparameter list ${data.toString('hex')}`);
}

/** Wait for every copy the manager still runs (IMMED) and check the logs once more. */
async function settle(fd: FuzzDevice): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await fd.device.execute(fuzzTask(rcrCdb(0x05, 1, 1024), { nexus: fd.nexus, edtl: 1024 }));
    // COPY STATUS of list 1: done or unknown (5/24/00) both mean nothing is running under that ID.
    if (r.status !== ScsiStatus.GOOD || !r.dataIn || (Buffer.concat(r.dataIn)[12] & 0x7f) !== 0x10) break;
    await new Promise((res) => setTimeout(res, 5));
  }
  await new Promise((res) => setTimeout(res, 0));
  if (fd.errors.length) throw new Error(`error logged in the background: ${JSON.stringify(fd.errors[0]).slice(0, 2000)}`);
}

async function withDevice(fn: (fd: FuzzDevice) => Promise<void>): Promise<void> {
  const fd = await makeFuzzDevice();
  try {
    await fn(fd);
    await settle(fd);
  } finally {
    await fd.close();
  }
}

const naaOf = (fd: FuzzDevice, lun: number): Buffer => fd.device.logicalUnit(lun)!.identity.naa;

describe('parameter list fuzz', () => {
  let unhandled: ReturnType<typeof trackUnhandled>;
  beforeAll(() => (unhandled = trackUnhandled()));
  afterAll(() => {
    unhandled.stop();
    console.log(`GOOD/all per opcode: ${summarizeOutcomes()}`);
  });
  afterEach(() => expect(unhandled.list).toEqual([]));

  it('replays the committed corpus', async () => {
    for (const e of corpus<{ cdb: string; data: string; lun?: number }>('parameter-lists')) {
      await withDevice((fd) => run(fd, hex(e.cdb), hex(e.data), { cdbLen: -1, edtl: -1 }, e.lun ?? 0));
    }
  });

  it('EXTENDED COPY(LID1) and (LID4): mutated valid lists', async () => {
    // Seeds are built per device (the CSCDs name its LUs), so the mutation is described, then applied.
    const seedArb = fc.record({
      lid: fc.constantFrom(1 as const, 4 as const),
      immed: fc.boolean(),
      segs: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 4 }),
      blocks: fc.integer({ min: 0, max: 64 }),
      src: fc.integer({ min: 0, max: LU_BLOCKS }),
      dst: fc.integer({ min: 0, max: LU_BLOCKS }),
    });
    await fc.assert(
      fc.asyncProperty(seedArb, fc.nat(), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.boolean(), lengthsArb, async (s, cut, pokes, doCut, l) => {
        await withDevice(async (fd) => {
          const cscds = [e4(naaOf(fd, 0)), e4(naaOf(fd, 1))];
          const segs = s.segs.map((k) =>
            k === 0 ? b2b(0, 1, s.blocks, s.src, s.dst) : k === 1 ? bo(1, 0, s.blocks * 7, s.src, s.dst, s.blocks % 512, 3) : verify(0),
          );
          let list = s.lid === 1 ? lid1(cscds, segs) : lid4(cscds, segs, { immed: s.immed });
          for (const [at, v] of pokes) list[at % list.length] = v;
          if (doCut) list = list.subarray(0, cut % (list.length + 1));
          const cdb = withLength(xcopyCdb(s.lid === 1 ? 0 : 1, list.length), 10, 4, l.cdbLen >= 0 ? l.cdbLen : list.length);
          await run(fd, cdb, list, l);
        });
      }),
      fuzzParams(400),
    );
  });

  it('POPULATE TOKEN: mutated valid lists', async () => {
    const seed = ptParams([[0, 16], [100, 8]], { inactivity: 10 });
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.constant(seed), mutated(seed), mutated(ptParams([[LU_BLOCKS - 8, 8]], { immed: true }))), lengthsArb, fc.integer({ min: 0, max: 3 }), async (list, l, listId) => {
        await withDevice(async (fd) => {
          const cdb = withLength(populateTokenCdb(listId, list.length), 10, 4, l.cdbLen >= 0 ? l.cdbLen : list.length);
          await run(fd, cdb, list, l);
          // Whatever PT did, RRTI for its list ID answers without failing.
          await run(fd, rrtiCdb(listId, 1024), Buffer.alloc(0), { cdbLen: -1, edtl: 1024 });
        });
      }),
      fuzzParams(400),
    );
  });

  it('WRITE USING TOKEN: a real token of the device, then mutated lists (token bytes too)', async () => {
    const listArb = fc.record({
      ranges: fc.array(fc.tuple(fc.integer({ min: 0, max: LU_BLOCKS + 8 }), fc.integer({ min: 0, max: 64 })), { minLength: 0, maxLength: 4 }),
      offset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 64 })),
      immed: fc.boolean(),
      delTkn: fc.boolean(),
      zero: fc.boolean(),
    });
    const pokes = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(listArb, pokes, lengthsArb, fc.integer({ min: 0, max: 1 }), async (s, p, l, lun) => {
        await withDevice(async (fd) => {
          let token = zeroToken();
          if (!s.zero) {
            const pt = ptParams([[0, 32], [200, 16]]);
            await run(fd, populateTokenCdb(7, pt.length), pt, { cdbLen: -1, edtl: -1 });
            const r = await fd.device.execute(fuzzTask(rrtiCdb(7, 1024), { nexus: fd.nexus, edtl: 1024 }));
            const t = r.dataIn ? parseRrti(Buffer.concat(r.dataIn)).token : undefined;
            if (!t) throw new Error('no token from POPULATE TOKEN + RRTI');
            token = t;
          }
          const list = wutParams(token, s.ranges, { immed: s.immed, delTkn: s.delTkn, offset: s.offset });
          for (const [at, v] of p) list[at % list.length] = v;
          const cdb = withLength(writeUsingTokenCdb(8, list.length), 10, 4, l.cdbLen >= 0 ? l.cdbLen : list.length);
          await run(fd, cdb, list, l, lun);
          await run(fd, rrtiCdb(8, 1024), Buffer.alloc(0), { cdbLen: -1, edtl: 1024 });
        });
      }),
      fuzzParams(300),
    );
  });

  it('MODE SELECT(6/10): the device own MODE SENSE answer, mutated', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.boolean(), fc.boolean(), fc.oneof(fc.constant([] as Array<[number, number]>), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 })), fc.nat(), fc.integer({ min: 0, max: 3 }).map((n) => n === 0), lengthsArb, async (ten, pf, sp, p, cut, doCut, l) => {
        await withDevice(async (fd) => {
          // MODE SENSE of all pages (current values), then turned into a MODE SELECT list.
          const sense = ten ? Buffer.from([0x5a, 0, 0x3f, 0, 0, 0, 0, 0x10, 0, 0]) : Buffer.from([0x1a, 0, 0x3f, 0, 0xff, 0]);
          const r = await fd.device.execute(fuzzTask(sense, { nexus: fd.nexus, edtl: 4096 }));
          let list = Buffer.concat(r.dataIn ?? []);
          if (ten) list.writeUInt16BE(0, 0);
          else list[0] = 0; // MODE DATA LENGTH is reserved in MODE SELECT
          // Pages come back with PS set; it is reserved in MODE SELECT: clear it before mutating.
          const hdr = ten ? 8 + list.readUInt16BE(6) : 4 + list[3];
          for (let o = hdr; o + 1 < list.length; ) {
            const spf = (list[o] & 0x40) !== 0;
            list[o] &= 0x7f;
            o += spf ? 4 + list.readUInt16BE(o + 2) : 2 + list[o + 1];
          }
          for (const [at, v] of p) if (list.length) list[at % list.length] = v;
          if (doCut) list = list.subarray(0, cut % (list.length + 1));
          const cdb = ten ? Buffer.from([0x55, (pf ? 0x10 : 0) | (sp ? 1 : 0), 0, 0, 0, 0, 0, 0, 0, 0]) : Buffer.from([0x15, (pf ? 0x10 : 0) | (sp ? 1 : 0), 0, 0, 0, 0]);
          const len = l.cdbLen >= 0 ? l.cdbLen : list.length;
          const c = ten ? withLength(cdb, 7, 2, len) : withLength(cdb, 4, 1, len);
          await run(fd, c, list, l);
          // The unit still reads and writes (a fuzzed mode page may not wedge it).
          await run(fd, Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Buffer.alloc(BS, 1), { cdbLen: -1, edtl: -1 });
        });
      }),
      fuzzParams(500),
    );
  });

  it('PERSISTENT RESERVE OUT: every service action, scope/type, keys and SPEC_I_PT transport IDs', async () => {
    const key = fc.oneof({ weight: 3, arbitrary: fc.constant(0n) }, { weight: 4, arbitrary: fc.constant(0x1234n) }, { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) });
    const tid = fc.oneof(
      // iSCSI TransportID (FORMAT 00b/01b), sometimes of a real initiator of the device
      fc.tuple(fc.constantFrom('iqn.2026-11.org.xcopyd:fuzz-b', 'iqn.2026-11.org.xcopyd:fuzz-a', 'x'), fc.boolean(), fc.nat(300)).map(([name, port, pad]) => {
        const n = Buffer.from(port ? `${name},i,0x000000000001` : name);
        const len = Math.max(n.length + 1, 20) + ((4 - ((Math.max(n.length + 1, 20)) % 4)) % 4) + (pad % 8) * 4;
        const b = Buffer.alloc(4 + len);
        b[0] = (port ? 0x40 : 0) | 0x05;
        b.writeUInt16BE(len, 2);
        n.copy(b, 4);
        return b;
      }),
      bytes(64, 4),
    );
    const listArb = fc.record({
      rk: key,
      sark: key,
      flags: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(0x08) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 0x0f }) }),
      tids: fc.array(tid, { maxLength: 3 }),
      moveTid: fc.boolean(),
    });
    const stepArb = fc.record({
      sa: fc.integer({ min: 0, max: 8 }),
      scopeType: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 255 })),
      list: listArb,
      pokes: fc.oneof(fc.constant([] as Array<[number, number]>), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 })),
      other: fc.boolean(),
      l: lengthsArb,
    });
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 4 }), async (steps) => {
        await withDevice(async (fd) => {
          for (const s of steps) {
            const tids = Buffer.concat(s.list.tids);
            let list: Buffer;
            if (s.sa === 7) {
              // REGISTER AND MOVE: key, SA key, RELATIVE TARGET PORT, TRANSPORTID LENGTH, TransportID.
              list = Buffer.alloc(24 + tids.length);
              list.writeBigUInt64BE(s.list.rk, 0);
              list.writeBigUInt64BE(s.list.sark, 8);
              list[17] = s.list.flags & 0x03;
              list.writeUInt16BE(1, 18);
              list.writeUInt32BE(s.list.moveTid ? tids.length : tids.length ^ 4, 20);
              tids.copy(list, 24);
            } else {
              const spec = (s.list.flags & 0x08) !== 0;
              list = Buffer.alloc(24 + (spec ? 4 + tids.length : 0));
              list.writeBigUInt64BE(s.list.rk, 0);
              list.writeBigUInt64BE(s.list.sark, 8);
              list[20] = s.list.flags;
              if (spec) {
                list.writeUInt32BE(tids.length, 24);
                tids.copy(list, 28);
              }
            }
            for (const [at, v] of s.pokes) list[at % list.length] = v;
            const cdb = Buffer.from([0x5f, s.sa, s.scopeType, 0, 0, 0, 0, 0, 0, 0]);
            cdb.writeUInt32BE(s.l.cdbLen >= 0 ? s.l.cdbLen >>> 0 : list.length, 5);
            const edtl = s.l.edtl >= 0 ? s.l.edtl : list.length;
            const bad = await runChecked(fd, fuzzTask(cdb, { nexus: s.other ? fd.other : fd.nexus, edtl, data: list }));
            if (bad) throw new Error(`${bad}\nparameter list ${list.toString('hex')}`);
          }
          // PERSISTENT RESERVE IN READ FULL STATUS still answers.
          await run(fd, Buffer.from([0x5e, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0]), Buffer.alloc(0), { cdbLen: -1, edtl: 4096 });
        });
      }),
      fuzzParams(500),
    );
  });
});
