/**
 * PduFramer: the same PDUs whatever the TCP segmentation (split at every
 * offset, byte by byte, random chunkings), zero-copy views for PDUs that
 * arrive whole, and the error paths (length limit, header and data digests).
 * Streams are the captured ones from shared/data/golden.
 */
import fc from 'fast-check';
import { crc32c, digestBytes } from '../../iscsi/digest';
import { FramerError, PduFramer } from '../../iscsi/framer';
import { Pdu, dataSegmentLength, padLength } from '../../iscsi/pdu';
import {
  FrameOptions,
  FramedPdu,
  GoldenStream,
  MAX_DSL,
  frameChunks,
  frameOptionsFor,
  loadScenario,
  pdusOf,
  stream,
} from './golden';

const S02 = loadScenario('02_libiscsi_session');
const S05A = loadScenario('05a_linux_open_iscsi');
const S05C = loadScenario('05c_linux_open_iscsi_digests_tgt_crc32c');
const DIGESTS = { maxDataSegmentLength: MAX_DSL, headerDigest: true, dataDigest: true };

/** A stretch of a captured stream that starts and ends on PDU boundaries. */
interface Sample {
  name: string;
  bytes: Buffer;
  opts: FrameOptions;
  /** What the framer gives for `bytes` pushed as one chunk. */
  ref: FramedPdu[];
}

function fullSample(name: string, s: GoldenStream, opts: FrameOptions): Sample {
  return { name, bytes: s.bytes, opts, ref: frameChunks([s.bytes], opts).pdus };
}

/** PDUs [first, last) of a stream (by the golden split), digests as given. */
function windowSample(name: string, s: GoldenStream, offs: number[], first: number, last: number, opts: FrameOptions): Sample {
  const start = offs[first];
  const end = last < offs.length ? offs[last] : s.bytes.length;
  const bytes = Buffer.from(s.bytes.subarray(start, end));
  return { name, bytes, opts, ref: frameChunks([bytes], opts).pdus };
}

const offsets = (sc: typeof S05C, conn: number, dir: 'i2t' | 't2i'): number[] =>
  pdusOf(sc, conn, dir).map((p) => p.stream_off);

const SMALL_SAMPLES: Sample[] = [
  fullSample('02 conn 0 i2t', stream(S02, 0, 'i2t'), frameOptionsFor(S02, 0)),
  fullSample('02 conn 0 t2i', stream(S02, 0, 't2i'), frameOptionsFor(S02, 0)),
  fullSample('02 conn 1 i2t', stream(S02, 1, 'i2t'), frameOptionsFor(S02, 1)),
  fullSample('02 conn 1 t2i', stream(S02, 1, 't2i'), frameOptionsFor(S02, 1)),
  // Login (no digests) then INQUIRYs with digests and padded data segments (DSL 10, 66).
  windowSample('05c conn 1 t2i login + 20 PDUs', stream(S05C, 1, 't2i'), offsets(S05C, 1, 't2i'), 0, 21, frameOptionsFor(S05C, 1)),
  windowSample('05c conn 1 i2t login + 20 PDUs', stream(S05C, 1, 'i2t'), offsets(S05C, 1, 'i2t'), 0, 21, frameOptionsFor(S05C, 1)),
];

// WRITE(10) with 8192 bytes of immediate data, then the first Data-Out, with digests.
const WRITE_WINDOW = (() => {
  const offs = offsets(S05C, 1, 'i2t');
  const first = offs.indexOf(6232);
  return windowSample('05c conn 1 i2t WRITE(10)+Data-Out', stream(S05C, 1, 'i2t'), offs, first, first + 2, DIGESTS);
})();

const BIG_SAMPLES: Sample[] = [
  fullSample('05c conn 1 i2t', stream(S05C, 1, 'i2t'), frameOptionsFor(S05C, 1)),
  fullSample('05c conn 1 t2i', stream(S05C, 1, 't2i'), frameOptionsFor(S05C, 1)),
];

/** Empty string when `got` is the reference PDU list shifted by nothing, else the first difference. */
function diff(ref: FramedPdu[], got: FramedPdu[]): string {
  if (got.length !== ref.length) return `count ${got.length} != ${ref.length}`;
  for (let i = 0; i < ref.length; i++) {
    const a = ref[i];
    const b = got[i];
    if (a.off !== b.off || a.length !== b.length) return `pdu ${i}: at ${b.off}+${b.length}, want ${a.off}+${a.length}`;
    if (a.headerDigest !== b.headerDigest || a.dataDigest !== b.dataDigest) return `pdu ${i}: digest state`;
    if (!a.bhs.equals(b.bhs)) return `pdu ${i}: BHS`;
    if (!a.ahs.equals(b.ahs)) return `pdu ${i}: AHS`;
    if (!a.data.equals(b.data)) return `pdu ${i}: data`;
  }
  return '';
}

/** Copies into buffers of their own (Buffer.alloc never hands out the shared pool). */
function ownBuffer(src: Buffer): Buffer {
  const b = Buffer.alloc(src.length);
  src.copy(b);
  return b;
}

function chunksAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(ownBuffer(bytes.subarray(prev, c)));
    prev = c;
  }
  return out;
}

function* byteByByte(bytes: Buffer): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
}

/**
 * Zero-copy: a PDU wholly inside one chunk is a view of that chunk at the
 * right offset; one that straddles chunks is one fresh buffer of its own.
 */
function zeroCopyViolation(chunks: Buffer[], got: FramedPdu[]): string {
  const starts: number[] = [];
  let o = 0;
  for (const c of chunks) {
    starts.push(o);
    o += c.length;
  }
  for (const p of got) {
    const i = chunks.findIndex((c, j) => starts[j] <= p.off && p.off + p.length <= starts[j] + c.length);
    if (i >= 0) {
      const c = chunks[i];
      if (p.bhs.buffer !== c.buffer || p.bhs.byteOffset !== c.byteOffset + (p.off - starts[i])) {
        return `PDU at ${p.off} arrived whole in chunk ${i} but is not a view of it`;
      }
      if (p.data.buffer !== c.buffer) return `data of PDU at ${p.off} is not a view of chunk ${i}`;
    } else {
      if (chunks.some((c) => c.buffer === p.bhs.buffer)) return `PDU at ${p.off} straddles chunks but aliases one`;
      if (p.bhs.buffer !== p.data.buffer || p.bhs.buffer !== p.ahs.buffer) {
        return `PDU at ${p.off} was assembled into more than one buffer`;
      }
    }
  }
  return '';
}

describe('PduFramer: segmentation does not matter', () => {
  it.each(SMALL_SAMPLES.map((s) => [s.name, s] as const))('%s: reference is non-trivial', (_n, s) => {
    expect(s.ref.length).toBeGreaterThan(3);
    const last = s.ref[s.ref.length - 1];
    expect(last.off + last.length).toBe(s.bytes.length);
  });

  it.each([...SMALL_SAMPLES, WRITE_WINDOW].map((s) => [s.name, s] as const))(
    '%s: split into two chunks at every offset (and zero-copy where whole)',
    (_n, s) => {
      for (let k = 0; k <= s.bytes.length; k++) {
        const chunks = chunksAt(s.bytes, [k]);
        const run = frameChunks(chunks, s.opts);
        const problem =
          (run.errors.length ? `error ${run.errors[0].code}` : '') ||
          diff(s.ref, run.pdus) ||
          (run.framer.buffered !== 0 ? `buffered ${run.framer.buffered}` : '') ||
          zeroCopyViolation(chunks, run.pdus);
        if (problem) throw new Error(`split at ${k}: ${problem}`);
      }
    },
  );

  it.each([...SMALL_SAMPLES, WRITE_WINDOW, ...BIG_SAMPLES].map((s) => [s.name, s] as const))(
    '%s: byte by byte',
    (_n, s) => {
      const run = frameChunks(byteByByte(s.bytes), s.opts);
      expect(run.errors).toEqual([]);
      expect(diff(s.ref, run.pdus)).toBe('');
      // Nothing arrived whole, so nothing aliases the input.
      expect(run.pdus.every((p) => p.bhs.buffer !== s.bytes.buffer)).toBe(true);
    },
  );

  it.each([...SMALL_SAMPLES, WRITE_WINDOW].map((s) => [s.name, s] as const))('%s: random chunkings (property)', (_n, s) => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: s.bytes.length }), { maxLength: 40 }), (cuts) => {
        const chunks = chunksAt(s.bytes, [...cuts].sort((a, b) => a - b));
        const run = frameChunks(chunks, s.opts);
        expect(run.errors).toEqual([]);
        expect(diff(s.ref, run.pdus)).toBe('');
        expect(zeroCopyViolation(chunks, run.pdus)).toBe('');
      }),
      { numRuns: 200 },
    );
  });

  it.each(BIG_SAMPLES.map((s) => [s.name, s] as const))('%s: random chunkings (property)', (_n, s) => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: s.bytes.length }), { maxLength: 200 }), (cuts) => {
        const chunks = chunksAt(s.bytes, [...cuts].sort((a, b) => a - b));
        const run = frameChunks(chunks, s.opts);
        expect(run.errors).toEqual([]);
        expect(diff(s.ref, run.pdus)).toBe('');
        expect(zeroCopyViolation(chunks, run.pdus)).toBe('');
      }),
      { numRuns: 25 },
    );
  });

  it('small random chunk sizes (1..64 bytes) across the 05c write window (property)', () => {
    const s = WRITE_WINDOW;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 64 }), (sizes) => {
        const cuts: number[] = [];
        let o = 0;
        for (let i = 0; o < s.bytes.length; i++) {
          o += sizes[i % sizes.length];
          if (o < s.bytes.length) cuts.push(o);
        }
        const run = frameChunks(chunksAt(s.bytes, cuts), s.opts);
        expect(diff(s.ref, run.pdus)).toBe('');
      }),
      { numRuns: 30 },
    );
  });

  it('empty chunks are harmless', () => {
    const s = SMALL_SAMPLES[0];
    const chunks = chunksAt(s.bytes, [0, 0, 10, 10, 48, 48, s.bytes.length]);
    const run = frameChunks(chunks, s.opts);
    expect(diff(s.ref, run.pdus)).toBe('');
  });

  it('reports the bytes it holds for an incomplete PDU', () => {
    const s = WRITE_WINDOW; // first PDU: 48 + 4 + 8192 + 4 bytes
    const framer = new PduFramer(DIGESTS, () => undefined, () => undefined);
    framer.push(s.bytes.subarray(0, 20));
    expect(framer.buffered).toBe(20);
    framer.push(s.bytes.subarray(20, 100));
    expect(framer.buffered).toBe(100);
    framer.push(s.bytes.subarray(100, s.ref[0].length));
    expect(framer.buffered).toBe(0);
  });
});

/** A synthetic PDU with AHS and data, digests included: the captures have no AHS. */
function synthPdu(opts: { ahsWords: number; dsl: number; headerDigest: boolean; dataDigest: boolean; seed: number }): Buffer {
  const bhs = Buffer.alloc(48);
  bhs[0] = 0x01; // SCSI Command
  bhs[1] = 0xa1; // F, W, SIMPLE
  bhs[4] = opts.ahsWords;
  bhs[5] = (opts.dsl >> 16) & 0xff;
  bhs[6] = (opts.dsl >> 8) & 0xff;
  bhs[7] = opts.dsl & 0xff;
  bhs.writeUInt32BE(opts.seed >>> 0, 16);
  const ahs = Buffer.alloc(opts.ahsWords * 4, (opts.seed + 1) & 0xff);
  if (opts.ahsWords > 0) {
    ahs.writeUInt16BE(opts.ahsWords * 4 - 3, 0); // AHSLength
    ahs[2] = 0x01; // Extended CDB
  }
  const data = Buffer.alloc(opts.dsl, (opts.seed + 7) & 0xff);
  const pad = Buffer.alloc(padLength(opts.dsl));
  const parts: Buffer[] = [bhs, ahs];
  if (opts.headerDigest) parts.push(digestBytes(crc32c(bhs, ahs)));
  if (opts.dsl > 0) {
    parts.push(data, pad);
    if (opts.dataDigest) parts.push(digestBytes(crc32c(data, pad)));
  }
  return Buffer.concat(parts);
}

describe('PduFramer: AHS, padding and digests (synthetic)', () => {
  const variants = [
    { headerDigest: false, dataDigest: false },
    { headerDigest: true, dataDigest: false },
    { headerDigest: false, dataDigest: true },
    { headerDigest: true, dataDigest: true },
  ];

  it.each(variants)('header digest $headerDigest, data digest $dataDigest: every split of 3 PDUs', (v) => {
    const pdus = [
      synthPdu({ ahsWords: 5, dsl: 13, seed: 1, ...v }),
      synthPdu({ ahsWords: 0, dsl: 0, seed: 2, ...v }),
      synthPdu({ ahsWords: 1, dsl: 2, seed: 3, ...v }),
    ];
    const bytes = Buffer.concat(pdus);
    const opts: FrameOptions = { maxDataSegmentLength: 8192, ...v };
    const ref = frameChunks([bytes], opts);
    expect(ref.errors).toEqual([]);
    expect(ref.pdus.map((p) => [p.off, p.length, p.ahs.length, p.data.length])).toEqual([
      [0, pdus[0].length, 20, 13],
      [pdus[0].length, pdus[1].length, 0, 0],
      [pdus[0].length + pdus[1].length, pdus[2].length, 4, 2],
    ]);
    expect(ref.pdus[0].ahs[2]).toBe(0x01);
    expect(ref.pdus[0].data.equals(Buffer.alloc(13, 8))).toBe(true);
    for (let k = 0; k <= bytes.length; k++) {
      for (let j = k; j <= bytes.length; j += 7) {
        const chunks = chunksAt(bytes, [k, j]);
        const run = frameChunks(chunks, opts);
        const problem = diff(ref.pdus, run.pdus) || zeroCopyViolation(chunks, run.pdus);
        if (problem) throw new Error(`split at ${k},${j}: ${problem}`);
      }
    }
  });

  it('a data segment of 0 bytes carries neither padding nor data digest (RFC 7143 §11.2)', () => {
    const p = synthPdu({ ahsWords: 0, dsl: 0, seed: 9, headerDigest: true, dataDigest: true });
    expect(p.length).toBe(52);
    const run = frameChunks([p], { maxDataSegmentLength: 8192, headerDigest: true, dataDigest: true });
    expect(run.errors).toEqual([]);
    expect(run.pdus).toHaveLength(1);
    expect(run.framer.buffered).toBe(0);
  });

  it('the data digest covers the padding bytes', () => {
    const p = synthPdu({ ahsWords: 0, dsl: 5, seed: 4, headerDigest: false, dataDigest: true });
    p[48 + 6] ^= 0x01; // a pad byte
    const run = frameChunks([p], { maxDataSegmentLength: 8192, dataDigest: true });
    expect(run.errors.map((e) => e.code)).toEqual(['DATA_DIGEST']);
  });

  it('the header digest covers the AHS', () => {
    const p = synthPdu({ ahsWords: 2, dsl: 0, seed: 4, headerDigest: true, dataDigest: false });
    p[48 + 5] ^= 0x80;
    const run = frameChunks([p], { maxDataSegmentLength: 8192, headerDigest: true });
    expect(run.errors.map((e) => e.code)).toEqual(['HEADER_DIGEST']);
  });
});

/**
 * PDUs then errors, as events. The framer stops at its first error, so
 * nothing can come after one; the property tests below check that order
 * with raw callbacks.
 */
function trace(chunks: Iterable<Buffer>, opts: FrameOptions): { events: string[]; errors: FramerError[]; framer: PduFramer } {
  const run = frameChunks(chunks, opts);
  expect(run.pdusAfterError).toBe(0);
  expect(run.errors.length).toBeLessThanOrEqual(1);
  const events = [...run.pdus.map((p) => `pdu ${p.bhs.toString('hex', 16, 20)}`), ...run.errors.map((e) => `error ${e.code}`)];
  return { events, errors: run.errors, framer: run.framer };
}

describe('PduFramer: errors', () => {
  // 05a conn 1 i2t: the Linux initiator's WRITE(10) with 8192 bytes of immediate data.
  const s05a = stream(S05A, 1, 'i2t');
  const write05a = pdusOf(S05A, 1, 'i2t').find((p) => p.DataSegmentLength === 8192 && p.name === 'SCSI Command')!;

  it('DataSegmentLength above the limit fails on the header alone, before any data arrives', () => {
    const header = s05a.bytes.subarray(write05a.stream_off, write05a.stream_off + 48);
    const t = trace([ownBuffer(header)], { maxDataSegmentLength: 8191 });
    expect(t.events).toEqual(['error DATA_SEGMENT_TOO_LONG']);
    expect(t.errors[0]).toBeInstanceOf(FramerError);
    expect(t.errors[0]).toBeInstanceOf(Error);
    expect(t.errors[0].bhs?.toString('hex')).toBe(write05a.bhs);
    // The reported BHS is a copy, not a view of the receive buffer.
    expect(t.errors[0].bhs?.buffer).not.toBe(header.buffer);
    expect(t.framer.buffered).toBe(0);
  });

  it('DataSegmentLength above the limit fails when the header arrives in pieces', () => {
    const header = s05a.bytes.subarray(write05a.stream_off, write05a.stream_off + 48);
    for (let k = 1; k < 48; k++) {
      const t = trace(chunksAt(header, [k]), { maxDataSegmentLength: 8191 });
      expect(t.events).toEqual(['error DATA_SEGMENT_TOO_LONG']);
    }
  });

  it('DataSegmentLength equal to the limit is accepted (8192, as tgt negotiates by default)', () => {
    const end = write05a.stream_off + 48 + 8192;
    const t = trace([s05a.bytes.subarray(write05a.stream_off, end)], { maxDataSegmentLength: 8192 });
    expect(t.events).toEqual([`pdu ${write05a.ITT.slice(2)}`]);
  });

  it('the limit applies to the stream from the start: login PDUs over 8192 are refused', () => {
    const big = Buffer.alloc(48);
    big[0] = 0x43;
    big[5] = 0x00;
    big[6] = 0x20;
    big[7] = 0x01; // DSL 8193
    const t = trace([big], { maxDataSegmentLength: 8192 });
    expect(t.events).toEqual(['error DATA_SEGMENT_TOO_LONG']);
  });

  describe('05c digests', () => {
    const s = stream(S05C, 1, 'i2t');
    const opts = frameOptionsFor(S05C, 1);
    const ref = frameChunks([s.bytes], opts).pdus;
    const write = ref.findIndex((p) => p.off === 6232); // WRITE(10) + 8192 immediate

    it('a flipped bit anywhere in a BHS or its header digest -> HEADER_DIGEST, and nothing after', () => {
      const target = ref[write];
      // Bytes 4..7 hold TotalAHSLength and DataSegmentLength: a flip there changes the
      // length of the PDU itself, tested below.
      const positions = [...Array(52).keys()].filter((i) => i < 4 || i >= 8);
      for (const i of positions) {
        for (let bit = 0; bit < 8; bit++) {
          const bad = Buffer.from(s.bytes);
          bad[target.off + i] ^= 1 << bit;
          const t = trace([bad], opts);
          expect(t.events.length).toBe(write + 1);
          expect(t.events[write]).toBe('error HEADER_DIGEST');
          expect(t.errors[0].bhs?.equals(bad.subarray(target.off, target.off + 48))).toBe(true);
        }
      }
    });

    // RFC 7143 §7.8: after a header digest error "the length field of the header
    // may have been corrupted", so the digest must be checked before the
    // lengths are used: no waiting for a bogus data segment, no length error.
    it('a flipped bit in TotalAHSLength or DataSegmentLength -> HEADER_DIGEST at once', () => {
      const target = ref[write];
      for (let i = 4; i < 8; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const bad = Buffer.from(s.bytes);
          bad[target.off + i] ^= 1 << bit;
          const t = trace([bad], opts);
          expect(t.events.length).toBe(write + 1);
          expect({ i, bit, e: t.events[write] }).toEqual({ i, bit, e: 'error HEADER_DIGEST' });
          // Also when the limit is tight, and when nothing but the header has arrived.
          const tight = trace([bad], { ...opts, maxDataSegmentLength: 8192 });
          expect({ i, bit, e: tight.events[write] }).toEqual({ i, bit, e: 'error HEADER_DIGEST' });
          if (i >= 5) {
            const headerOnly = bad.subarray(0, target.off + 52);
            const h = trace(chunksAt(headerOnly, [target.off + 20]), opts);
            expect({ i, bit, e: h.events[write] }).toEqual({ i, bit, e: 'error HEADER_DIGEST' });
            expect(h.framer.buffered).toBe(0);
          }
        }
      }
    });

    it('a good header with an over-long DataSegmentLength fails once BHS and header digest are in', () => {
      const target = ref[write];
      const header = s.bytes.subarray(target.off, target.off + 52);
      for (let k = 0; k <= 52; k++) {
        const t = trace(chunksAt(header, [k]), { headerDigest: true, dataDigest: true, maxDataSegmentLength: 8191 });
        expect(t.events).toEqual(['error DATA_SEGMENT_TOO_LONG']);
      }
      const t = trace([header.subarray(0, 51)], { headerDigest: true, dataDigest: true, maxDataSegmentLength: 8191 });
      expect(t.events).toEqual([]);
      expect(t.framer.buffered).toBe(51);
    });

    it('a flipped bit in immediate data, a Data-Out payload or a data digest -> DATA_DIGEST', () => {
      for (const idx of [write, write + 1]) {
        const p = ref[idx];
        const dataOff = p.off + 52;
        for (const pos of [dataOff, dataOff + 1, dataOff + 4095, dataOff + 8191, dataOff + 8192, dataOff + 8195]) {
          const bad = Buffer.from(s.bytes);
          bad[pos] ^= 0x10;
          const t = trace([bad], opts);
          expect(t.events.length).toBe(idx + 1);
          expect(t.events[idx]).toBe('error DATA_DIGEST');
          expect(t.errors[0].bhs?.toString('hex')).toBe(p.bhs.toString('hex'));
        }
      }
    });

    it('a corrupted padding byte in a target PDU (Data-In, DSL 10) -> DATA_DIGEST', () => {
      const t2i = stream(S05C, 1, 't2i');
      const r = frameChunks([t2i.bytes], opts).pdus;
      const idx = r.findIndex((p) => p.data.length === 10);
      const bad = Buffer.from(t2i.bytes);
      bad[r[idx].off + 52 + 10] ^= 0xff; // first pad byte
      const t = trace([bad], opts);
      expect(t.events.slice(idx)).toEqual(['error DATA_DIGEST']);
    });

    it('errors the same way whatever the segmentation, and emits nothing after', () => {
      const bad = Buffer.from(s.bytes);
      bad[ref[write].off + 52 + 100] ^= 0x01;
      const whole = trace([bad], opts).events;
      for (const cut of [1, 47, 48, 51, 52, 53, 4000, 8243, 8244, 8247, 8248, 9000]) {
        const k = ref[write].off + cut;
        const t = trace(chunksAt(bad, [k]), opts);
        expect(t.events).toEqual(whole);
      }
      const t = trace(byteByByte(bad), opts);
      expect(t.events).toEqual(whole);
    });

    it('ignores everything pushed after an error', () => {
      const bad = Buffer.from(s.bytes.subarray(0, ref[write + 1].off));
      bad[ref[write].off] ^= 0x01;
      const t = trace([bad], opts);
      expect(t.events[t.events.length - 1]).toBe('error HEADER_DIGEST');
      const before = t.events.length;
      t.framer.push(s.bytes.subarray(ref[write + 1].off));
      t.framer.push(s.bytes);
      expect(t.events.length).toBe(before);
      expect(t.framer.buffered).toBe(0);
    });
  });

  it('a new limit set from the PDU callback applies to the next PDU in the same chunk', () => {
    // 05a conn 1 i2t: Login (DSL 464..), then PDUs of up to 8192 bytes.
    const want = pdusOf(S05A, 1, 'i2t');
    const events: string[] = [];
    const framer: PduFramer = new PduFramer(
      { maxDataSegmentLength: 8192 },
      () => {
        events.push('pdu');
        if (events.length === 1) framer.maxDataSegmentLength = 512; // as if negotiated down after login
      },
      (e) => events.push(`error ${e.code}`),
    );
    framer.push(s05a.bytes);
    const firstBig = want.findIndex((p, i) => i > 0 && p.DataSegmentLength > 512);
    expect(events.length).toBe(firstBig + 1);
    expect(events[firstBig]).toBe('error DATA_SEGMENT_TOO_LONG');
  });

  it('stop() drops a partial PDU and ignores later bytes', () => {
    const s = SMALL_SAMPLES[0];
    const t = trace([s.bytes.subarray(0, 30)], s.opts);
    expect(t.framer.buffered).toBe(30);
    t.framer.stop();
    expect(t.framer.buffered).toBe(0);
    t.framer.push(s.bytes.subarray(30));
    expect(t.events).toEqual([]);
  });
});

describe('PduFramer: arbitrary input (property)', () => {
  const optsArb = fc.record({
    maxDataSegmentLength: fc.constantFrom(0, 1, 8192, 262144, MAX_DSL),
    headerDigest: fc.boolean(),
    dataDigest: fc.boolean(),
  });

  it('random bytes never throw out of push(), and nothing is emitted after the one error', () => {
    fc.assert(
      fc.property(optsArb, fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 12 }), (opts, chunks) => {
        const events: string[] = [];
        const framer = new PduFramer(
          opts,
          (p) => {
            events.push('pdu');
            expect(p.bhs.length).toBe(48);
            expect(p.data.length).toBe(dataSegmentLength(p.bhs));
            expect(p.data.length).toBeLessThanOrEqual(opts.maxDataSegmentLength);
          },
          (e) => {
            expect(e).toBeInstanceOf(FramerError);
            events.push('error');
          },
        );
        for (const c of chunks) framer.push(Buffer.from(c));
        const errorAt = events.indexOf('error');
        if (errorAt >= 0) expect(errorAt).toBe(events.length - 1);
      }),
      { numRuns: 500 },
    );
  });

  it('random headers with digests either frame or fail with HEADER_DIGEST', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 52, maxLength: 52 }), (raw) => {
        const b = Buffer.from(raw);
        b[4] = 0;
        b[5] = b[6] = b[7] = 0; // no AHS, no data: exactly one PDU
        const t = trace([b], { maxDataSegmentLength: 8192, headerDigest: true });
        const good = crc32c(b.subarray(0, 48)) === b.readUInt32LE(48);
        expect(t.events).toEqual([good ? `pdu ${b.toString('hex', 16, 20)}` : 'error HEADER_DIGEST']);
      }),
      { numRuns: 300 },
    );
  });

  it('a valid PDU stream built from random parts frames back to those parts', () => {
    const pduArb = fc.record({
      ahsWords: fc.integer({ min: 0, max: 6 }),
      dsl: fc.integer({ min: 0, max: 300 }),
      seed: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(
        fc.array(pduArb, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 10 }),
        (specs, headerDigest, dataDigest, rawCuts) => {
          const pdus = specs.map((p) => synthPdu({ ...p, headerDigest, dataDigest }));
          const bytes = Buffer.concat(pdus);
          const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const run = frameChunks(chunksAt(bytes, cuts), { maxDataSegmentLength: 300, headerDigest, dataDigest });
          expect(run.errors).toEqual([]);
          expect(run.pdus.map((p) => [p.length, p.ahs.length, p.data.length])).toEqual(
            specs.map((sp, i) => [pdus[i].length, sp.ahsWords * 4, sp.dsl]),
          );
          expect(run.framer.buffered).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
