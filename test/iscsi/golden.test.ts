/**
 * The framer against every captured stream in shared/data/golden: both
 * directions of every connection, fed as the TCP segments were captured and
 * as one chunk, must give exactly the PDU split of `.pdus.jsonl`.
 */
import { crc32c, digestBytes } from '../../iscsi/digest';
import {
  cmdSnOf,
  dataSegmentLength,
  decodeLun,
  expStatSnOf,
  flagsOf,
  isImmediate,
  ittOf,
  opcodeOf,
  padLength,
  totalAhsLength,
  tttOf,
} from '../../iscsi/pdu';
import {
  FramedPdu,
  GoldenPduRecord,
  GoldenScenario,
  GoldenStream,
  allKnown,
  connections,
  digestsNegotiated,
  frameChunks,
  frameOptionsFor,
  hexField,
  listScenarios,
  loadScenario,
  pdusOf,
  stream,
  summarize,
} from './golden';

const SCENARIOS = listScenarios();

/** Untrimmed scenarios: every byte was captured. */
const FULL = ['01_libiscsi_discovery', '02_libiscsi_session', '05c_linux_open_iscsi_digests_tgt_crc32c'];

describe('golden folder', () => {
  it('holds the seven documented scenarios', () => {
    expect(SCENARIOS).toEqual([
      '01_libiscsi_discovery',
      '02_libiscsi_session',
      '03_qemu_img_write_read',
      '04_qemu_img_xcopy',
      '05a_linux_open_iscsi',
      '05b_linux_open_iscsi_digests',
      '05c_linux_open_iscsi_digests_tgt_crc32c',
    ]);
  });

  it.each(FULL)('%s is untrimmed', (name) => {
    const sc = loadScenario(name);
    for (const s of sc.streams.values()) {
      expect(s.trimmed).toBe(false);
      expect(allKnown(s, 0, s.bytes.length)).toBe(true);
    }
  });

  it('only 05c negotiated digests, and only on its normal-session connection', () => {
    for (const name of SCENARIOS) {
      const sc = loadScenario(name);
      for (const conn of connections(sc)) {
        const d = digestsNegotiated(sc, conn);
        const expected = name.startsWith('05c') && conn === 1;
        expect({ name, conn, ...d }).toEqual({ name, conn, header: expected, data: expected });
      }
    }
  });
});

function checkPdu(sc: GoldenScenario, s: GoldenStream, got: FramedPdu, want: GoldenPduRecord): void {
  const where = `${sc.name} pdu #${want.pdu} (${want.name}) conn ${want.conn} ${want.dir}`;
  const bhs = got.bhs;
  expect({ where, off: got.off }).toEqual({ where, off: want.stream_off });
  expect({ where, bhs: bhs.toString('hex') }).toEqual({ where, bhs: want.bhs });
  // The accessors read what the dissector read.
  expect(opcodeOf(bhs)).toBe(hexField(want.opcode));
  expect(isImmediate(bhs)).toBe(want.immediate);
  expect(flagsOf(bhs)).toBe(hexField(want.flags));
  expect(totalAhsLength(bhs)).toBe(want.TotalAHSLength * 4);
  expect(got.ahs.length).toBe(want.TotalAHSLength * 4);
  expect(dataSegmentLength(bhs)).toBe(want.DataSegmentLength);
  expect(got.data.length).toBe(want.DataSegmentLength);
  expect(ittOf(bhs)).toBe(hexField(want.ITT));
  if (want.TTT !== undefined) expect(tttOf(bhs)).toBe(hexField(want.TTT));
  if (want.dir === 'i2t') {
    if (want.CmdSN !== undefined) expect(cmdSnOf(bhs)).toBe(want.CmdSN);
    if (want.ExpStatSN !== undefined) expect(expStatSnOf(bhs)).toBe(want.ExpStatSN);
  } else {
    // Target PDUs reuse the CmdSN/ExpStatSN slots for StatSN/ExpCmdSN.
    if (want.StatSN !== undefined) expect(cmdSnOf(bhs)).toBe(want.StatSN);
    if (want.ExpCmdSN !== undefined) expect(expStatSnOf(bhs)).toBe(want.ExpCmdSN);
    if (want.MaxCmdSN !== undefined) expect(bhs.readUInt32BE(32)).toBe(want.MaxCmdSN);
  }
  if (want.LUN !== undefined) {
    expect(bhs.subarray(8, 16).toString('hex')).toBe(want.LUN);
    expect(decodeLun(bhs)).toBeGreaterThanOrEqual(0);
  }

  // Data: compare wherever the capture kept the bytes.
  const dataOff = got.off + 48 + got.ahs.length + (got.headerDigest ? 4 : 0);
  const dsl = want.DataSegmentLength;
  if (allKnown(s, dataOff, dataOff + dsl)) {
    expect(got.data.equals(s.bytes.subarray(dataOff, dataOff + dsl))).toBe(true);
  }
  if (want.keys) {
    const text = got.data.toString('utf8').split('\0');
    expect(text.pop()).toBe(''); // every key=value ends with NUL (RFC 7143 §6.1)
    expect(text).toEqual(want.keys);
  }

  // Digests: present exactly where the capture shows them, and they verify.
  expect({ where, hd: got.headerDigest }).toEqual({ where, hd: want.HeaderDigest !== undefined });
  if (want.HeaderDigest !== undefined) {
    const [hex, verdict] = want.HeaderDigest.split(' ');
    expect(verdict).toBe('ok');
    const hdOff = got.off + 48 + got.ahs.length;
    expect(s.bytes.subarray(hdOff, hdOff + 4).toString('hex')).toBe(hex);
    expect(digestBytes(crc32c(bhs, got.ahs)).toString('hex')).toBe(hex);
  }
  expect({ where, dd: got.dataDigest && dsl > 0 }).toEqual({ where, dd: want.DataDigest !== undefined });
  if (want.DataDigest !== undefined) {
    const [hex, verdict] = want.DataDigest.split(' ');
    expect(verdict).toBe('ok');
    const padded = dsl + padLength(dsl);
    expect(digestBytes(crc32c(s.bytes.subarray(dataOff, dataOff + padded))).toString('hex')).toBe(hex);
    expect(s.bytes.subarray(dataOff + padded, dataOff + padded + 4).toString('hex')).toBe(hex);
  }
}

describe.each(SCENARIOS)('%s', (name) => {
  const sc = loadScenario(name);
  const cases = connections(sc).flatMap((conn) =>
    (['i2t', 't2i'] as const).filter((dir) => sc.streams.has(`${conn}:${dir}`)).map((dir) => ({ conn, dir })),
  );

  it('every PDU of the split belongs to a captured stream', () => {
    const covered = cases.reduce((n, c) => n + pdusOf(sc, c.conn, c.dir).length, 0);
    expect(covered).toBe(sc.pdus.length);
  });

  describe.each(cases)('conn $conn $dir', ({ conn, dir }) => {
    const s = stream(sc, conn, dir);
    const want = pdusOf(sc, conn, dir);
    const opts = frameOptionsFor(sc, conn);

    it('framed as captured (TCP segments) gives the golden PDU split', () => {
      const run = frameChunks(s.segments, opts);
      expect(run.errors).toEqual([]);
      expect(run.pdus.length).toBe(want.length);
      for (let i = 0; i < want.length; i++) checkPdu(sc, s, run.pdus[i], want[i]);
      // The stream ends on a PDU boundary ("leftover unparsed 0").
      expect(run.framer.buffered).toBe(0);
      const last = run.pdus[run.pdus.length - 1];
      expect(last.off + last.length).toBe(s.bytes.length);
    });

    it('framed as one chunk gives the same PDUs, all as views of that chunk', () => {
      const bySegment = frameChunks(s.segments, opts);
      const whole = frameChunks([s.bytes], opts);
      expect(whole.errors).toEqual([]);
      expect(summarize(whole.pdus)).toEqual(summarize(bySegment.pdus));
      for (const p of whole.pdus) {
        expect(p.bhs.buffer).toBe(s.bytes.buffer);
        expect(p.bhs.byteOffset - s.bytes.byteOffset).toBe(p.off);
        expect(p.data.buffer).toBe(s.bytes.buffer);
      }
    });
  });
});

describe('05c digests', () => {
  const sc = loadScenario('05c_linux_open_iscsi_digests_tgt_crc32c');

  it('start with the first PDU after the final Login Request / Login Response on conn 1', () => {
    for (const dir of ['i2t', 't2i'] as const) {
      const run = frameChunks(stream(sc, 1, dir).segments, frameOptionsFor(sc, 1));
      expect(run.pdus[0].headerDigest).toBe(false);
      expect(run.pdus.slice(1).every((p) => p.headerDigest && p.dataDigest)).toBe(true);
    }
  });

  it('every captured digest is checked (header and data, both directions)', () => {
    let header = 0;
    let data = 0;
    for (const dir of ['i2t', 't2i'] as const) {
      const run = frameChunks(stream(sc, 1, dir).segments, frameOptionsFor(sc, 1));
      header += run.pdus.filter((p) => p.headerDigest).length;
      data += run.pdus.filter((p) => p.dataDigest && p.data.length > 0).length;
    }
    expect(header).toBe(sc.pdus.filter((p) => p.HeaderDigest !== undefined).length);
    expect(data).toBe(sc.pdus.filter((p) => p.DataDigest !== undefined).length);
    expect(header).toBeGreaterThan(200);
    expect(data).toBeGreaterThan(100);
  });

  it('without digests enabled the stream does not frame as captured', () => {
    const s = stream(sc, 1, 'i2t');
    const run = frameChunks([s.bytes], { maxDataSegmentLength: 0xffffff });
    const want = pdusOf(sc, 1, 'i2t');
    const same =
      run.errors.length === 0 &&
      run.pdus.length === want.length &&
      run.pdus.every((p, i) => p.off === want[i].stream_off);
    expect(same).toBe(false);
  });
});
