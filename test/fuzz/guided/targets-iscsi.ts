/**
 * Guided targets of the transport: the PDU framer, the text keys with the
 * operational negotiation, and whole logins through LoginNegotiator (with a
 * stand-in connection and server context, no socket).
 */
import fc from 'fast-check';
import pino from 'pino';
import { FramerError, PduFramer } from '../../../iscsi/framer';
import { crc32c, digestBytes } from '../../../iscsi/digest';
import { BHS_LENGTH, padLength, type Pdu } from '../../../iscsi/pdu';
import { TextAccumulator, parseTextKeys, encodeTextKeys } from '../../../iscsi/text';
import { DEFAULT_TARGET_KEY_CONFIG, KEY_TABLE } from '../../../iscsi/login-keys';
import { createNegotiationState, negotiateOperational } from '../../../iscsi/negotiation';
import { LoginNegotiator } from '../../../iscsi/login';
import { Session, SessionRegistry } from '../../../iscsi/session';
import { DEFAULT_LIMITS, type TargetEntry } from '../../../iscsi/types';
import type { Connection } from '../../../iscsi/connection';
import type { ServerContext } from '../../../iscsi/server';
import { corpus, hex } from '../fuzz-support';
import { Bytes, u16, u8, type FuzzTarget } from './target';

// ---- PDU framer -----------------------------------------------------------------------

const MAXES = [512, 8192, 65536, 16777215];
const FRAMER_CODES = new Set(['HEADER_DIGEST', 'DATA_DIGEST', 'DATA_SEGMENT_TOO_LONG', 'BAD_AHS']);

/** Rewrite every digest of the stream to its right value, as far as the stream frames (lets the fuzzer past CRC32C). */
function fixDigests(s: Buffer, hd: boolean, dd: boolean, max: number): void {
  let off = 0;
  for (let guard = 0; guard < 4096 && off + BHS_LENGTH <= s.length; guard++) {
    const ahs = s[off + 4] * 4;
    const dsl = s.readUIntBE(off + 5, 3);
    const hl = BHS_LENGTH + ahs;
    if (hd && off + hl + 4 <= s.length) digestBytes(crc32c(s.subarray(off, off + hl))).copy(s, off + hl);
    let p = off + hl + (hd ? 4 : 0);
    if (dsl > max) return;
    if (dsl > 0) {
      const padded = dsl + padLength(dsl);
      if (dd && p + padded + 4 <= s.length) digestBytes(crc32c(s.subarray(p, p + padded))).copy(s, p + padded);
      p += padded + (dd ? 4 : 0);
    }
    off = p;
  }
}

interface Framed {
  pdus: string[];
  error: string | null;
  maxBuffered: number;
  threw: string | null;
}

function frame(stream: Buffer, cuts: number[], max: number, hd: boolean, dd: boolean): Framed {
  const out: Framed = { pdus: [], error: null, maxBuffered: 0, threw: null };
  const f = new PduFramer(
    { maxDataSegmentLength: max, headerDigest: hd, dataDigest: dd },
    (p: Pdu) => out.pdus.push(`${p.bhs.toString('hex')}|${p.ahs.toString('hex')}|${p.data.toString('hex')}`),
    (e: FramerError) => {
      if (out.error) out.threw = `onError twice: ${out.error} then ${e.code}`;
      out.error = e instanceof FramerError && FRAMER_CODES.has(e.code) ? `${e.code}:${e.bhs?.toString('hex') ?? ''}` : `not a FramerError: ${String(e)}`;
    },
  );
  let at = 0;
  try {
    for (const p of [...cuts, stream.length]) {
      if (p > at) f.push(stream.subarray(at, p));
      at = Math.max(at, p);
      out.maxBuffered = Math.max(out.maxBuffered, f.buffered);
    }
  } catch (err) {
    out.threw = (err as Error)?.stack ?? String(err);
  }
  return out;
}

/**
 * Input: flags (bit 0 header digest, bit 1 data digest, bits 2-3 the limit,
 * bit 4 fix digests), a cut count, cuts (u16 each), the stream.
 * Oracle: PDUs or a FramerError (the connection closes), never a throw; the
 * same PDUs and error whole, cut and byte by byte; never more than one
 * bounded PDU held.
 */
export const framerTarget: FuzzTarget = {
  name: 'framer',
  maxLen: 24 * 1024,
  dict: [Buffer.from([0x43, 0x87]), Buffer.from([0x01, 0xc1]), Buffer.from([0x05, 0x80]), Buffer.from([0, 0, 0x02, 0]), Buffer.from([0x20, 0, 0, 0])],
  seeds() {
    const out: Buffer[] = [];
    for (const e of corpus<{ stream: string; max: number; hd: boolean; dd: boolean; cuts: number[] }>('framer')) {
      const m = Math.max(0, MAXES.indexOf(e.max));
      const cuts = e.cuts.slice(0, 15);
      out.push(Buffer.concat([u8((e.hd ? 1 : 0) | (e.dd ? 2 : 0) | (m << 2)), u8(cuts.length), ...cuts.map(u16), hex(e.stream)]));
    }
    // A login request with data, a SCSI command with AHS and immediate data, digests fixed.
    const login = Buffer.alloc(BHS_LENGTH);
    login[0] = 0x43;
    login[1] = 0x87;
    const text = encodeTextKeys([['InitiatorName', 'iqn.2026-11.org.xcopyd:fuzz'], ['TargetName', 'iqn.2026-11.org.xcopyd:default']]);
    login.writeUIntBE(text.length, 5, 3);
    const cmd = Buffer.alloc(BHS_LENGTH);
    cmd[0] = 0x01;
    cmd[1] = 0xa0;
    cmd[4] = 1;
    cmd.writeUIntBE(600, 5, 3);
    const ahs = Buffer.from([0, 4, 1, 0, 0, 0, 0, 0]).subarray(0, 4);
    for (const flags of [0, 0x13, 0x17]) {
      out.push(Buffer.concat([u8(flags), u8(2), u16(10), u16(70), login, text, Buffer.alloc(padLength(text.length)), cmd, ahs, Buffer.alloc(600)]));
    }
    return out;
  },
  run(input) {
    const r = new Bytes(input);
    const flags = r.u8();
    const hd = (flags & 1) !== 0;
    const dd = (flags & 2) !== 0;
    const max = MAXES[(flags >> 2) & 3];
    const cuts = Array.from({ length: r.u8() % 16 }, () => r.u16());
    const stream = Buffer.from(r.rest());
    if (flags & 0x10) fixDigests(stream, hd, dd, max);
    const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
    const whole = frame(stream, [], max, hd, dd);
    const split = frame(stream, points, max, hd, dd);
    const bytewise = stream.length <= 2048 ? frame(stream, Array.from({ length: stream.length }, (_, i) => i), max, hd, dd) : split;
    for (const [what, x] of [['whole', whole], ['split', split], ['bytewise', bytewise]] as const) {
      if (x.threw) return `framer (${what}) threw: ${x.threw}`;
      if (x.error?.startsWith('not a')) return `framer (${what}) reported ${x.error}`;
    }
    if (split.error !== whole.error || bytewise.error !== whole.error) return `error depends on segmentation: ${whole.error} / ${split.error} / ${bytewise.error}`;
    const same = (a: string[], b: string[]): boolean => a.length === b.length && a.every((p, i) => p === b[i]);
    if (!same(split.pdus, whole.pdus) || !same(bytewise.pdus, whole.pdus)) return 'PDUs depend on segmentation';
    const bound = BHS_LENGTH + 255 * 4 + 4 + max + 3 + 4;
    if (Math.max(split.maxBuffered, bytewise.maxBuffered) > bound) return `held ${Math.max(split.maxBuffered, bytewise.maxBuffered)} bytes > ${bound}`;
    return null;
  },
};

// ---- text keys and the operational negotiation -----------------------------------------

const KEYS = [...KEY_TABLE.keys()];
const VALUES = ['Yes', 'No', 'None', 'CRC32C', 'CHAP', 'Normal', 'Discovery', '0', '1', '512', '65536', '16777215', '16777216', '0x10', '0b', '0bAA==', '', 'Reject', 'Irrelevant', 'NotUnderstood', 'CRC32C,None', 'None,CRC32C', '99999999999999999999999', 'iqn.2026-11.org.xcopyd:default', 'iqn.2026-11.org.xcopyd:fuzz', '5', 'CHAP,None', '0x0000000000000000000000000000000000'];
const TEXT_DICT = [...KEYS.map((k) => `${k}=`), ...VALUES, 'X-', 'X#', 'CHAP_A=', 'CHAP_N=', 'CHAP_R=0x', 'CHAP_I=', 'CHAP_C=0x', '\0', '=', ','].map((s) => Buffer.from(s));

/** Key=value texts as an initiator may send them, valid or not (encodeTextKeys refuses bad names). */
const rawText = (pairs: ReadonlyArray<readonly [string, string]>): Buffer => Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''));
const pairArb = fc.tuple(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...KEYS) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }), fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 30 }), fc.nat().map(String)));
const textArb = fc.array(pairArb, { maxLength: 10 }).map((p) => rawText(p));

/**
 * Input: flags (bit 0 security stage, bit 1 leading, bit 2 duplicates allowed),
 * accumulator limit (u16), then up to 4 chunks (u16 length, a C bit in the
 * top bit). Each complete text is parsed and, when it parses, negotiated on
 * one state over the rounds. Oracle: a parse error or a LoginError (a login
 * reject) or answers; never a throw; the accumulator within its limit; the
 * negotiated numbers inside RFC 7143's ranges.
 */
export const textKeysTarget: FuzzTarget = {
  name: 'text-keys',
  maxLen: 8 * 1024,
  dict: TEXT_DICT,
  generate: fc.tuple(fc.integer({ min: 0, max: 7 }), fc.array(textArb, { minLength: 1, maxLength: 3 })).map(([f, texts]) =>
    Buffer.concat([u8(f | 2), u16(4096), ...texts.flatMap((t) => [u16(t.length), t])]),
  ),
  seeds() {
    const first = encodeTextKeys([['InitiatorName', 'iqn.2026-11.org.xcopyd:fuzz'], ['TargetName', 'iqn.2026-11.org.xcopyd:default'], ['AuthMethod', 'None']]);
    const op = encodeTextKeys([['HeaderDigest', 'CRC32C,None'], ['DataDigest', 'None'], ['MaxRecvDataSegmentLength', '65536'], ['MaxBurstLength', '262144'], ['FirstBurstLength', '65536'], ['ImmediateData', 'Yes'], ['InitialR2T', 'No'], ['ErrorRecoveryLevel', '0'], ['MaxConnections', '1'], ['DefaultTime2Wait', '2'], ['DefaultTime2Retain', '0'], ['MaxOutstandingR2T', '1'], ['DataPDUInOrder', 'Yes'], ['DataSequenceInOrder', 'Yes'], ['X-foo', 'bar']]);
    const disc = encodeTextKeys([['InitiatorName', 'iqn.2026-11.org.xcopyd:fuzz'], ['SessionType', 'Discovery']]);
    return [
      Buffer.concat([u8(3), u16(8192), u16(first.length), first, u16(op.length), op]),
      Buffer.concat([u8(2), u16(8192), u16(first.length + op.length), first, op]),
      Buffer.concat([u8(2), u16(64), u16(0x8000 | 10), first.subarray(0, 10), u16(first.length - 10), first.subarray(10)]),
      Buffer.concat([u8(2), u16(8192), u16(disc.length), disc]),
    ];
  },
  run(input) {
    const r = new Bytes(input);
    const flags = r.u8();
    const limit = Math.max(16, r.u16());
    const acc = new TextAccumulator(limit);
    const state = createNegotiationState();
    for (let i = 0; i < 4 && r.left > 0; i++) {
      const h = r.u16();
      const chunk = r.take(h & 0x7fff);
      const cont = (h & 0x8000) !== 0;
      parseTextKeys(chunk, { allowDuplicateKeys: (flags & 4) !== 0 });
      const a = acc.push(chunk, cont);
      if (acc.size > limit) return `accumulator holds ${acc.size} > ${limit}`;
      if (a.status !== 'complete') continue;
      const p = parseTextKeys(a.data);
      if (!p.ok) continue;
      const n = negotiateOperational(p.pairs, state, {
        targetLimits: DEFAULT_TARGET_KEY_CONFIG,
        isLeading: (flags & 2) !== 0,
        stage: flags & 1 && i === 0 ? 'security' : 'operational',
        targetExists: (t) => t === 'iqn.2026-11.org.xcopyd:default',
      });
      if (n.error) {
        if (!(n.error.statusClass > 0)) return `LoginError with status class ${n.error.statusClass}`;
        break;
      }
      for (const [k, v] of n.response) if (typeof k !== 'string' || typeof v !== 'string') return 'non-string answer';
      const back = parseTextKeys(encodeTextKeys(n.response));
      if (!back.ok) return `our own answer does not parse: ${back.reason}`;
    }
    if (state.maxBurstLength < 512 || state.firstBurstLength > state.maxBurstLength || state.maxRecvDataSegmentLength > 16777215) {
      return `negotiated out of range: MaxBurstLength ${state.maxBurstLength} FirstBurstLength ${state.firstBurstLength} MaxRecvDataSegmentLength ${state.maxRecvDataSegmentLength}`;
    }
    return null;
  },
};

// ---- login through LoginNegotiator ------------------------------------------------------

const silent = pino({ level: 'silent' });
const T_DEFAULT = 'iqn.2026-11.org.xcopyd:default';
const T_CHAP = 'iqn.2026-11.org.xcopyd:chap';
const T_ACL = 'iqn.2026-11.org.xcopyd:acl';
const INITIATOR = 'iqn.2026-11.org.xcopyd:fuzz';
const ISID = Buffer.from([0x80, 0, 0, 0, 0, 7]);
const noDevice = { attachNexus(): void {} } as unknown as TargetEntry['device'];

interface LoginRun {
  responses: Buffer[];
  dropped: string | null;
  fullFeature: boolean;
}

function loginHarness(cfg: number): { negotiator: LoginNegotiator; out: LoginRun; registry: SessionRegistry } {
  const out: LoginRun = { responses: [], dropped: null, fullFeature: false };
  const chap = { user: 'fuzz', secret: 'fuzzsecret1234', ...(cfg & 1 ? { mutual: { user: 'target', secret: 'mutualsecret12' } } : {}) };
  const targets: TargetEntry[] = [
    { name: T_DEFAULT, portalGroupTag: 1, portals: [], device: noDevice },
    { name: T_CHAP, portalGroupTag: 2, portals: [], device: noDevice, chap },
    {
      name: T_ACL, portalGroupTag: 3, portals: [], device: noDevice,
      acl: { mayLogin: (n: string) => n === INITIATOR, chapFor: () => (cfg & 4 ? chap : undefined) } as unknown as TargetEntry['acl'],
    },
  ];
  const registry = new SessionRegistry();
  const limits = { ...DEFAULT_LIMITS, authFailureDelayMs: 0, maxSessions: cfg & 8 ? 1 : 16, maxSessionsPerInitiator: cfg & 8 ? 1 : 16 };
  const ctx = {
    log: silent,
    limits,
    registry,
    discoveryChap: cfg & 2 ? chap : undefined,
    findTarget: (n: string) => targets.find((t) => t.name.toLowerCase() === n.toLowerCase()),
    targets: () => targets,
    connectionClosed() {},
    sessionEstablished() {},
    dropTargetSessions() {},
    endSession(s: Session) {
      s.closed = true;
      registry.remove(s);
    },
    connectionCount: () => 1,
    loginFailed() {},
  } as unknown as ServerContext;
  let statSN = 0;
  const conn = {
    cid: 0,
    statSN: 0,
    log: silent,
    session: null as Session | null,
    nextStatSN() {
      return { statSN: statSN++, expCmdSN: 0, maxCmdSN: 0 };
    },
    send(h: Buffer, d?: Buffer) {
      out.responses.push(Buffer.concat([h, d ?? Buffer.alloc(0)]));
    },
    drop(why: string) {
      out.dropped = why;
    },
    enterFullFeature() {
      out.fullFeature = true;
    },
  } as unknown as Connection;
  if (cfg & 16) {
    // A live session of the same initiator and ISID: the login reinstates it.
    const old = new Session(registry.allocateTsih(), Buffer.from(ISID), INITIATOR, 'Normal', targets[0], null, {} as never, 1, 16, silent);
    old.connections.add({ cid: 0, shutdown: async () => ctx.endSession(old) });
    registry.add(old);
  }
  return { negotiator: new LoginNegotiator(conn, ctx), out, registry };
}

function loginPdu(flags: number, kv: Array<[string, string]>, o: { tsih?: number; vmin?: number } = {}): Buffer {
  const h = Buffer.alloc(BHS_LENGTH);
  h[0] = 0x43;
  h[1] = flags;
  h[3] = o.vmin ?? 0;
  ISID.copy(h, 8);
  h.writeUInt16BE(o.tsih ?? 0, 14);
  h.writeUInt32BE(1, 16);
  h.writeUInt32BE(1, 24);
  const d = rawText(kv);
  h.writeUIntBE(d.length, 5, 3);
  return Buffer.concat([h, d]);
}

const loginSeq = (cfg: number, pdus: Buffer[]): Buffer => Buffer.concat([u8(cfg), ...pdus.flatMap((p) => [u16(p.length), p])]);

/**
 * Input: a configuration byte (mutual CHAP, discovery CHAP, CHAP through the
 * ACL, session caps of 1, a session to reinstate), then up to 6 login PDUs
 * (u16 length, BHS and data). PDUs go to LoginNegotiator.handle in order, as
 * the connection hands them over (a non-login opcode before full feature
 * phase closes the connection).
 * Oracle: handle never throws; each PDU is answered by one Login Response or
 * the connection is dropped; a non-zero status class always drops; full
 * feature phase is entered only with status 0, T=1 and NSG=3; every answer
 * parses as text keys.
 */
export const loginTarget: FuzzTarget = {
  name: 'login',
  maxLen: 16 * 1024,
  dict: [...TEXT_DICT, Buffer.from([0x43, 0x87]), Buffer.from([0x43, 0x81]), Buffer.from([0x43, 0x01]), ISID],
  generate: fc
    .tuple(fc.integer({ min: 0, max: 31 }), fc.array(fc.tuple(fc.constantFrom(0x87, 0x81, 0x83, 0x01, 0x05, 0x40 | 0x87, 0x07), fc.array(pairArb, { maxLength: 8 })), { minLength: 1, maxLength: 3 }))
    .map(([cfg, pdus]) => loginSeq(cfg, pdus.map(([f, kv], i) => loginPdu(f, i === 0 ? [['InitiatorName', INITIATOR], ['TargetName', T_DEFAULT], ...kv] : kv)))),
  seeds() {
    const first: Array<[string, string]> = [['InitiatorName', INITIATOR], ['SessionType', 'Normal'], ['TargetName', T_DEFAULT]];
    const out = [
      loginSeq(0, [loginPdu(0x87, [...first, ['AuthMethod', 'None'], ['HeaderDigest', 'CRC32C,None'], ['MaxRecvDataSegmentLength', '65536']])]),
      loginSeq(0, [loginPdu(0x81, [...first, ['AuthMethod', 'None']]), loginPdu(0x87, [['MaxBurstLength', '262144'], ['ImmediateData', 'Yes']])]),
      loginSeq(0, [loginPdu(0x81, [['InitiatorName', INITIATOR], ['TargetName', T_CHAP], ['AuthMethod', 'CHAP,None']]), loginPdu(0x01, [['CHAP_A', '5']]), loginPdu(0x81, [['CHAP_N', 'fuzz'], ['CHAP_R', `0x${'00'.repeat(16)}`]])]),
      loginSeq(16, [loginPdu(0x87, [...first, ['AuthMethod', 'None']])]),
      loginSeq(2, [loginPdu(0x87, [['InitiatorName', INITIATOR], ['SessionType', 'Discovery']])]),
      loginSeq(4, [loginPdu(0x81, [['InitiatorName', INITIATOR], ['TargetName', T_ACL], ['AuthMethod', 'CHAP']])]),
      loginSeq(0, [loginPdu(0x41 | 0x86, [...first], { tsih: 5 })]),
      loginSeq(0, [loginPdu(0xc0 | 0x07, first.slice(0, 2)), loginPdu(0x87, [['TargetName', T_DEFAULT]])]),
    ];
    // The socket suite's corpus: whole PDUs with padding.
    for (const pdus of corpus<string[]>('login')) out.push(loginSeq(0, pdus.map((p) => hex(p))));
    return out;
  },
  async run(input) {
    const r = new Bytes(input);
    const cfg = r.u8();
    const { negotiator, out } = loginHarness(cfg);
    for (let i = 0; i < 6 && r.left > 0; i++) {
      const raw = r.take(r.u16());
      if (raw.length < BHS_LENGTH) break; // the framer would wait for more
      const bhs = Buffer.from(raw.subarray(0, BHS_LENGTH));
      const data = Buffer.from(raw.subarray(BHS_LENGTH));
      if (out.fullFeature) break; // a login PDU in full feature phase is the connection's business
      if ((bhs[0] & 0x3f) !== 0x03) break; // non-login PDU before full feature: the connection drops
      const before = out.responses.length;
      try {
        await negotiator.handle({ bhs, ahs: Buffer.alloc(0), data });
      } catch (err) {
        return `LoginNegotiator.handle threw: ${(err as Error)?.stack ?? err}`;
      }
      const got = out.responses.slice(before);
      if (got.length !== 1 && !out.dropped) return `PDU ${i}: ${got.length} responses and no drop`;
      for (const resp of got) {
        if ((resp[0] & 0x3f) !== 0x23) return `PDU ${i}: response opcode ${resp[0].toString(16)}`;
        const cls = resp[36];
        if (cls > 3) return `PDU ${i}: status class ${cls}`;
        if (cls !== 0 && !out.dropped) return `PDU ${i}: status class ${cls} without a drop`;
        const text = resp.subarray(BHS_LENGTH);
        const parsed = text.length ? parseTextKeys(text) : undefined;
        if (parsed && !parsed.ok) return `PDU ${i}: our answer does not parse as text (${parsed.reason}): ${JSON.stringify(text.toString('latin1'))}`;
        if (out.fullFeature && (cls !== 0 || (resp[1] & 0x80) === 0 || (resp[1] & 3) !== 3)) return `PDU ${i}: full feature without T=1 NSG=3 status 0`;
      }
      if (out.dropped) break;
    }
    return null;
  },
};
