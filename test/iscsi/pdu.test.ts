/**
 * PDU layout: accessors and encoders mirrored against every target PDU that
 * tgtd sent in the golden captures (decode the captured header, encode it
 * again from those fields, compare the 48 bytes), LUN forms and serial
 * number arithmetic.
 */
import fc from 'fast-check';
import {
  BHS_LENGTH,
  DATAIN_FLAG_S,
  FLAG_F,
  InitiatorOpcode,
  LoginField,
  NO_TAG,
  RejectReason,
  SequenceNumbers,
  TargetOpcode,
  TmfResponse,
  cmdSnOf,
  dataSegmentLength,
  decodeLun,
  encodeAsyncMessage,
  encodeDataIn,
  encodeLoginResponse,
  encodeLogoutResponse,
  encodeLun,
  encodeNopIn,
  encodeR2t,
  encodeReject,
  encodeScsiResponse,
  encodeTextResponse,
  encodeTmfResponse,
  expStatSnOf,
  flagsOf,
  isImmediate,
  ittOf,
  opcodeOf,
  padLength,
  snAdd,
  snLessOrEqual,
  snLessThan,
  totalAhsLength,
  tttOf,
} from '../../iscsi/pdu';
import { GoldenPduRecord, bhsOf, hexField, listScenarios, loadScenario } from './golden';

const ALL = listScenarios().flatMap((name) => loadScenario(name).pdus.map((p) => ({ scenario: name, p })));
const target = (name: string): { scenario: string; p: GoldenPduRecord }[] =>
  ALL.filter(({ p }) => p.dir === 't2i' && p.name === name);

const hexBuf = (h: string): Buffer => Buffer.from(h, 'hex');
const snOf = (p: GoldenPduRecord): SequenceNumbers => ({
  statSN: p.StatSN ?? 0,
  expCmdSN: p.ExpCmdSN!,
  maxCmdSN: p.MaxCmdSN!,
});
const flags = (p: GoldenPduRecord): number => hexField(p.flags);
const label = (x: { scenario: string; p: GoldenPduRecord }): string => `${x.scenario} #${x.p.pdu}`;

/** Compare two headers, naming the differing bytes. */
function expectSameBhs(got: Buffer, want: Buffer, where: string): void {
  expect(got.length).toBe(BHS_LENGTH);
  const diffs: string[] = [];
  for (let i = 0; i < BHS_LENGTH; i++) {
    if (got[i] !== want[i]) diffs.push(`byte ${i}: ${got[i].toString(16)} != ${want[i].toString(16)}`);
  }
  expect({ where, diffs }).toEqual({ where, diffs: [] });
}

describe('golden captures hold the PDU kinds mirrored here', () => {
  it('target PDU kinds sent by tgtd', () => {
    const kinds = new Set(ALL.filter(({ p }) => p.dir === 't2i').map(({ p }) => p.name));
    expect([...kinds].sort()).toEqual([
      'Login Response',
      'Logout Response',
      'Ready To Transfer (R2T)',
      'SCSI Data-In',
      'SCSI Response',
      'Text Response',
    ]);
    // None of the captured sessions provoked NOP-In, Reject, TMF Response or
    // Async Message: those encoders are checked field by field against
    // RFC 7143 below instead.
  });
});

describe('accessors on captured headers', () => {
  it.each(['01_libiscsi_discovery', '05c_linux_open_iscsi_digests_tgt_crc32c'])('%s: every BHS', (name) => {
    for (const p of loadScenario(name).pdus) {
      const b = bhsOf(p);
      expect(opcodeOf(b)).toBe(hexField(p.opcode));
      expect(isImmediate(b)).toBe(p.immediate);
      expect(flagsOf(b)).toBe(flags(p));
      expect(totalAhsLength(b)).toBe(p.TotalAHSLength * 4);
      expect(dataSegmentLength(b)).toBe(p.DataSegmentLength);
      expect(ittOf(b)).toBe(hexField(p.ITT));
      if (p.TTT) expect(tttOf(b)).toBe(hexField(p.TTT));
      if (p.CmdSN !== undefined) expect(cmdSnOf(b)).toBe(p.CmdSN);
      if (p.ExpStatSN !== undefined) expect(expStatSnOf(b)).toBe(p.ExpStatSN);
      if (p.name === 'Login Request') {
        expect(b.toString('hex', LoginField.ISID, LoginField.ISID + 6)).toBe(p.ISID);
        expect(b.readUInt16BE(LoginField.TSIH)).toBe(p.TSIH);
        expect(b.readUInt16BE(LoginField.CID)).toBe(p.CID);
        expect(b[LoginField.VERSION_MAX]).toBe(p.VersionMax);
        expect(b[LoginField.VERSION_MIN]).toBe(p.VersionMin);
      }
    }
  });

  it('dataSegmentLength and totalAhsLength read at an offset (framer use)', () => {
    const b = Buffer.alloc(100);
    b[10 + 4] = 3;
    b.set([0x01, 0x02, 0x03], 10 + 5);
    expect(totalAhsLength(b, 10)).toBe(12);
    expect(dataSegmentLength(b, 10)).toBe(0x010203);
    b.set([0xff, 0xff, 0xff], 10 + 5);
    expect(dataSegmentLength(b, 10)).toBe(0xffffff);
  });

  it('opcode ignores the I bit and the reserved bit 7', () => {
    const b = Buffer.alloc(48);
    b[0] = 0x40 | InitiatorOpcode.NOP_OUT;
    expect(opcodeOf(b)).toBe(InitiatorOpcode.NOP_OUT);
    expect(isImmediate(b)).toBe(true);
    b[0] = 0x80 | InitiatorOpcode.SCSI_COMMAND;
    expect(opcodeOf(b)).toBe(InitiatorOpcode.SCSI_COMMAND);
    expect(isImmediate(b)).toBe(false);
  });
});

describe('encoders mirror tgtd byte for byte', () => {
  it.each(target('Login Response').map((x) => [label(x), x.p] as const))('Login Response %s', (where, p) => {
    const f = flags(p);
    const got = encodeLoginResponse(
      {
        transit: (f & 0x80) !== 0,
        cont: (f & 0x40) !== 0,
        csg: p.CSG!,
        nsg: p.NSG!,
        versionMax: p.VersionMax!,
        versionActive: p.VersionActive!,
        isid: hexBuf(p.ISID!),
        tsih: p.TSIH!,
        itt: hexField(p.ITT),
        statusClass: p.StatusClass!,
        statusDetail: p.StatusDetail!,
        dataLength: p.DataSegmentLength,
      },
      snOf(p),
    );
    expectSameBhs(got, bhsOf(p), where);
  });

  it.each(target('Text Response').map((x) => [label(x), x.p] as const))('Text Response %s', (where, p) => {
    const f = flags(p);
    const got = encodeTextResponse(
      {
        itt: hexField(p.ITT),
        ttt: hexField(p.TTT),
        final: (f & FLAG_F) !== 0,
        cont: (f & 0x40) !== 0,
        lun: hexBuf(p.LUN!),
        dataLength: p.DataSegmentLength,
      },
      snOf(p),
    );
    expectSameBhs(got, bhsOf(p), where);
  });

  it.each(target('SCSI Response').map((x) => [label(x), x.p] as const))('SCSI Response %s', (where, p) => {
    expect(p.BidiResidualCount ?? 0).toBe(0); // not an encoder input: no bidirectional commands
    const got = encodeScsiResponse(
      {
        itt: hexField(p.ITT),
        status: hexField(p.Status),
        response: p.Response!,
        flags: flags(p) & 0x1e, // o, u, O, U
        residual: p.ResidualCount!,
        expDataSN: p.ExpDataSN ?? 0,
        dataLength: p.DataSegmentLength,
      },
      snOf(p),
    );
    expectSameBhs(got, bhsOf(p), where);
  });

  const dataIn = target('SCSI Data-In');
  it.each(dataIn.map((x) => [label(x), x.p] as const))('SCSI Data-In %s', (where, p) => {
    const f = flags(p);
    // tgtd leaves the LUN field zero in Data-In (reserved unless the A bit
    // asks for a DataACK, RFC 7143 §11.7.4), so LUN 1 reads carry 0 here too.
    const got = encodeDataIn(
      {
        itt: hexField(p.ITT),
        lun: hexBuf(p.LUN!),
        flags: f,
        status: f & DATAIN_FLAG_S ? hexField(p.Status) : 0,
        dataSN: p.DataSN!,
        bufferOffset: p.BufferOffset!,
        residual: p.ResidualCount ?? 0,
        dataLength: p.DataSegmentLength,
      },
      snOf(p),
    );
    expectSameBhs(got, bhsOf(p), where);
    expect(tttOf(got)).toBe(NO_TAG);
  });

  it('Data-In is captured both with and without the S bit, and with U', () => {
    const fl = new Set(dataIn.map(({ p }) => p.flags));
    expect(fl).toContain('0x81'); // F, S
    expect(fl).toContain('0x83'); // F, U, S
    expect(fl).toContain('0x00'); // neither F nor S (multi-PDU READ from qemu-img)
    // tgtd always collapses the status into the last Data-In: no F-without-S here.
    expect(fl).not.toContain('0x80');
  });

  it.each(target('Ready To Transfer (R2T)').map((x) => [label(x), x.p] as const))('R2T %s', (where, p) => {
    const got = encodeR2t(
      {
        itt: hexField(p.ITT),
        ttt: hexField(p.TTT),
        lun: hexBuf(p.LUN!),
        r2tSN: p.R2TSN!,
        bufferOffset: p.BufferOffset!,
        desiredLength: p.DesiredDataTransferLength!,
      },
      snOf(p),
    );
    expectSameBhs(got, bhsOf(p), where);
  });

  it.each(target('Logout Response').map((x) => [label(x), x.p] as const))('Logout Response %s', (where, p) => {
    const got = encodeLogoutResponse(
      { itt: hexField(p.ITT), response: p.Response!, time2Wait: p.Time2Wait!, time2Retain: p.Time2Retain! },
      snOf(p),
    );
    expectSameBhs(got, bhsOf(p), where);
  });

  it('every target PDU in the captures was mirrored', () => {
    const mirrored = ['Login Response', 'Text Response', 'SCSI Response', 'SCSI Data-In', 'Ready To Transfer (R2T)', 'Logout Response'];
    const n = mirrored.reduce((acc, name) => acc + target(name).length, 0);
    expect(n).toBe(ALL.filter(({ p }) => p.dir === 't2i').length);
    expect(n).toBeGreaterThan(300);
  });
});

const SN: SequenceNumbers = { statSN: 0x11223344, expCmdSN: 0x55667788, maxCmdSN: 0x99aabbcc };
const LUN5 = Buffer.from('0005000000000000', 'hex');

/** Header fields common to every target PDU: opcode, DSL, StatSN/ExpCmdSN/MaxCmdSN. */
function expectCommon(h: Buffer, opcode: number, dsl: number): void {
  expect(h.length).toBe(BHS_LENGTH);
  expect(h[0]).toBe(opcode); // I bit and bit 7 zero in target PDUs
  expect(h[4]).toBe(0); // no AHS
  expect(dataSegmentLength(h)).toBe(dsl);
  expect(h.readUInt32BE(24)).toBe(SN.statSN);
  expect(h.readUInt32BE(28)).toBe(SN.expCmdSN);
  expect(h.readUInt32BE(32)).toBe(SN.maxCmdSN);
}

describe('encoders for PDUs the captures lack (RFC 7143 layouts)', () => {
  it('NOP-In answering a NOP-Out (§11.19): ITT echoed, TTT FFFFFFFFh, LUN copied', () => {
    const h = encodeNopIn({ itt: 0x1234, ttt: NO_TAG, lun: LUN5, dataLength: 10 }, SN);
    expectCommon(h, TargetOpcode.NOP_IN, 10);
    expect(h[1]).toBe(0x80);
    expect(h.toString('hex', 8, 16)).toBe('0005000000000000');
    expect(ittOf(h)).toBe(0x1234);
    expect(tttOf(h)).toBe(NO_TAG);
    expect(h.subarray(36, 48).equals(Buffer.alloc(12))).toBe(true);
  });

  it('NOP-In as a ping (§11.19.1): ITT FFFFFFFFh, a real TTT, no LUN', () => {
    const h = encodeNopIn({ itt: NO_TAG, ttt: 7, lun: null, dataLength: 0 }, SN);
    expect(ittOf(h)).toBe(NO_TAG);
    expect(tttOf(h)).toBe(7);
    expect(h.subarray(8, 16).equals(Buffer.alloc(8))).toBe(true);
  });

  it('Task Management Function Response (§11.6)', () => {
    const h = encodeTmfResponse({ itt: 0xabcdef01, response: TmfResponse.TASK_DOES_NOT_EXIST }, SN);
    expectCommon(h, TargetOpcode.TASK_MGMT_RESPONSE, 0);
    expect(h[1]).toBe(0x80);
    expect(h[2]).toBe(1);
    expect(h[3]).toBe(0);
    expect(ittOf(h)).toBe(0xabcdef01);
    expect(h.subarray(8, 16).equals(Buffer.alloc(8))).toBe(true);
    expect(h.subarray(20, 24).equals(Buffer.alloc(4))).toBe(true);
    expect(h.subarray(36, 48).equals(Buffer.alloc(12))).toBe(true);
    expect(encodeTmfResponse({ itt: 1, response: TmfResponse.REJECTED }, SN)[2]).toBe(255);
  });

  it('Reject (§11.17): ITT FFFFFFFFh, reason in byte 2, the rejected header is the data', () => {
    const h = encodeReject({ reason: RejectReason.PROTOCOL_ERROR, dataSnOrR2tSn: 0, dataLength: 48 }, SN);
    expectCommon(h, TargetOpcode.REJECT, 48);
    expect(h[1]).toBe(0x80);
    expect(h[2]).toBe(0x04);
    expect(h.subarray(8, 16).equals(Buffer.alloc(8))).toBe(true);
    expect(ittOf(h)).toBe(NO_TAG);
    expect(h.readUInt32BE(36)).toBe(0);
    expect(encodeReject({ reason: RejectReason.DATA_DIGEST_ERROR, dataSnOrR2tSn: 9, dataLength: 48 }, SN).readUInt32BE(36)).toBe(9);
  });

  it('Async Message (§11.9): ITT FFFFFFFFh, event, vendor code, parameters', () => {
    const h = encodeAsyncMessage({ lun: LUN5, event: 1, vcode: 0, p1: 0x0102, p2: 0x0304, p3: 0x0506, dataLength: 0 }, SN);
    expectCommon(h, TargetOpcode.ASYNC_MESSAGE, 0);
    expect(h[1]).toBe(0x80);
    expect(h.toString('hex', 8, 16)).toBe('0005000000000000');
    expect(ittOf(h)).toBe(NO_TAG);
    expect(h.toString('hex', 36, 48)).toBe('010001020304050600000000');
  });

  it('Data-In without S leaves StatSN, Status and the residual zero (§11.7.4)', () => {
    const h = encodeDataIn(
      { itt: 3, lun: null, flags: 0, status: 0x02, dataSN: 4, bufferOffset: 8192, residual: 99, dataLength: 8192 },
      SN,
    );
    expect(h[1]).toBe(0);
    expect(h[3]).toBe(0);
    expect(h.readUInt32BE(24)).toBe(0);
    expect(h.readUInt32BE(28)).toBe(SN.expCmdSN);
    expect(h.readUInt32BE(32)).toBe(SN.maxCmdSN);
    expect(h.readUInt32BE(36)).toBe(4);
    expect(h.readUInt32BE(40)).toBe(8192);
    expect(h.readUInt32BE(44)).toBe(0);
  });

  it('Login Response: C and T flags, CSG/NSG, status class and detail (§11.13)', () => {
    const base = {
      versionMax: 0,
      versionActive: 0,
      isid: Buffer.from('400001370000', 'hex'),
      tsih: 0,
      itt: 0,
      statusClass: 0,
      statusDetail: 0,
      dataLength: 0,
    };
    // Security -> operational, transit.
    expect(encodeLoginResponse({ ...base, transit: true, cont: false, csg: 0, nsg: 1 }, SN)[1]).toBe(0x81);
    // Staying in the operational stage: no T, NSG must be zero.
    expect(encodeLoginResponse({ ...base, transit: false, cont: false, csg: 1, nsg: 3 }, SN)[1]).toBe(0x04);
    // Text continues in the next PDU.
    expect(encodeLoginResponse({ ...base, transit: false, cont: true, csg: 1, nsg: 0 }, SN)[1]).toBe(0x44);
    // Authentication failure 02/01.
    const h = encodeLoginResponse({ ...base, transit: false, cont: false, csg: 0, nsg: 0, statusClass: 2, statusDetail: 1 }, SN);
    expect(h.toString('hex', 36, 38)).toBe('0201');
    expect(h.toString('hex', 8, 14)).toBe('400001370000');
  });

  it('encoders normalise negative 32-bit values (tags kept as int32 elsewhere)', () => {
    const h = encodeScsiResponse(
      { itt: -1, status: 0, response: 0, flags: 0, residual: 0, expDataSN: 0, dataLength: 0 },
      { statSN: -2, expCmdSN: -3, maxCmdSN: 0 },
    );
    expect(ittOf(h)).toBe(0xffffffff);
    expect(h.readUInt32BE(24)).toBe(0xfffffffe);
    expect(h.readUInt32BE(28)).toBe(0xfffffffd);
  });

  it('DataSegmentLength is written as 24 bits', () => {
    const h = encodeNopIn({ itt: 0, ttt: NO_TAG, lun: null, dataLength: 0xabcdef }, SN);
    expect(h.toString('hex', 5, 8)).toBe('abcdef');
    expect(dataSegmentLength(h)).toBe(0xabcdef);
  });
});

describe('LUN encoding (SAM-5 §4.7)', () => {
  const lunField = (hex: string): Buffer => {
    const b = Buffer.alloc(48);
    Buffer.from(hex, 'hex').copy(b, 8);
    return b;
  };

  it.each([
    ['0000000000000000', 0],
    ['0001000000000000', 1],
    ['0002000000000000', 2],
    ['00ff000000000000', 255],
  ])('peripheral device addressing %s -> %i', (hex, lun) => {
    expect(decodeLun(lunField(hex))).toBe(lun);
    const out = Buffer.alloc(48, 0xee);
    encodeLun(lun, out);
    expect(out.toString('hex', 8, 16)).toBe(hex);
  });

  it.each([
    ['4100000000000000', 256],
    ['4123000000000000', 0x123],
    ['7fff000000000000', 16383],
  ])('flat space addressing %s -> %i', (hex, lun) => {
    expect(decodeLun(lunField(hex))).toBe(lun);
    const out = Buffer.alloc(48, 0xee);
    encodeLun(lun, out);
    expect(out.toString('hex', 8, 16)).toBe(hex);
  });

  it('flat space for LUNs below 256 decodes too (Windows and ESX send 40xx)', () => {
    expect(decodeLun(lunField('4005000000000000'))).toBe(5);
    expect(decodeLun(lunField('4000000000000000'))).toBe(0);
  });

  it.each([
    ['c101000000000000', 0xc101], // REPORT LUNS well-known LU
    ['c103000000000000', 0xc103], // W-LUN SECURITY PROTOCOL
  ])('well-known LUN %s -> %s', (hex, lun) => {
    expect(decodeLun(lunField(hex))).toBe(lun);
    const out = Buffer.alloc(48, 0xee);
    encodeLun(lun, out);
    expect(out.toString('hex', 8, 16)).toBe(hex);
  });

  it.each([
    ['0100000000000000', 'peripheral with a bus identifier'],
    ['8001000000000000', 'logical unit addressing'],
    ['c201000000000000', 'extended addressing other than well-known'],
    ['e000000000000000', 'extended flat space'],
  ])('%s (%s) is not a LUN we serve -> -1', (hex) => {
    expect(decodeLun(lunField(hex))).toBe(-1);
  });

  it('every LUN the golden initiators sent decodes to 0, 1 or 2', () => {
    const luns = new Set<number>();
    for (const { p } of ALL) {
      if (p.dir === 'i2t' && p.LUN !== undefined && p.name === 'SCSI Command') luns.add(decodeLun(bhsOf(p)));
    }
    expect([...luns].sort()).toEqual([0, 1, 2]);
  });

  it('decodes at an explicit offset', () => {
    const b = Buffer.from('ffff4101000000000000', 'hex');
    expect(decodeLun(b, 2)).toBe(0x101);
    const out = Buffer.alloc(12, 0xee);
    encodeLun(0x101, out, 2);
    expect(out.toString('hex')).toBe('eeee4101000000000000eeee');
  });

  it('round-trips every encodable LUN (property)', () => {
    const lunArb = fc.oneof(fc.integer({ min: 0, max: 16383 }), fc.integer({ min: 0xc100, max: 0xc1ff }));
    fc.assert(
      fc.property(lunArb, (lun) => {
        const out = Buffer.alloc(48, 0xa5);
        encodeLun(lun, out);
        expect(decodeLun(out)).toBe(lun);
        expect(out.subarray(10, 16).equals(Buffer.alloc(6))).toBe(true); // second..fourth level zero
        expect(out.subarray(0, 8).equals(Buffer.alloc(8, 0xa5))).toBe(true); // only the LUN field written
      }),
    );
  });

  it('decode -> encode -> decode is stable for any 8 bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 8 }), (raw) => {
        const b = Buffer.alloc(48);
        b.set(raw, 8);
        const lun = decodeLun(b);
        if (lun < 0) return;
        const out = Buffer.alloc(48);
        encodeLun(lun, out);
        expect(decodeLun(out)).toBe(lun);
      }),
    );
  });
});

describe('serial number arithmetic (RFC 1982 with SERIAL_BITS = 32, RFC 7143 §4.2.2.1)', () => {
  it.each([
    [0, 1, true],
    [1, 0, false],
    [5, 5, false],
    [0xffffffff, 0, true], // wraps
    [0, 0xffffffff, false],
    [0xfffffff0, 0x10, true],
    [0x10, 0xfffffff0, false],
    [0, 0x7fffffff, true], // 2^31 - 1 ahead
    [0x7fffffff, 0, false],
    [0x80000000, 0xffffffff, true],
  ])('snLessThan(%d, %d) = %s', (a, b, lt) => {
    expect(snLessThan(a, b)).toBe(lt);
  });

  it('a distance of exactly 2^31 (undefined in RFC 1982 §3.2) compares as neither less nor greater', () => {
    for (const a of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) {
      const b = (a + 0x80000000) >>> 0;
      expect(snLessThan(a, b)).toBe(false);
      expect(snLessThan(b, a)).toBe(false);
      expect(snLessOrEqual(a, b)).toBe(false);
    }
  });

  it('snLessOrEqual', () => {
    expect(snLessOrEqual(7, 7)).toBe(true);
    expect(snLessOrEqual(0xffffffff, 0)).toBe(true);
    expect(snLessOrEqual(0, 0xffffffff)).toBe(false);
  });

  it('snAdd wraps at 2^32', () => {
    expect(snAdd(0xffffffff, 1)).toBe(0);
    expect(snAdd(0xffffff80, 128)).toBe(0); // a CmdSN window of 128 across the wrap
    expect(snAdd(5, 0)).toBe(5);
    expect(snAdd(0x7fffffff, 1)).toBe(0x80000000);
  });

  it('the CmdSN window tgtd advertised holds across the wrap: ExpCmdSN <= MaxCmdSN + 1', () => {
    for (const { p } of ALL) {
      if (p.ExpCmdSN === undefined || p.MaxCmdSN === undefined) continue;
      expect(snLessOrEqual(p.ExpCmdSN, snAdd(p.MaxCmdSN, 1))).toBe(true);
    }
  });

  it('a + n is greater than a for 0 < n < 2^31, at any a (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 0x7fffffff }), (a, n) => {
        const b = snAdd(a, n);
        expect(snLessThan(a, b)).toBe(true);
        expect(snLessThan(b, a)).toBe(false);
        expect(snLessOrEqual(a, b)).toBe(true);
      }),
    );
  });
});

describe('padLength', () => {
  it.each([
    [0, 0],
    [1, 3],
    [2, 2],
    [3, 1],
    [4, 0],
    [10, 2],
    [8192, 0],
    [0xffffff, 1],
  ])('%i bytes -> %i pad bytes', (n, pad) => {
    expect(padLength(n)).toBe(pad);
    expect((n + padLength(n)) % 4).toBe(0);
  });
});
