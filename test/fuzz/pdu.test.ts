/**
 * The transport's parsers under fuzz (issue 7, hostile input):
 *
 *  - PduFramer: a stream of well-formed and broken PDUs (random BHS fields,
 *    AHS, digests, lengths beyond the limit, garbage) framed whole and split
 *    at random offsets gives the same PDUs and the same error, never throws,
 *    and never holds more than one PDU of at most the negotiated size
 *    (a DataSegmentLength beyond the limit is refused before memory is
 *    reserved for it);
 *  - text keys: parseTextKeys and TextAccumulator on random bytes; the
 *    operational negotiation (login-keys negotiateOperational) on random
 *    pairs of every key of the key table with random values, over one or
 *    two rounds: an answer or a LoginError, never a throw;
 *  - login PDUs over a socket to an in-process daemon: mutated login
 *    requests (flags, stages, ISID/TSIH, versions, CID, text) and mutated
 *    continuations: every connection ends with a Login Response or is
 *    closed by the target, nothing is logged as an internal error, and a
 *    clean login works afterwards.
 *
 * SCSI Command / Data-Out / NOP / TMF / Text / Logout PDUs in full feature
 * phase are fuzzed by test/iscsi/hostile.test.ts (seeded storm).
 */
import fc from 'fast-check';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { PduFramer, type FramerError } from '../../iscsi/framer';
import { crc32c, digestBytes } from '../../iscsi/digest';
import { BHS_LENGTH, padLength, type Pdu } from '../../iscsi/pdu';
import { TextAccumulator, parseTextKeys } from '../../iscsi/text';
import { DEFAULT_TARGET_KEY_CONFIG, KEY_TABLE } from '../../iscsi/login-keys';
import { createNegotiationState, negotiateOperational } from '../../iscsi/negotiation';
import { Daemon } from '../../src/daemon';
import { validateConfig } from '../../src/config';
import { bhs as bhsOf, openSession, textData } from '../support/initiator';
import { bytes, corpus, fuzzParams, hex, mutated } from './fuzz-support';

jest.setTimeout(180_000);

// ---- PduFramer ------------------------------------------------------------------------

interface PduSpec {
  opcode: number;
  fields: Buffer;
  ahsWords: number;
  data: Buffer;
  /** Claim a DataSegmentLength other than the data's (a lie, or beyond the limit). */
  dslLie: number | null;
  badHeaderDigest: boolean;
  badDataDigest: boolean;
}

const pduSpecArb: fc.Arbitrary<PduSpec> = fc.record({
  opcode: fc.integer({ min: 0, max: 0x3f }),
  fields: bytes(44, 44),
  ahsWords: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 255 }) }),
  data: fc.oneof(bytes(0), bytes(300), bytes(9000)),
  dslLie: fc.oneof({ weight: 12, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffff }) }),
  badHeaderDigest: fc.oneof({ weight: 15, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  badDataDigest: fc.oneof({ weight: 15, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

function encodeSpec(s: PduSpec, hd: boolean, dd: boolean): Buffer {
  const h = Buffer.alloc(BHS_LENGTH);
  s.fields.copy(h, 4);
  h[0] = s.opcode;
  h[4] = s.ahsWords;
  h.writeUIntBE(s.dslLie ?? s.data.length, 5, 3);
  const ahs = Buffer.alloc(s.ahsWords * 4, 0xa5);
  const parts: Buffer[] = [h, ahs];
  if (hd) {
    const d = digestBytes(crc32c(Buffer.concat([h, ahs])));
    if (s.badHeaderDigest) d[0] ^= 1;
    parts.push(d);
  }
  if (s.data.length) {
    const padded = Buffer.concat([s.data, Buffer.alloc(padLength(s.data.length))]);
    parts.push(padded);
    if (dd) {
      const d = digestBytes(crc32c(padded));
      if (s.badDataDigest) d[0] ^= 1;
      parts.push(d);
    }
  }
  return Buffer.concat(parts);
}

interface Framed {
  pdus: string[];
  error: string | null;
  maxBuffered: number;
}

function frame(stream: Buffer, cuts: number[], o: { max: number; hd: boolean; dd: boolean }): Framed {
  const out: Framed = { pdus: [], error: null, maxBuffered: 0 };
  const f = new PduFramer(
    { maxDataSegmentLength: o.max, headerDigest: o.hd, dataDigest: o.dd },
    (p: Pdu) => out.pdus.push(`${p.bhs.toString('hex')}|${p.ahs.toString('hex')}|${p.data.toString('hex')}`),
    (e: FramerError) => (out.error = `${e.code}:${e.bhs?.toString('hex') ?? ''}`),
  );
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  for (const p of [...points, stream.length]) {
    if (p > at) f.push(stream.subarray(at, p));
    at = Math.max(at, p);
    out.maxBuffered = Math.max(out.maxBuffered, f.buffered);
  }
  return out;
}

describe('PduFramer fuzz', () => {
  it('replays the committed corpus (streams that once mis-framed)', () => {
    for (const e of corpus<{ stream: string; max: number; hd: boolean; dd: boolean; cuts: number[] }>('framer')) {
      const s = hex(e.stream);
      const whole = frame(s, [], e);
      const split = frame(s, e.cuts, e);
      expect(split.error).toEqual(whole.error);
      expect(split.pdus.length === whole.pdus.length && split.pdus.every((p, i) => p === whole.pdus[i])).toBe(true);
      expect(split.maxBuffered).toBeLessThanOrEqual(BHS_LENGTH + 255 * 4 + 4 + e.max + 3 + 4);
    }
  });

  it('the same PDUs and the same error whatever the segmentation; never more than one bounded PDU held', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof({ weight: 8, arbitrary: pduSpecArb.map((s) => ({ s })) }, { weight: 1, arbitrary: bytes(200, 1).map((g) => ({ g })) }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 24 }),
        fc.constantFrom(512, 8192, 65536),
        fc.boolean(),
        fc.boolean(),
        (items, cuts, max, hd, dd) => {
          const stream = Buffer.concat(items.map((i) => ('s' in i ? encodeSpec(i.s, hd, dd) : i.g)));
          const o = { max, hd, dd };
          const whole = frame(stream, [], o);
          const split = frame(stream, cuts, o);
          const bytewise = stream.length <= 4096 ? frame(stream, Array.from({ length: stream.length }, (_, i) => i), o) : split;
          expect(split).toEqual({ ...whole, maxBuffered: split.maxBuffered });
          expect(bytewise.pdus).toEqual(whole.pdus);
          expect(bytewise.error).toEqual(whole.error);
          // One PDU at most, and never one beyond the limit: BHS + AHS + digests + data + pad.
          const bound = BHS_LENGTH + 255 * 4 + 4 + max + 3 + 4;
          expect(split.maxBuffered).toBeLessThanOrEqual(bound);
          expect(bytewise.maxBuffered).toBeLessThanOrEqual(bound);
        },
      ),
      fuzzParams(600),
    );
  });
});

// ---- text keys and negotiation ----------------------------------------------------------

const KEYS = [...KEY_TABLE.keys()];
const valueArb = fc.oneof(
  fc.constantFrom('Yes', 'No', 'None', 'CRC32C', 'CHAP', 'Normal', 'Discovery', '0', '1', '512', '65536', '16777215', '16777216', '0x10', '0b', '0bAA==', '', 'Reject', 'Irrelevant', 'NotUnderstood', 'CRC32C,None', 'None,CRC32C', '99999999999999999999999', 'iqn.2026-11.org.xcopyd:default'),
  fc.string({ maxLength: 40 }),
  fc.integer({ min: 0, max: 2 ** 32 }).map(String),
);
const pairArb = fc.tuple(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...KEYS) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }), valueArb);

describe('text keys fuzz', () => {
  it('parseTextKeys and TextAccumulator: random bytes never throw; the accumulator never exceeds its limit', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.oneof(bytes(300), fc.array(pairArb, { maxLength: 8 }).map((p) => textData(p))), fc.boolean()), { maxLength: 6 }), fc.integer({ min: 16, max: 2048 }), (chunks, limit) => {
        const acc = new TextAccumulator(limit);
        for (const [chunk, cont] of chunks) {
          expect(acc.size).toBeLessThanOrEqual(limit);
          const r = acc.push(chunk, cont);
          if (r.status === 'complete') {
            const p = parseTextKeys(r.data);
            expect(typeof p.ok).toBe('boolean');
          }
          parseTextKeys(chunk, { allowDuplicateKeys: cont });
        }
      }),
      fuzzParams(2000),
    );
  });

  it('negotiateOperational: random pairs of every key, one or two rounds, either stage: answers or a LoginError', () => {
    fc.assert(
      fc.property(fc.array(fc.array(pairArb, { maxLength: 12 }), { minLength: 1, maxLength: 2 }), fc.boolean(), fc.boolean(), (rounds, security, leading) => {
        const state = createNegotiationState();
        for (const [i, pairs] of rounds.entries()) {
          const first: Array<[string, string]> = i === 0 ? [['InitiatorName', 'iqn.2026-11.org.xcopyd:fuzz'], ['TargetName', 'iqn.2026-11.org.xcopyd:default']] : [];
          const r = negotiateOperational([...first, ...pairs], state, {
            targetLimits: DEFAULT_TARGET_KEY_CONFIG,
            isLeading: leading,
            stage: security && i === 0 ? 'security' : 'operational',
            targetExists: (n) => n === 'iqn.2026-11.org.xcopyd:default',
          });
          if (r.error) {
            expect(typeof r.error.statusClass).toBe('number');
            expect(r.error.statusClass).toBeGreaterThan(0);
            break;
          }
          for (const [k, v] of r.response) expect(typeof k === 'string' && typeof v === 'string').toBe(true);
        }
        // Whatever happened, the negotiated numbers stay inside their RFC 7143 ranges.
        expect(state.maxBurstLength).toBeGreaterThanOrEqual(512);
        expect(state.firstBurstLength).toBeLessThanOrEqual(state.maxBurstLength);
        expect(state.maxRecvDataSegmentLength).toBeLessThanOrEqual(16777215);
      }),
      fuzzParams(3000),
    );
  });
});

// ---- login PDUs over a socket -------------------------------------------------------------

describe('login PDU fuzz against an in-process daemon', () => {
  let daemon: Daemon;
  let port: number;
  let dataDir: string;
  const internalErrors: unknown[] = [];

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-fuzz-login-'));
    const config = validateConfig({
      listen: ['127.0.0.1:0'],
      dataDir,
      logLevel: 'warn',
      limits: { authFailureDelayMs: 0, loginTimeoutMs: 300 },
      targets: [
        { iqn: 'iqn.2026-11.org.xcopyd:default', luns: [{ lun: 0, path: 'lun0.img', size: '4MiB' }] },
        { iqn: 'iqn.2026-11.org.xcopyd:chap', chap: { user: 'fuzz', secret: 'fuzzsecret1234' }, luns: [{ lun: 0, path: 'c0.img', size: '4MiB' }] },
      ],
    });
    const sink = {
      write(line: string): void {
        const o = JSON.parse(line) as { level: number };
        if (o.level >= 50) internalErrors.push(o);
      },
    };
    daemon = new Daemon(config, pino({ level: 'warn' }, sink));
    await daemon.start();
    port = daemon.ports[0];
  });

  afterAll(async () => {
    await daemon.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const ISID = Buffer.from([0x80, 0, 0, 0, 0, 7]);
  const validLogin = (target: string, flags = 0x87): Buffer => {
    const data = textData([
      ['InitiatorName', 'iqn.2026-11.org.xcopyd:fuzz'],
      ['SessionType', 'Normal'],
      ['TargetName', target],
      ['HeaderDigest', 'None'],
      ['DataDigest', 'None'],
      ['MaxRecvDataSegmentLength', '65536'],
      ...(flags & 0x0c ? [] : ([['AuthMethod', 'CHAP,None']] as Array<[string, string]>)),
    ]);
    const h = bhsOf.login({ flags, isid: ISID });
    h.writeUIntBE(data.length, 5, 3);
    return Buffer.concat([h, data, Buffer.alloc(padLength(data.length))]);
  };

  /**
   * Send `pdus` on a fresh connection; resolve with what came back: 'login-response'
   * (opcode 23h seen, then the target closes or we stop), or 'closed', or 'silent'
   * when the target neither answered nor closed within the window.
   */
  function exchange(pdus: Buffer[]): Promise<'answered' | 'closed' | 'silent'> {
    return new Promise((resolve) => {
      const sock = net.connect({ port, host: '127.0.0.1' });
      let got = Buffer.alloc(0);
      let done = false;
      const finish = (v: 'answered' | 'closed' | 'silent'): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve(v);
      };
      // Past the login timeout (0.3 s) and the server's 1 s timer tick: a connection still open and silent is a hang.
      const timer = setTimeout(() => finish('silent'), 3500);
      sock.on('connect', () => {
        for (const p of pdus) sock.write(p);
      });
      sock.on('data', (d) => {
        got = Buffer.concat([got, d]);
        if (got.length >= BHS_LENGTH && (got[0] & 0x3f) === 0x23) finish('answered');
      });
      sock.on('error', () => undefined);
      sock.on('close', () => finish(got.length >= BHS_LENGTH && (got[0] & 0x3f) === 0x23 ? 'answered' : 'closed'));
    });
  }

  it('mutated login requests: a Login Response or a closed connection, never silence, never an internal error', async () => {
    const seeds = [validLogin('iqn.2026-11.org.xcopyd:default'), validLogin('iqn.2026-11.org.xcopyd:chap', 0x81), validLogin('iqn.2026-11.org.xcopyd:default', 0x40 | 0x04)];
    const fromCorpus = corpus<string[]>('login').map((l) => l.map(hex));
    for (const pdus of fromCorpus) expect(await exchange(pdus)).not.toBe('silent');
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.constantFrom(...seeds), ...seeds.map((s) => mutated(s, 4))), { minLength: 1, maxLength: 3 }), async (pdus) => {
        // An incomplete request (a length that promises more bytes) is closed by the login timeout.
        expect(await exchange(pdus)).not.toBe('silent');
      }),
      { ...fuzzParams(120), interruptAfterTimeLimit: 30_000 },
    );
    expect(internalErrors).toEqual([]);
    // Nothing half-made is left, and a clean login still works.
    const c = await openSession(port);
    expect(daemon.server!.sessions().length).toBe(1);
    expect(await c.logout()).toBe(0);
    c.close();
  });
});
