import { COMMAND_TABLE, validateCdb } from '../../scsi/command-table';
import { ScsiStatus } from '../../scsi/types';
import { makeDevice, task, senseOf, dataOf, cdbOf, MemoryStore, silentLogger } from './helpers';

/** A non-zero transfer / parameter list length for a Data-Out CDB, so the command wants data. */
function lengthFields(opcode: number, cdbLength: number): Array<[number, number]> {
  if (cdbLength === 6) return [[4, 1]];
  if (cdbLength === 10) return opcode === 0x5f ? [[8, 24]] : [[8, 1]];
  if (cdbLength === 12) return [[9, 1]];
  if (opcode === 0x89) return [[13, 1]];
  if (opcode === 0x83) return [[13, 32]];
  return [[13, 1]];
}

describe('command table', () => {
  const device = makeDevice();

  it('has well-formed entries: mask byte 0 is the opcode, control byte allows nothing', () => {
    for (const e of COMMAND_TABLE.entries) {
      expect(e.usage.length).toBe(e.cdbLength);
      expect(e.usage[0]).toBe(e.opcode);
      expect(e.usage[e.cdbLength - 1]).toBe(0x00);
      if (e.serviceAction !== undefined) expect(e.usage[1] & 0x1f).toBe(0x1f);
    }
  });

  // Every bit outside each usage mask -> INVALID FIELD IN CDB pointing at that byte and bit (C/D=1).
  for (const e of COMMAND_TABLE.entries) {
    it(`${e.name}: every bit outside the usage mask is rejected with its field pointer`, async () => {
      let checked = 0;
      for (let byte = 1; byte < e.cdbLength; byte++) {
        for (let bit = 0; bit < 8; bit++) {
          if (e.usage[byte] & (1 << bit)) continue;
          const cdb = cdbOf([e.opcode], 16);
          if (e.serviceAction !== undefined) cdb[1] = e.serviceAction;
          cdb[byte] |= 1 << bit;
          const r = await device.execute(task(cdb, { edtl: 0 }));
          expect(r.status).toBe(ScsiStatus.CHECK_CONDITION);
          const s = senseOf(r);
          expect({ name: e.name, byte, bit, key: s.key, asc: s.asc, ascq: s.ascq, sksv: s.sksv, cd: s.cd, bpv: s.bpv, ptr: s.fieldPointer, b: s.bit })
            .toEqual({ name: e.name, byte, bit, key: 5, asc: 0x24, ascq: 0, sksv: true, cd: true, bpv: true, ptr: byte, b: bit });
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(0); // at least the control byte
    });
  }

  // RFC 7143 11.3.1: Data-Out needs the W bit. A command the table lists as Data-Out, sent with
  // EDTL > 0 but without W, cannot get its data: INVALID FIELD IN COMMAND INFORMATION UNIT at
  // dispatch (what LIO answers for a WRITE whose command IU disagrees with its CDB), never a
  // handler reaching an empty buffer (4/44/00).
  for (const e of COMMAND_TABLE.entries.filter((x) => x.direction === 'out')) {
    it(`${e.name}: Data-Out without the W bit -> 5/0E/03, nothing written`, async () => {
      const store = new MemoryStore(1024 * 512);
      const d = makeDevice([store]);
      const errors: unknown[] = [];
      (d as unknown as { logger: { error: (o: unknown) => void } }).logger = { ...silentLogger, error: (o: unknown) => errors.push(o) } as never;
      const cdb = cdbOf([e.opcode], e.cdbLength);
      if (e.serviceAction !== undefined) cdb[1] = e.serviceAction;
      for (const [at, v] of lengthFields(e.opcode, e.cdbLength)) cdb[at] = v;
      const r = await d.execute(task(cdb, { edtl: 512, isWrite: false }));
      const s = senseOf(r);
      expect({ name: e.name, key: s.key, asc: s.asc, ascq: s.ascq }).toEqual({ name: e.name, key: 5, asc: 0x0e, ascq: 0x03 });
      expect(store.writes + store.punched.length).toBe(0);
      expect(errors).toEqual([]);
    });
  }

  it('without the W bit, EDTL 0 is still the overflow case (GOOD, nothing written); a READ with W is served', async () => {
    const store = new MemoryStore(1024 * 512);
    const d = makeDevice([store]);
    const w = await d.execute(task(cdbOf([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], 10), { edtl: 0, isWrite: false }));
    expect(w.status).toBe(ScsiStatus.GOOD);
    expect(store.writes).toBe(0);
    // libiscsi Read10Invalid: a READ flagged as a write on the iSCSI layer is GOOD.
    const r = await d.execute(task(cdbOf([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 10), { edtl: 512, isWrite: true }));
    expect(r.status).toBe(ScsiStatus.GOOD);
  });

  it('points at the highest offending bit when several are set', () => {
    const e = COMMAND_TABLE.find(0x28)!;
    const cdb = cdbOf([0x28, 0xe1], 10); // RDPROTECT bits 7:5 and bit 0
    const err = validateCdb(e, cdb)!;
    expect(err.field).toEqual({ byte: 1, bit: 7, cd: true });
  });

  it('walks every entry: the in-memory LU enables the whole table', () => {
    expect(COMMAND_TABLE.supported(device.logicalUnit(0)).length).toBe(COMMAND_TABLE.entries.length);
  });

  it('a command the store cannot back is unsupported: 5/20/00 and absent from RSOC', async () => {
    const thick = makeDevice([new MemoryStore(64 * 512, 512, 512, false, false)]);
    const s = senseOf(await thick.execute(task([0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
    expect([s.key, s.asc]).toEqual([5, 0x20]);
    const d = dataOf(await thick.execute(task([0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0])));
    const ops = [];
    for (let o = 4; o < 4 + d.readUInt32BE(0); o += 8) ops.push(d[o]);
    expect(ops).not.toContain(0x42);
    expect(ops).toContain(0x28);
  });

  it('unknown opcode -> 5/20/00', async () => {
    const r = await device.execute(task([0xff]));
    expect(r.status).toBe(ScsiStatus.CHECK_CONDITION);
    const s = senseOf(r);
    expect([s.key, s.asc, s.ascq]).toEqual([5, 0x20, 0]);
  });

  it('unknown service action -> 5/24/00 at byte 1', async () => {
    const r = await device.execute(task([0x9e, 0x1f]));
    const s = senseOf(r);
    expect([s.key, s.asc, s.fieldPointer, s.cd]).toEqual([5, 0x24, 1, true]);
  });
});

describe('REPORT SUPPORTED OPERATION CODES', () => {
  const device = makeDevice();
  const rsoc = (b2: number, op = 0, sa = 0, alloc = 65536) =>
    device.execute(task([0xa3, 0x0c, b2, op, sa >> 8, sa & 0xff, alloc >>> 24, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0]));

  it('all commands: one descriptor per table entry, in table order', async () => {
    const d = dataOf(await rsoc(0));
    const n = d.readUInt32BE(0) / 8;
    const entries = COMMAND_TABLE.supported(device.logicalUnit(0));
    expect(n).toBe(entries.length);
    entries.forEach((e, i) => {
      const off = 4 + 8 * i;
      expect(d[off]).toBe(e.opcode);
      expect(d.readUInt16BE(off + 2)).toBe(e.serviceAction ?? 0);
      expect(d[off + 5] & 0x01).toBe(e.serviceAction !== undefined ? 1 : 0);
      expect(d.readUInt16BE(off + 6)).toBe(e.cdbLength);
    });
  });

  it('all commands with RCTD: 20-byte descriptors with CTDP and a timeouts descriptor', async () => {
    const d = dataOf(await rsoc(0x80));
    const entries = COMMAND_TABLE.supported(device.logicalUnit(0));
    expect(d.readUInt32BE(0)).toBe(20 * entries.length);
    expect(d[4 + 5] & 0x02).toBe(0x02);
    expect(d.readUInt16BE(4 + 8)).toBe(0x0a);
  });

  it('one command: usage data equals the table mask', async () => {
    const d = dataOf(await rsoc(0x01, 0x28));
    const e = COMMAND_TABLE.find(0x28)!;
    expect(d[1] & 0x07).toBe(0x03);
    expect(d.readUInt16BE(2)).toBe(10);
    expect([...d.subarray(4, 14)]).toEqual([...e.usage]);
  });

  it('one command with SA: READ CAPACITY(16), and RCTD appends timeouts', async () => {
    const d = dataOf(await rsoc(0x82, 0x9e, 0x10));
    expect(d[1]).toBe(0x83);
    expect(d.readUInt16BE(2)).toBe(16);
    expect(d[4]).toBe(0x9e);
    expect(d.length).toBe(4 + 16 + 12);
    expect(d.readUInt16BE(20)).toBe(0x0a);
  });

  it('option 1 for an opcode with SAs, or 2 for one without -> 5/24/00', async () => {
    expect(senseOf(await rsoc(0x01, 0x9e)).asc).toBe(0x24);
    expect(senseOf(await rsoc(0x02, 0x28)).asc).toBe(0x24);
  });

  it('unsupported opcode: SUPPORT = 001b', async () => {
    const d = dataOf(await rsoc(0x01, 0xee));
    expect(d[1] & 0x07).toBe(0x01);
  });

  it('is allocation-length limited', async () => {
    const r = await rsoc(0, 0, 0, 10);
    expect(r.dataInLength).toBe(10);
  });
});
