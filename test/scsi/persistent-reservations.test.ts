/**
 * PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE(6/10): the SPC-5 5.14 rules,
 * the type x initiator access matrix (table 63), unit attentions, APTPL.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScsiStatus, TmfFunction, type ItNexus } from '../../scsi/types';
import { ScsiDevice } from '../../scsi/scsi-device';
import { cdbOf, dataOf, identity, MemoryStore, makeDevice, nexus, senseOf, silentLogger, task } from './helpers';

const BS = 512;
const TUR = [0, 0, 0, 0, 0, 0];
const INQUIRY = [0x12, 0, 0, 0, 36, 0];
const READ_CAPACITY_10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const MODE_SENSE_6 = [0x1a, 0, 0x3f, 0, 255, 0];
const SYNC_CACHE_10 = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const read10 = (lba = 1): Buffer => cdbOf([0x28, 0, 0, 0, 0, lba, 0, 0, 1, 0], 10);
const write10 = (lba = 1): Buffer => cdbOf([0x2a, 0, 0, 0, 0, lba, 0, 0, 1, 0], 10);

const SA = { REGISTER: 0, RESERVE: 1, RELEASE: 2, CLEAR: 3, PREEMPT: 4, PREEMPT_AND_ABORT: 5, REGISTER_AND_IGNORE: 6, REGISTER_AND_MOVE: 7 };
const TYPES = { WE: 1, EA: 3, WE_RO: 5, EA_RO: 6, WE_AR: 7, EA_AR: 8 } as const;

function proutCdb(sa: number, type = 0, length = 24): Buffer {
  const c = cdbOf([0x5f, sa, type & 0x0f], 10);
  c.writeUInt32BE(length, 5);
  return c;
}

function params(rk: bigint, sark: bigint, flags = 0): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64BE(rk, 0);
  b.writeBigUInt64BE(sark, 8);
  b[20] = flags;
  return b;
}

function prinCdb(sa: number, alloc = 4096): Buffer {
  const c = cdbOf([0x5e, sa], 10);
  c.writeUInt16BE(alloc, 7);
  return c;
}

class Pr {
  constructor(readonly device: ScsiDevice) {}
  prout(n: ItNexus, sa: number, rk: bigint, sark: bigint, type = 0, flags = 0) {
    return this.device.execute(task(proutCdb(sa, type), { nexus: n, dataOut: params(rk, sark, flags) }));
  }
  register(n: ItNexus, key: bigint, flags = 0) {
    return this.prout(n, SA.REGISTER_AND_IGNORE, 0n, key, 0, flags);
  }
  reserve(n: ItNexus, key: bigint, type: number) {
    return this.prout(n, SA.RESERVE, key, 0n, type);
  }
  async keys(n: ItNexus): Promise<{ generation: number; keys: bigint[] }> {
    const d = dataOf(await this.device.execute(task(prinCdb(0), { nexus: n })));
    const len = d.readUInt32BE(4);
    const keys: bigint[] = [];
    for (let o = 8; o < 8 + len; o += 8) keys.push(d.readBigUInt64BE(o));
    return { generation: d.readUInt32BE(0), keys };
  }
  async reservation(n: ItNexus): Promise<{ key: bigint; type: number } | undefined> {
    const d = dataOf(await this.device.execute(task(prinCdb(1), { nexus: n })));
    if (d.readUInt32BE(4) === 0) return undefined;
    return { key: d.readBigUInt64BE(8), type: d[21] & 0x0f };
  }
  status(n: ItNexus, cdb: Buffer | number[], dataOut?: Buffer) {
    return this.device.execute(task(cdb, { nexus: n, dataOut })).then((r) => r.status);
  }
}

function setup(persistPath?: string): { pr: Pr; store: MemoryStore; a: ItNexus; b: ItNexus; c: ItNexus } {
  const store = new MemoryStore(1024 * BS);
  const device = new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store, identity: identity(), persistPath }] });
  return { pr: new Pr(device), store, a: nexus(), b: nexus(), c: nexus() };
}

const GOOD = ScsiStatus.GOOD;
const CONFLICT = ScsiStatus.RESERVATION_CONFLICT;

describe('PERSISTENT RESERVE: access matrix (SPC-5 table 63), every type', () => {
  // [type, registered non-holder read, write, unregistered read, write]: the libiscsi ProutReserve.Access* expectations.
  const matrix: Array<[keyof typeof TYPES, boolean, boolean, boolean, boolean]> = [
    ['WE', true, false, true, false],
    ['EA', false, false, false, false],
    ['WE_RO', true, true, true, false],
    ['EA_RO', true, true, false, false],
    ['WE_AR', true, true, true, false],
    ['EA_AR', true, true, false, false],
  ];
  for (const [name, regRead, regWrite, unregRead, unregWrite] of matrix) {
    it(`${name}: holder reads and writes; others as the table says; "never blocked" commands run`, async () => {
      const { pr, a, b, c } = setup();
      const type = TYPES[name];
      expect((await pr.register(a, 0xaan)).status).toBe(GOOD);
      expect((await pr.register(b, 0xbbn)).status).toBe(GOOD);
      expect((await pr.reserve(a, 0xaan, type)).status).toBe(GOOD);
      const w = Buffer.alloc(BS, 1);
      expect(await pr.status(a, read10())).toBe(GOOD);
      expect(await pr.status(a, write10(), w)).toBe(GOOD);
      expect(await pr.status(b, read10())).toBe(regRead ? GOOD : CONFLICT);
      expect(await pr.status(b, write10(), w)).toBe(regWrite ? GOOD : CONFLICT);
      expect(await pr.status(c, read10())).toBe(unregRead ? GOOD : CONFLICT);
      expect(await pr.status(c, write10(), w)).toBe(unregWrite ? GOOD : CONFLICT);
      // Reads-class commands follow the read column, writes-class the write column.
      expect(await pr.status(c, MODE_SENSE_6)).toBe(unregRead ? GOOD : CONFLICT);
      expect(await pr.status(c, SYNC_CACHE_10)).toBe(unregWrite ? GOOD : CONFLICT);
      for (const cdb of [TUR, INQUIRY, READ_CAPACITY_10]) expect(await pr.status(c, cdb)).toBe(GOOD);
      expect((await pr.keys(c)).keys).toEqual([0xaan, 0xbbn]);
      const r = await pr.reservation(c);
      expect(r).toEqual({ key: name.endsWith('AR') ? 0n : 0xaan, type });
    });
  }

  it('a conflicting write is refused before any Data-Out is asked for', async () => {
    const { pr, a, c } = setup();
    await pr.register(a, 1n);
    await pr.reserve(a, 1n, TYPES.WE);
    const t = task(write10(), { nexus: c, dataOut: Buffer.alloc(BS) });
    expect((await pr.device.execute(t)).status).toBe(CONFLICT);
    expect(t.requested).toEqual([]);
  });
});

describe('PERSISTENT RESERVE OUT service actions', () => {
  it('REGISTER: key checks (unregistered needs 0, registered needs its key), unregister with SA key 0', async () => {
    const { pr, a } = setup();
    expect((await pr.prout(a, SA.REGISTER, 5n, 0x11n)).status).toBe(CONFLICT);
    expect((await pr.prout(a, SA.REGISTER, 0n, 0x11n)).status).toBe(GOOD);
    expect((await pr.prout(a, SA.REGISTER, 0x12n, 0x13n)).status).toBe(CONFLICT);
    expect((await pr.prout(a, SA.REGISTER, 0x11n, 0x13n)).status).toBe(GOOD);
    expect((await pr.keys(a)).keys).toEqual([0x13n]);
    expect((await pr.prout(a, SA.REGISTER_AND_IGNORE, 0xdeadn, 0x14n)).status).toBe(GOOD);
    expect((await pr.prout(a, SA.REGISTER, 0x14n, 0n)).status).toBe(GOOD);
    expect((await pr.keys(a)).keys).toEqual([]);
  });

  it('PRGENERATION: REGISTER and CLEAR count, RESERVE and RELEASE do not', async () => {
    const { pr, a } = setup();
    const g0 = (await pr.keys(a)).generation;
    await pr.register(a, 1n);
    await pr.reserve(a, 1n, TYPES.EA);
    await pr.prout(a, SA.RELEASE, 1n, 0n, TYPES.EA);
    expect((await pr.keys(a)).generation).toBe(g0 + 1);
    await pr.prout(a, SA.CLEAR, 1n, 0n);
    expect((await pr.keys(a)).generation).toBe(g0 + 2);
  });

  it('RESERVE: needs registration and key; another holder or another type conflicts; same type again is GOOD', async () => {
    const { pr, a, b } = setup();
    expect((await pr.reserve(a, 1n, TYPES.WE)).status).toBe(CONFLICT);
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    expect((await pr.reserve(a, 9n, TYPES.WE)).status).toBe(CONFLICT);
    expect((await pr.reserve(a, 1n, TYPES.WE)).status).toBe(GOOD);
    expect((await pr.reserve(a, 1n, TYPES.WE)).status).toBe(GOOD);
    expect((await pr.reserve(a, 1n, TYPES.EA)).status).toBe(CONFLICT);
    expect((await pr.reserve(b, 2n, TYPES.WE)).status).toBe(CONFLICT);
  });

  it('RESERVE with a bad TYPE or SCOPE -> 5/24/00 pointing at byte 2', async () => {
    const { pr, a } = setup();
    await pr.register(a, 1n);
    const s = senseOf(await pr.reserve(a, 1n, 2));
    expect([s.key, s.asc, s.fieldPointer, s.bit]).toEqual([5, 0x24, 2, 3]);
    const scoped = proutCdb(SA.RESERVE, 1);
    scoped[2] |= 0x10;
    const s2 = senseOf(await pr.device.execute(task(scoped, { nexus: a, dataOut: params(1n, 0n) })));
    expect([s2.asc, s2.fieldPointer, s2.bit]).toEqual([0x24, 2, 7]);
  });

  it('parameter list length other than 24 -> 5/1A/00; SPEC_I_PT -> 5/26/00; APTPL without persistence -> 5/26/00', async () => {
    const { pr, a } = setup();
    const s = senseOf(await pr.device.execute(task(proutCdb(SA.REGISTER, 0, 20), { nexus: a, dataOut: Buffer.alloc(20) })));
    expect([s.key, s.asc]).toEqual([5, 0x1a]);
    const sip = senseOf(await pr.register(a, 1n, 0x08));
    expect([sip.asc, sip.fieldPointer, sip.bit, sip.cd]).toEqual([0x26, 20, 3, false]);
    const ap = senseOf(await pr.register(a, 1n, 0x01));
    expect([ap.asc, ap.fieldPointer, ap.bit]).toEqual([0x26, 20, 0]);
  });

  it('RELEASE: wrong type by the holder -> 5/26/04; by a registered non-holder GOOD and no effect', async () => {
    const { pr, a, b } = setup();
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.reserve(a, 1n, TYPES.WE);
    const s = senseOf(await pr.prout(a, SA.RELEASE, 1n, 0n, TYPES.EA));
    expect([s.key, s.asc, s.ascq]).toEqual([5, 0x26, 0x04]);
    expect((await pr.prout(b, SA.RELEASE, 2n, 0n, TYPES.WE)).status).toBe(GOOD);
    expect(await pr.reservation(a)).toEqual({ key: 1n, type: TYPES.WE });
    expect((await pr.prout(a, SA.RELEASE, 1n, 0n, TYPES.WE)).status).toBe(GOOD);
    expect(await pr.reservation(a)).toBeUndefined();
  });

  it('RELEASE of a registrants-only reservation -> 2A/04 RESERVATIONS RELEASED to the other registrants only', async () => {
    const { pr, a, b, c } = setup();
    for (const n of [a, b, c]) {
      pr.device.attachNexus(n);
      await pr.status(n, TUR);
    }
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.reserve(a, 1n, TYPES.WE_RO);
    await pr.prout(a, SA.RELEASE, 1n, 0n, TYPES.WE_RO);
    const s = senseOf(await pr.device.execute(task(TUR, { nexus: b })));
    expect([s.key, s.asc, s.ascq]).toEqual([6, 0x2a, 0x04]);
    expect(await pr.status(a, TUR)).toBe(GOOD);
    expect(await pr.status(c, TUR)).toBe(GOOD);
  });

  it('CLEAR: registrations and reservation gone, 2A/03 RESERVATIONS PREEMPTED to the others', async () => {
    const { pr, a, b } = setup();
    for (const n of [a, b]) {
      pr.device.attachNexus(n);
      await pr.status(n, TUR);
    }
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.reserve(a, 1n, TYPES.EA);
    expect((await pr.prout(b, SA.CLEAR, 2n, 0n)).status).toBe(GOOD);
    expect((await pr.keys(b)).keys).toEqual([]);
    expect(await pr.reservation(b)).toBeUndefined();
    const s = senseOf(await pr.device.execute(task(TUR, { nexus: a })));
    expect([s.asc, s.ascq]).toEqual([0x2a, 0x03]);
    expect(await pr.status(b, TUR)).toBe(GOOD);
  });

  it('PREEMPT the holder: its registration goes (2A/05), the preempting nexus holds the new type', async () => {
    const { pr, a, b } = setup();
    for (const n of [a, b]) {
      pr.device.attachNexus(n);
      await pr.status(n, TUR);
    }
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.reserve(a, 1n, TYPES.WE);
    const g = (await pr.keys(a)).generation;
    expect((await pr.prout(b, SA.PREEMPT, 2n, 1n, TYPES.EA)).status).toBe(GOOD);
    expect(await pr.reservation(b)).toEqual({ key: 2n, type: TYPES.EA });
    expect((await pr.keys(b))).toEqual({ generation: g + 1, keys: [2n] });
    const s = senseOf(await pr.device.execute(task(TUR, { nexus: a })));
    expect([s.asc, s.ascq]).toEqual([0x2a, 0x05]);
    expect(await pr.status(a, read10())).toBe(CONFLICT);
  });

  it('PREEMPT without a reservation removes registrations (libiscsi ProutPreempt.RemoveRegistration); SA key 0 -> 5/26/00; unknown key conflicts', async () => {
    const { pr, a, b } = setup();
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    expect((await pr.prout(b, SA.PREEMPT, 2n, 1n, TYPES.EA)).status).toBe(GOOD);
    expect((await pr.keys(a)).keys).toEqual([2n]);
    expect(await pr.reservation(a)).toBeUndefined();
    expect(senseOf(await pr.prout(b, SA.PREEMPT, 2n, 0n, TYPES.EA)).asc).toBe(0x26);
    expect((await pr.prout(b, SA.PREEMPT, 2n, 7n, TYPES.EA)).status).toBe(CONFLICT);
  });

  it('PREEMPT of an all-registrants reservation with SA key 0: every other registration goes', async () => {
    const { pr, a, b, c } = setup();
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.register(c, 3n);
    await pr.reserve(a, 1n, TYPES.WE_AR);
    expect((await pr.prout(b, SA.PREEMPT, 2n, 0n, TYPES.WE)).status).toBe(GOOD);
    expect((await pr.keys(a)).keys).toEqual([2n]);
    expect(await pr.reservation(a)).toEqual({ key: 2n, type: TYPES.WE });
  });

  it('PREEMPT AND ABORT aborts the preempted nexus tasks on the LU', async () => {
    const { pr, a, b } = setup();
    for (const n of [a, b]) {
      pr.device.attachNexus(n);
      await pr.status(n, TUR);
    }
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.reserve(a, 1n, TYPES.EA);
    const pending = pr.device.execute(task(write10(), { nexus: a, hangDataOut: true, edtl: BS }));
    expect((await pr.prout(b, SA.PREEMPT_AND_ABORT, 2n, 1n, TYPES.EA)).status).toBe(GOOD);
    const r = await pending;
    expect(r.aborted).toBe(true);
    expect(await pr.reservation(b)).toEqual({ key: 2n, type: TYPES.EA });
  });

  it('unregistering the holder: registrants-only reservation released (2A/04 to others); all-registrants stays until the last one leaves', async () => {
    const { pr, a, b } = setup();
    for (const n of [a, b]) {
      pr.device.attachNexus(n);
      await pr.status(n, TUR);
    }
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.reserve(a, 1n, TYPES.EA_RO);
    await pr.prout(a, SA.REGISTER, 1n, 0n);
    expect(senseOf(await pr.device.execute(task(TUR, { nexus: b }))).ascq).toBe(0x04);
    expect(await pr.reservation(b)).toBeUndefined();

    await pr.register(a, 1n);
    await pr.reserve(a, 1n, TYPES.EA_AR);
    await pr.prout(a, SA.REGISTER, 1n, 0n);
    expect(await pr.reservation(b)).toEqual({ key: 0n, type: TYPES.EA_AR });
    expect(await pr.status(b, write10(), Buffer.alloc(BS))).toBe(GOOD);
    await pr.prout(b, SA.REGISTER, 2n, 0n);
    expect(await pr.reservation(b)).toBeUndefined();
  });

  it('REGISTER AND MOVE: the reservation moves to the TransportID nexus, registered with the SA key; UNREG drops the source', async () => {
    const { pr, a, c } = setup();
    await pr.register(a, 1n);
    await pr.reserve(a, 1n, TYPES.WE);
    const name = Buffer.from(`${c.initiatorPortName}\0`);
    const tidLen = Math.ceil(name.length / 4) * 4;
    const list = Buffer.alloc(24 + 4 + tidLen);
    list.writeBigUInt64BE(1n, 0);
    list.writeBigUInt64BE(0x77n, 8);
    list[17] = 0x02; // UNREG
    list.writeUInt16BE(1, 18);
    list.writeUInt32BE(4 + tidLen, 20);
    list[24] = 0x45; // format 01b, iSCSI
    list.writeUInt16BE(tidLen, 26);
    name.copy(list, 28);
    const r = await pr.device.execute(task(proutCdb(SA.REGISTER_AND_MOVE, 0, list.length), { nexus: a, dataOut: list }));
    expect(r.status).toBe(GOOD);
    expect(await pr.reservation(c)).toEqual({ key: 0x77n, type: TYPES.WE });
    expect((await pr.keys(c)).keys).toEqual([0x77n]);
    expect(await pr.status(c, write10(), Buffer.alloc(BS))).toBe(GOOD);
    expect(await pr.status(a, write10(), Buffer.alloc(BS))).toBe(CONFLICT);
  });
});

describe('PERSISTENT RESERVE IN', () => {
  it('READ KEYS: ADDITIONAL LENGTH is not cut by the allocation length', async () => {
    const { pr, a } = setup();
    await pr.register(a, 0x1234n);
    const d = dataOf(await pr.device.execute(task(prinCdb(0, 8), { nexus: a })));
    expect(d.length).toBe(8);
    expect(d.readUInt32BE(4)).toBe(8);
  });

  it('REPORT CAPABILITIES: length 8, every type in the mask, ATP_C, PTPL_C only with persistence', async () => {
    const { pr, a } = setup();
    const d = dataOf(await pr.device.execute(task(prinCdb(2), { nexus: a })));
    expect(d.readUInt16BE(0)).toBe(8);
    expect([d[4], d[5]]).toEqual([0xea, 0x01]);
    expect(d[2] & 0x05).toBe(0x04);
    expect((d[3] >> 4) & 0x07).toBeLessThanOrEqual(5);
  });

  it('READ FULL STATUS: one descriptor per registration with R_HOLDER, type and an iSCSI TransportID', async () => {
    const { pr, a, b } = setup();
    await pr.register(a, 1n);
    await pr.register(b, 2n);
    await pr.reserve(a, 1n, TYPES.WE_RO);
    const d = dataOf(await pr.device.execute(task(prinCdb(3), { nexus: a })));
    let off = 8;
    const seen: Array<[bigint, number, number, string]> = [];
    while (off < 8 + d.readUInt32BE(4)) {
      const len = d.readUInt32BE(off + 20);
      const tid = d.subarray(off + 24, off + 24 + len);
      expect(tid[0]).toBe(0x45);
      seen.push([d.readBigUInt64BE(off), d[off + 12] & 1, d[off + 13], tid.subarray(4).toString('utf8').replace(/\0+$/, '')]);
      off += 24 + len;
    }
    expect(seen).toEqual([
      [1n, 1, TYPES.WE_RO, a.initiatorPortName],
      [2n, 0, 0, b.initiatorPortName],
    ]);
  });

  it('service actions 04h..1Fh -> 5/24/00 (libiscsi PrinServiceactionRange)', async () => {
    const { pr, a } = setup();
    for (let sa = 4; sa < 0x20; sa++) {
      const s = senseOf(await pr.device.execute(task(prinCdb(sa), { nexus: a })));
      expect([s.key, s.asc, s.fieldPointer]).toEqual([5, 0x24, 1]);
    }
  });
});

describe('APTPL: persistent reservations survive a restart', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'xcopyd-pr-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('REGISTER with APTPL=1 writes the state before GOOD; a new LU on the same path has it; APTPL=0 forgets', async () => {
    const path = join(dir, 'pr.json');
    const first = setup(path);
    expect((await first.pr.register(first.a, 0x1111n, 0x01)).status).toBe(GOOD);
    await first.pr.register(first.b, 0x2222n, 0x01);
    await first.pr.reserve(first.a, 0x1111n, TYPES.EA_RO);
    expect(JSON.parse(readFileSync(path, 'utf8')).reservations.aptpl).toBe(true);

    const second = new Pr(new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store: new MemoryStore(1024 * BS), identity: identity(), persistPath: path }] }));
    expect((await second.keys(first.a)).keys).toEqual([0x1111n, 0x2222n]);
    expect(await second.reservation(first.a)).toEqual({ key: 0x1111n, type: TYPES.EA_RO });
    expect(await second.status(first.c, read10())).toBe(CONFLICT);
    expect(await second.status(first.a, read10())).toBe(GOOD);
    const caps = dataOf(await second.device.execute(task(prinCdb(2), { nexus: first.a })));
    expect([caps[2] & 0x01, caps[3] & 0x01]).toEqual([1, 1]); // PTPL_C, PTPL_A

    await second.prout(first.a, SA.REGISTER, 0x1111n, 0x1111n); // APTPL=0
    const third = new Pr(new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store: new MemoryStore(1024 * BS), identity: identity(), persistPath: path }] }));
    expect((await third.keys(first.a)).keys).toEqual([]);
  });
});

describe('RESERVE(6/10) / RELEASE(6/10)', () => {
  const RESERVE6 = [0x16, 0, 0, 0, 0, 0];
  const RELEASE6 = [0x17, 0, 0, 0, 0, 0];
  const RESERVE10 = cdbOf([0x56], 10);
  const RELEASE10 = cdbOf([0x57], 10);

  it('the holder has the LU; others conflict except INQUIRY, REQUEST SENSE, REPORT LUNS, PR IN; their RELEASE is GOOD and does nothing', async () => {
    const { pr, a, b } = setup();
    expect(await pr.status(a, RESERVE6)).toBe(GOOD);
    expect(await pr.status(a, RESERVE6)).toBe(GOOD);
    expect(await pr.status(b, RESERVE6)).toBe(CONFLICT);
    expect(await pr.status(b, RESERVE10)).toBe(CONFLICT);
    expect(await pr.status(b, read10())).toBe(CONFLICT);
    expect(await pr.status(b, TUR)).toBe(CONFLICT);
    expect(await pr.status(b, MODE_SENSE_6)).toBe(CONFLICT);
    expect(await pr.status(b, INQUIRY)).toBe(GOOD);
    expect(await pr.status(b, [0x03, 0, 0, 0, 18, 0])).toBe(GOOD);
    expect(await pr.status(b, prinCdb(0))).toBe(GOOD);
    expect(await pr.status(b, RELEASE6)).toBe(GOOD);
    expect(await pr.status(b, read10())).toBe(CONFLICT);
    expect(await pr.status(a, read10())).toBe(GOOD);
    expect(await pr.status(a, RELEASE10)).toBe(GOOD);
    expect(await pr.status(b, RESERVE10)).toBe(GOOD);
  });

  it('released when the holder nexus goes away, on LU reset and on target reset', async () => {
    const { pr, a, b } = setup();
    pr.device.attachNexus(a);
    pr.device.attachNexus(b);
    await pr.status(a, TUR);
    await pr.status(b, TUR);
    await pr.status(a, RESERVE6);
    pr.device.detachNexus(a);
    expect(await pr.status(b, RESERVE6)).toBe(GOOD);
    await pr.device.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, b, 0);
    await pr.status(a, TUR); // no queue: a is detached
    expect(await pr.status(a, RESERVE6)).toBe(GOOD);
    await pr.device.taskManagement(TmfFunction.TARGET_WARM_RESET, a, 0);
    await pr.status(b, TUR); // 29/03
    expect(await pr.status(b, RESERVE6)).toBe(GOOD);
  });

  it('RESERVE under a persistent reservation conflicts, even for the PR holder', async () => {
    const { pr, a } = setup();
    await pr.register(a, 1n);
    await pr.reserve(a, 1n, TYPES.WE);
    expect(await pr.status(a, RESERVE6)).toBe(CONFLICT);
  });

  it('the command table walk covers them: the CDB bits are outside the mask', async () => {
    const device = makeDevice();
    const s = senseOf(await device.execute(task([0x16, 0x01, 0, 0, 0, 0])));
    expect([s.asc, s.fieldPointer, s.bit]).toEqual([0x24, 1, 0]);
  });
});
