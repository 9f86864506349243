/**
 * Guided targets of the SCSI core, all through ScsiDevice.execute on a
 * fresh in-memory device per input (fuzz-support.ts makeFuzzDevice): CDB
 * decoding over the whole command table, and the parameter lists of
 * EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN, MODE SELECT and
 * PERSISTENT RESERVE OUT.
 *
 * Oracle (fuzz-support.ts runChecked): an allowed status (GOOD, or CHECK
 * CONDITION with sense, ...), sense never HARDWARE ERROR (4/44/00 is what an
 * unexpected exception becomes) nor MEDIUM ERROR, no error logged, no throw,
 * no hang; background copies are waited for and must not log errors either.
 */
import fc from 'fast-check';
import { ScsiStatus } from '../../../scsi/types';
import { COMMAND_TABLE } from '../../../scsi/command-table';
import { b2b, bo, e4, lid1, lid4, verify } from '../../scsi/copy/helpers';
import { MemoryStore, identity } from '../../scsi/helpers';
import { parseRrti, ptParams, wutParams, zeroToken } from '../../odx/odx';
import { BS, LU_BLOCKS, corpus, fuzzTask, hex, makeFuzzDevice, runChecked, type FuzzDevice } from '../fuzz-support';
import { Bytes, u16, u32, u8, type FuzzTarget } from './target';

/** Run one command under the oracle; the failure names the command. */
async function checked(fd: FuzzDevice, cdb: Buffer, data: Buffer, edtl: number, o: { lun?: number; other?: boolean } = {}): Promise<string | null> {
  const bad = await runChecked(fd, fuzzTask(cdb, { nexus: o.other ? fd.other : fd.nexus, lun: o.lun ?? 0, edtl, data }));
  return bad ? `${bad}\nparameter list ${data.subarray(0, 1024).toString('hex')}` : null;
}

/** Let background copies (IMMED) finish (bounded), then close; errors logged meanwhile are findings. */
async function finish(fd: FuzzDevice): Promise<string | null> {
  try {
    for (let i = 0; i < 400 && fd.device.copyManager.running().length > 0; i++) await new Promise((r) => setTimeout(r, 5));
    if (fd.device.copyManager.running().length > 0) return 'a background copy still running after 2 s';
    await new Promise((r) => setImmediate(r));
    if (fd.errors.length) return `error logged in the background: ${JSON.stringify(fd.errors[0]).slice(0, 2000)}`;
    return null;
  } finally {
    try {
      await fd.close();
    } catch (err) {
      return `device close threw: ${(err as Error)?.stack ?? err}`;
    }
  }
}

/**
 * Stores of finished runs, zeroed again when written: allocating and
 * faulting in 2 MiB per input was most of a run's cost.
 */
const pool: MemoryStore[][] = [];
function stores(): MemoryStore[] {
  const s = pool.pop() ?? [new MemoryStore(LU_BLOCKS * BS), new MemoryStore(LU_BLOCKS * BS)];
  for (const m of s) {
    if (m.writes || m.punched.length) m.data.fill(0);
    m.writes = m.flushes = m.fuaWrites = 0;
    m.punched = [];
    m.failNext = undefined;
  }
  return s;
}

async function withDevice(fn: (fd: FuzzDevice) => Promise<string | null>): Promise<string | null> {
  const s = stores();
  const fd = await makeFuzzDevice({ stores: s });
  let bad: string | null;
  try {
    bad = await fn(fd);
  } catch (err) {
    bad = `harness threw: ${(err as Error)?.stack ?? err}`;
  }
  const after = await finish(fd);
  // A store a copy may still write to (a run that did not settle) is not reused.
  if (!after) pool.push(s);
  return bad ?? after;
}

// ---- CDB decoding -------------------------------------------------------------------------

const ENTRIES = COMMAND_TABLE.entries;
const LUNS = [0, 1, 7, 0];

/** One command: flags (bits 0-1 LUN 0/1/7, bit 2 the other nexus), EDTL (u32, cut to 1 MiB), CDB length, CDB, data length (u16), data. */
function encodeCmd(cdb: Buffer, edtl: number, data: Buffer = Buffer.alloc(0), flags = 0): Buffer {
  return Buffer.concat([u8(flags), u32(edtl), u8(cdb.length), cdb, u16(data.length), data]);
}

const cdbCmdArb = fc.integer({ min: 0, max: ENTRIES.length - 1 }).chain((i) =>
  fc.tuple(fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 255 })), { minLength: 32, maxLength: 32 }), fc.integer({ min: 0, max: 16 * BS }), fc.integer({ min: 0, max: 7 })).map(([raw, edtl, flags]) => {
    const e = ENTRIES[i];
    const c = Buffer.alloc(e.cdbLength);
    for (let k = 1; k < c.length; k++) c[k] = raw[k] & e.usage[k];
    c[0] = e.opcode;
    if (e.serviceAction !== undefined) c[1] = (c[1] & 0xe0) | e.serviceAction;
    return encodeCmd(c, edtl, Buffer.alloc(Math.min(edtl, 1024), raw[0]), flags);
  }),
);

/**
 * Input: a count (1-3 commands on one fresh device, so state carries: a
 * reservation, a mode page, a stopped unit), then the commands (encodeCmd).
 */
export const cdbTarget: FuzzTarget = {
  name: 'cdb',
  maxLen: 8 * 1024,
  dict: [...new Set(ENTRIES.map((e) => e.opcode))].map((op) => Buffer.from([op])),
  generate: fc.array(cdbCmdArb, { minLength: 1, maxLength: 3 }).map((cmds) => Buffer.concat([u8(cmds.length - 1), ...cmds])),
  // The table's usage masks are hard to hit byte by byte; the generator knows them (measured: more coverage per second).
  generateRate: 0.3,
  seeds() {
    const out: Buffer[] = [];
    // Every entry of the table once: opcode, service action, an allocation/transfer length of 1 where the usage mask allows.
    for (const e of ENTRIES) {
      const c = Buffer.alloc(e.cdbLength);
      c[0] = e.opcode;
      if (e.serviceAction !== undefined) c[1] = e.serviceAction;
      c[c.length - 2] = 1 & e.usage[c.length - 2];
      out.push(Buffer.concat([u8(0), encodeCmd(c, BS, Buffer.alloc(BS, 0xa5))]));
    }
    for (const e of corpus<{ cdb: string; edtl: number; data?: string; lun?: number }>('cdb')) {
      out.push(Buffer.concat([u8(0), encodeCmd(hex(e.cdb), e.edtl, e.data ? hex(e.data) : Buffer.alloc(Math.min(e.edtl, 4096), 0x5a), e.lun === 1 ? 1 : 0)]));
    }
    return out;
  },
  run(input) {
    return withDevice(async (fd) => {
      const r = new Bytes(input);
      const n = (r.u8() % 3) + 1;
      for (let i = 0; i < n && r.left > 0; i++) {
        const flags = r.u8();
        const edtl = r.u32() % (1024 * 1024 + 1);
        const cdb = Buffer.from(r.take(Math.max(1, r.u8() % 33)));
        const data = Buffer.from(r.take(r.u16() % 8193));
        if (cdb.length === 0) break;
        const bad = await checked(fd, cdb, data, edtl, { lun: LUNS[flags & 3], other: (flags & 4) !== 0 });
        if (bad) return bad;
      }
      return null;
    });
  },
};

// ---- parameter lists ----------------------------------------------------------------------

/**
 * The header every parameter-list target reads first: flags (bit 6: the
 * CDB's PARAMETER LIST LENGTH is `lie`, not the list's; bit 7: EDTL is
 * `edtl`, not the list's; bits 0-5 the target's own), lie (u32), EDTL (u16),
 * then the list.
 */
interface ListInput {
  flags: number;
  list: Buffer;
  cdbLength: number;
  edtl: number;
}

function readList(input: Buffer): ListInput {
  const r = new Bytes(input);
  const flags = r.u8();
  const lie = r.u32();
  const edtl = r.u16();
  const list = Buffer.from(r.rest());
  return { flags, list, cdbLength: flags & 0x40 ? lie : list.length, edtl: flags & 0x80 ? edtl : list.length };
}

const listInput = (flags: number, list: Buffer): Buffer => Buffer.concat([u8(flags & 0x3f), u32(0), u16(0), list]);

function fromCorpus(opcode: number, sa: number | null, flagsOf: (cdb: Buffer) => number): Buffer[] {
  return corpus<{ cdb: string; data: string }>('parameter-lists')
    .map((e) => ({ cdb: hex(e.cdb), data: hex(e.data) }))
    .filter((e) => e.cdb[0] === opcode && (sa === null || (e.cdb[1] & 0x1f) === sa))
    .map((e) => listInput(flagsOf(e.cdb), e.data));
}

const cdb16 = (op: number, sa: number, listId: number, len: number): Buffer => {
  const c = Buffer.alloc(16);
  c[0] = op;
  c[1] = sa;
  c.writeUInt32BE(listId >>> 0, 6);
  c.writeUInt32BE(len >>> 0, 10);
  return c;
};

const NAA0 = identity(0).naa;
const NAA1 = identity(1).naa;
const COPY_DICT = [e4(NAA0), e4(NAA1), b2b(0, 1, 8, 0, 0), bo(1, 0, 1000, 0, 0, 3, 5), verify(0), Buffer.from([0x02]), Buffer.from([0x0a]), Buffer.from([0xe4]), Buffer.from([0x00, 0x01])];

/** EXTENDED COPY: flags bit 0 LID4, bit 1 issued to LUN 1. */
export const extendedCopyTarget: FuzzTarget = {
  name: 'extended-copy',
  maxLen: 4096,
  dict: COPY_DICT,
  generate: fc
    .record({
      lid4: fc.boolean(),
      immed: fc.boolean(),
      segs: fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: LU_BLOCKS }), fc.integer({ min: 0, max: LU_BLOCKS })), { minLength: 1, maxLength: 4 }),
    })
    .map((s) => {
      const segs = s.segs.map(([k, n, a, b]) => (k === 0 ? b2b(0, 1, n, a, b) : k === 1 ? bo(1, 0, n * 7, a, b, n % 512, 3) : verify(0)));
      return listInput(s.lid4 ? 1 : 0, s.lid4 ? lid4([e4(NAA0), e4(NAA1)], segs, { immed: s.immed }) : lid1([e4(NAA0), e4(NAA1)], segs));
    }),
  seeds() {
    const c = [e4(NAA0), e4(NAA1)];
    return [
      listInput(0, lid1(c, [b2b(0, 1, 8, 0, 16)])),
      listInput(0, lid1(c, [b2b(0, 1, 8, 0, 16), bo(1, 0, 700, 2, 40, 5, 3), verify(1)])),
      listInput(1, lid4(c, [b2b(0, 0, 4, 10, 100)])),
      listInput(1, lid4(c, [b2b(1, 0, 16, 0, 200)], { immed: true, listId: 9 })),
      listInput(2, lid1([e4(NAA1)], [b2b(0, 0, 2, 0, 8)], { inline: 0 })),
      ...fromCorpus(0x83, null, (cdb) => ((cdb[1] & 0x1f) === 1 ? 1 : 0)).filter((b) => b.length > 0),
    ];
  },
  run(input) {
    const l = readList(input);
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x83;
    cdb[1] = l.flags & 1;
    cdb.writeUInt32BE(l.cdbLength >>> 0, 10);
    return withDevice((fd) => checked(fd, cdb, l.list, l.edtl, { lun: l.flags & 2 ? 1 : 0 }));
  },
};

const rrti = (listId: number): Buffer => {
  const c = Buffer.alloc(16);
  c[0] = 0x84;
  c[1] = 0x07;
  c.writeUInt32BE(listId >>> 0, 2);
  c.writeUInt32BE(1024, 10);
  return c;
};

/** POPULATE TOKEN then RECEIVE ROD TOKEN INFORMATION: flags bits 0-1 the list ID, bit 2 LUN 1. */
export const populateTokenTarget: FuzzTarget = {
  name: 'populate-token',
  maxLen: 2048,
  dict: [Buffer.from([0, 0x01, 0, 0]), Buffer.from([0x00, 0x80, 0xff, 0xff]), Buffer.from([0xff, 0xff, 0, 1]), Buffer.from([0, 0x10])],
  seeds() {
    return [
      listInput(0, ptParams([[0, 16], [100, 8]], { inactivity: 10 })),
      listInput(1, ptParams([[LU_BLOCKS - 8, 8]], { immed: true })),
      listInput(2, ptParams([[0, 1]], { rtv: true, rodType: 0x0080_0000 })),
      listInput(3, ptParams([], {})),
      ...fromCorpus(0x83, 0x10, () => 0),
    ];
  },
  run(input) {
    const l = readList(input);
    const listId = l.flags & 3;
    const lun = l.flags & 4 ? 1 : 0;
    return withDevice(async (fd) => (await checked(fd, cdb16(0x83, 0x10, listId, l.cdbLength), l.list, l.edtl, { lun })) ?? checked(fd, rrti(listId), Buffer.alloc(0), 1024, { lun }));
  },
};

/**
 * WRITE USING TOKEN then RRTI: flags bit 0 put a real token of the device
 * (POPULATE TOKEN + RRTI first) over the list's token bytes, bit 1 LUN 1,
 * bit 2 the token's ranges on LUN 1.
 */
export const writeUsingTokenTarget: FuzzTarget = {
  name: 'write-using-token',
  maxLen: 2048,
  dict: [zeroToken().subarray(0, 8), Buffer.from([0x02, 0x16]), Buffer.from([0x01, 0xf8])],
  seeds() {
    const t = Buffer.alloc(512);
    return [
      listInput(1, wutParams(t, [[0, 32], [200, 16]])),
      listInput(1, wutParams(t, [[500, 48]], { immed: true, delTkn: true, offset: 8 })),
      listInput(3, wutParams(t, [[0, 8]])),
      listInput(0, wutParams(zeroToken(), [[10, 10]])),
      ...fromCorpus(0x83, 0x11, () => 0),
    ];
  },
  run(input) {
    const l = readList(input);
    return withDevice(async (fd) => {
      if (l.flags & 1 && l.list.length >= 16 + 512) {
        const ptLun = l.flags & 4 ? 1 : 0;
        const pt = ptParams([[0, 32], [200, 16]]);
        const bad = await checked(fd, cdb16(0x83, 0x10, 7, pt.length), pt, pt.length, { lun: ptLun });
        if (bad) return bad;
        const r = await fd.device.execute(fuzzTask(rrti(7), { nexus: fd.nexus, lun: ptLun, edtl: 1024 }));
        const token = r.status === ScsiStatus.GOOD && r.dataIn ? parseRrti(Buffer.concat(r.dataIn)).token : undefined;
        if (!token) return 'no token from POPULATE TOKEN + RRTI';
        token.copy(l.list, 16, 0, 512);
      }
      return (await checked(fd, cdb16(0x83, 0x11, 8, l.cdbLength), l.list, l.edtl, { lun: l.flags & 2 ? 1 : 0 })) ?? checked(fd, rrti(8), Buffer.alloc(0), 1024, { lun: l.flags & 2 ? 1 : 0 });
    });
  },
};

/** MODE SELECT(6)/(10): flags bit 0 the 10-byte CDB, bit 1 PF, bit 2 SP; then a WRITE must still work. */
export const modeSelectTarget: FuzzTarget = {
  name: 'mode-select',
  maxLen: 1024,
  dict: [Buffer.from([0x08, 0x12]), Buffer.from([0x0a, 0x0a]), Buffer.from([0x1c, 0x0a]), Buffer.from([0x0a, 0x01, 0x00, 0x1c]), Buffer.from([0x3f])],
  async seeds() {
    const out: Buffer[] = [];
    const fd = await makeFuzzDevice();
    try {
      for (const ten of [false, true]) {
        const sense = ten ? Buffer.from([0x5a, 0, 0x3f, 0, 0, 0, 0, 0x10, 0, 0]) : Buffer.from([0x1a, 0, 0x3f, 0, 0xff, 0]);
        const r = await fd.device.execute(fuzzTask(sense, { nexus: fd.nexus, edtl: 4096 }));
        const list = Buffer.concat(r.dataIn ?? []);
        if (ten) list.writeUInt16BE(0, 0);
        else list[0] = 0;
        const hdr = ten ? 8 + list.readUInt16BE(6) : 4 + list[3];
        for (let o = hdr; o + 1 < list.length; ) {
          const spf = (list[o] & 0x40) !== 0;
          list[o] &= 0x7f;
          o += spf ? 4 + list.readUInt16BE(o + 2) : 2 + list[o + 1];
        }
        out.push(listInput((ten ? 1 : 0) | 2, list));
      }
    } finally {
      await fd.close();
    }
    out.push(...fromCorpus(0x55, null, () => 3), ...fromCorpus(0x15, null, () => 2));
    return out;
  },
  run(input) {
    const l = readList(input);
    const ten = (l.flags & 1) !== 0;
    const b1 = (l.flags & 2 ? 0x10 : 0) | (l.flags & 4 ? 1 : 0);
    const cdb = ten ? Buffer.from([0x55, b1, 0, 0, 0, 0, 0, 0, 0, 0]) : Buffer.from([0x15, b1, 0, 0, 0, 0]);
    if (ten) cdb.writeUInt16BE(l.cdbLength & 0xffff, 7);
    else cdb[4] = l.cdbLength & 0xff;
    return withDevice(async (fd) => (await checked(fd, cdb, l.list, l.edtl)) ?? checked(fd, Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Buffer.alloc(BS, 1), BS));
  },
};

function iscsiTid(name: string, withIsid: boolean): Buffer {
  const n = Buffer.from(withIsid ? `${name},i,0x000000000001` : name);
  const len = Math.ceil((n.length + 1) / 4) * 4;
  const b = Buffer.alloc(4 + Math.max(len, 20));
  b[0] = (withIsid ? 0x40 : 0) | 0x05;
  b.writeUInt16BE(b.length - 4, 2);
  n.copy(b, 4);
  return b;
}

function prList(rk: bigint, sark: bigint, flags: number, tids?: Buffer): Buffer {
  const spec = tids !== undefined;
  const b = Buffer.alloc(24 + (spec ? 4 + tids.length : 0));
  b.writeBigUInt64BE(rk, 0);
  b.writeBigUInt64BE(sark, 8);
  b[20] = flags | (spec ? 0x08 : 0);
  if (spec) {
    b.writeUInt32BE(tids.length, 24);
    tids.copy(b, 28);
  }
  return b;
}

function moveList(rk: bigint, sark: bigint, tid: Buffer): Buffer {
  const b = Buffer.alloc(24 + tid.length);
  b.writeBigUInt64BE(rk, 0);
  b.writeBigUInt64BE(sark, 8);
  b.writeUInt16BE(1, 18);
  b.writeUInt32BE(tid.length, 20);
  tid.copy(b, 24);
  return b;
}

/** One step: service action, scope/type, flags (bit 0 the other nexus, bit 6 lie about the length), lie (u32), list length (u16), list. */
const prStep = (sa: number, scopeType: number, list: Buffer, flags = 0): Buffer => Buffer.concat([u8(sa), u8(scopeType), u8(flags), u32(0), u16(list.length), list]);

/** PERSISTENT RESERVE OUT: up to 4 steps on one device, then READ FULL STATUS must answer. */
export const persistentReserveOutTarget: FuzzTarget = {
  name: 'persistent-reserve-out',
  maxLen: 2048,
  dict: [iscsiTid('iqn.2026-11.org.xcopyd:fuzz-b', false), iscsiTid('iqn.2026-11.org.xcopyd:fuzz-a', true), Buffer.from('iqn.2026-11.org.xcopyd:fuzz-b'), Buffer.from(',i,0x'), Buffer.from([0, 0, 0, 0, 0, 0, 0x12, 0x34])],
  generate: fc
    .array(
      fc.tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 }), fc.constantFrom(0n, 0x1234n, 0x5678n), fc.constantFrom(0n, 0x1234n, 0x5678n), fc.integer({ min: 0, max: 0x0f }), fc.boolean(), fc.boolean()),
      { minLength: 1, maxLength: 4 },
    )
    .map((steps) =>
      Buffer.concat([
        u8(steps.length - 1),
        ...steps.map(([sa, st, rk, sark, fl, other, spec]) =>
          prStep(sa, st, sa === 7 ? moveList(rk, sark, iscsiTid('iqn.2026-11.org.xcopyd:fuzz-b', true)) : prList(rk, sark, fl & 0x07, spec ? iscsiTid('iqn.2026-11.org.xcopyd:fuzz-b', false) : undefined), other ? 1 : 0),
        ),
      ]),
    ),
  seeds() {
    const k = 0x1234n;
    const other = iscsiTid('iqn.2026-11.org.xcopyd:fuzz-b', false);
    return [
      Buffer.concat([u8(1), prStep(0, 0, prList(0n, k, 0)), prStep(1, 0x01, prList(k, 0n, 0))]),
      Buffer.concat([u8(3), prStep(0, 0, prList(0n, k, 0, other)), prStep(1, 0x05, prList(k, 0n, 0)), prStep(0, 0, prList(0n, 0x5678n, 0), 1), prStep(4, 0x05, prList(0x5678n, k, 0), 1)]),
      Buffer.concat([u8(1), prStep(6, 0, prList(0n, k, 0x04)), prStep(7, 0x03, moveList(k, 0x9999n, iscsiTid('iqn.2026-11.org.xcopyd:fuzz-b', true)))]),
      Buffer.concat([u8(2), prStep(0, 0, prList(0n, k, 0)), prStep(1, 0x03, prList(k, 0n, 0)), prStep(3, 0, prList(k, 0n, 0))]),
      Buffer.concat([u8(0), prStep(0, 0, prList(0n, k, 0x01))]),
      ...fromCorpus(0x5f, null, () => 0).map((b) => Buffer.concat([u8(0), prStep(0, 0, b.subarray(7))])),
    ];
  },
  run(input) {
    return withDevice(async (fd) => {
      const r = new Bytes(input);
      const n = (r.u8() % 4) + 1;
      for (let i = 0; i < n && r.left > 0; i++) {
        const sa = r.u8();
        const scopeType = r.u8();
        const flags = r.u8();
        const lie = r.u32();
        const list = Buffer.from(r.take(r.u16() % 4097));
        const cdb = Buffer.from([0x5f, sa, scopeType, 0, 0, 0, 0, 0, 0, 0]);
        cdb.writeUInt32BE(flags & 0x40 ? lie : list.length, 5);
        const bad = await checked(fd, cdb, list, flags & 0x80 ? lie & 0xffff : list.length, { other: (flags & 1) !== 0 });
        if (bad) return bad;
      }
      return checked(fd, Buffer.from([0x5e, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0]), Buffer.alloc(0), 4096);
    });
  },
};
