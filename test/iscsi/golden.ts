/**
 * Loader for the captured iSCSI byte streams in shared/data/golden (see its
 * README.md): libiscsi, qemu-img and the Linux kernel initiator talking to
 * tgtd. Each scenario gives the TCP payload of every connection and
 * direction (`.jsonl`) and the PDU split that Wireshark and the capture
 * tooling agreed on (`.pdus.jsonl`).
 *
 * Trimmed records keep only the first 512 bytes of a long segment plus every
 * PDU header that starts after that; the lost data-segment bytes come back
 * as zeros here, and `known` marks which stream bytes are real.
 */
import * as fs from 'fs';
import * as path from 'path';
import { FramerError, PduFramer } from '../../iscsi/framer';
import { Pdu, padLength } from '../../iscsi/pdu';

const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** The golden folder: `../shared/data/golden` beside the repo, else /work/shared/data/golden. */
export function goldenDir(): string {
  const candidates = [path.resolve(REPO_ROOT, '..', 'shared', 'data', 'golden'), '/work/shared/data/golden'];
  for (const c of candidates) {
    if (fs.existsSync(path.join(c, 'README.md'))) return c;
  }
  throw new Error(`golden vectors not found; looked in ${candidates.join(', ')}`);
}

export type Direction = 'i2t' | 't2i';

/** One line of `NN_name.jsonl`: a TCP segment payload. */
export interface SegmentRecord {
  conn: number;
  dir: Direction;
  hex: string;
  len?: number;
  trimmed?: boolean;
  headers?: { off: number; hex: string }[];
}

/** One line of `NN_name.pdus.jsonl` (fields as the capture tool names them). */
export interface GoldenPduRecord {
  pdu: number;
  conn: number;
  dir: Direction;
  stream_off: number;
  seg: number;
  opcode: string; // "0x23"
  name: string;
  immediate: boolean;
  flags: string; // "0x87"
  TotalAHSLength: number;
  DataSegmentLength: number;
  ITT: string; // "0x340bf324"
  bhs: string; // 96 hex digits
  CmdSN?: number;
  ExpStatSN?: number;
  StatSN?: number;
  ExpCmdSN?: number;
  MaxCmdSN?: number;
  LUN?: string;
  TTT?: string;
  CSG?: number;
  NSG?: number;
  VersionMax?: number;
  VersionMin?: number;
  VersionActive?: number;
  ISID?: string;
  TSIH?: number;
  CID?: number;
  StatusClass?: number;
  StatusDetail?: number;
  Status?: string; // "0x02 CHECK CONDITION"
  Response?: number;
  ExpDataSN?: number;
  BidiResidualCount?: number;
  ResidualCount?: number;
  DataSN?: number;
  BufferOffset?: number;
  R2TSN?: number;
  DesiredDataTransferLength?: number;
  ReasonCode?: number;
  Time2Wait?: number;
  Time2Retain?: number;
  HeaderDigest?: string; // "<wire hex> ok"
  DataDigest?: string;
  keys?: string[];
  [key: string]: unknown;
}

/** One direction of one TCP connection. */
export interface GoldenStream {
  conn: number;
  dir: Direction;
  bytes: Buffer;
  /** 1 where the byte was captured, 0 where a trimmed record lost it. */
  known: Uint8Array;
  trimmed: boolean;
  /** The TCP segment payloads as captured (trimmed ones filled back out to full length). */
  segments: Buffer[];
}

export interface GoldenScenario {
  name: string;
  segments: SegmentRecord[];
  pdus: GoldenPduRecord[];
  /** Keyed by `streamKey(conn, dir)`. */
  streams: Map<string, GoldenStream>;
}

export function streamKey(conn: number, dir: Direction): string {
  return `${conn}:${dir}`;
}

/** Scenario names (`01_libiscsi_discovery`, ...) in file order. */
export function listScenarios(): string[] {
  return fs
    .readdirSync(goldenDir())
    .filter((f) => f.endsWith('.pdus.jsonl'))
    .map((f) => f.slice(0, -'.pdus.jsonl'.length))
    .sort();
}

function readJsonl<T>(file: string): T[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

function segmentBytes(r: SegmentRecord): { bytes: Buffer; known: Uint8Array } {
  const head = Buffer.from(r.hex, 'hex');
  if (!r.trimmed) return { bytes: head, known: new Uint8Array(head.length).fill(1) };
  const len = r.len ?? head.length;
  const bytes = Buffer.alloc(len);
  const known = new Uint8Array(len);
  head.copy(bytes, 0);
  known.fill(1, 0, head.length);
  for (const h of r.headers ?? []) {
    const hb = Buffer.from(h.hex, 'hex');
    // A header may run past its segment; the rest starts the next record.
    const n = Math.min(hb.length, len - h.off);
    hb.copy(bytes, h.off, 0, n);
    known.fill(1, h.off, h.off + n);
  }
  return { bytes, known };
}

const cache = new Map<string, GoldenScenario>();

export function loadScenario(name: string): GoldenScenario {
  const hit = cache.get(name);
  if (hit) return hit;
  const dir = goldenDir();
  const segments = readJsonl<SegmentRecord>(path.join(dir, `${name}.jsonl`));
  const pdus = readJsonl<GoldenPduRecord>(path.join(dir, `${name}.pdus.jsonl`));
  const parts = new Map<string, { conn: number; dir: Direction; segs: Buffer[]; known: Uint8Array[]; trimmed: boolean }>();
  for (const r of segments) {
    const key = streamKey(r.conn, r.dir);
    let p = parts.get(key);
    if (!p) {
      p = { conn: r.conn, dir: r.dir, segs: [], known: [], trimmed: false };
      parts.set(key, p);
    }
    const s = segmentBytes(r);
    p.segs.push(s.bytes);
    p.known.push(s.known);
    if (r.trimmed) p.trimmed = true;
  }
  const streams = new Map<string, GoldenStream>();
  for (const [key, p] of parts) {
    const bytes = Buffer.concat(p.segs);
    const known = new Uint8Array(bytes.length);
    let o = 0;
    for (const k of p.known) {
      known.set(k, o);
      o += k.length;
    }
    streams.set(key, { conn: p.conn, dir: p.dir, bytes, known, trimmed: p.trimmed, segments: p.segs });
  }
  const sc: GoldenScenario = { name, segments, pdus, streams };
  cache.set(name, sc);
  return sc;
}

/** The stream of one connection and direction (throws when absent). */
export function stream(sc: GoldenScenario, conn: number, dir: Direction): GoldenStream {
  const s = sc.streams.get(streamKey(conn, dir));
  if (!s) throw new Error(`${sc.name}: no stream ${streamKey(conn, dir)}`);
  return s;
}

/** The PDUs of one connection and direction, in stream order. */
export function pdusOf(sc: GoldenScenario, conn: number, dir: Direction): GoldenPduRecord[] {
  return sc.pdus.filter((p) => p.conn === conn && p.dir === dir).sort((a, b) => a.stream_off - b.stream_off);
}

/** True when every byte in [start, end) of the stream was captured. */
export function allKnown(s: GoldenStream, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (s.known[i] !== 1) return false;
  return true;
}

/** "0x1a" / "0x02 CHECK CONDITION" -> number. */
export function hexField(v: string | undefined): number {
  if (v === undefined) throw new Error('missing hex field');
  return parseInt(v.split(' ')[0], 16) >>> 0;
}

export function bhsOf(p: GoldenPduRecord): Buffer {
  return Buffer.from(p.bhs, 'hex');
}

/**
 * True when this PDU ends the login phase: a final Login Request or Login
 * Response (T=1, NSG=3 FullFeaturePhase). Digests negotiated at login start
 * with the next PDU in that direction (RFC 7143 §13.8, §11.12.1).
 */
export function endsLogin(bhs: Buffer): boolean {
  const op = bhs[0] & 0x3f;
  return (op === 0x03 || op === 0x23) && (bhs[1] & 0x80) !== 0 && (bhs[1] & 0x03) === 3;
}

/** Connections whose login negotiated HeaderDigest / DataDigest = CRC32C (from the target's answer). */
export function digestsNegotiated(sc: GoldenScenario, conn: number): { header: boolean; data: boolean } {
  let header = false;
  let data = false;
  for (const p of sc.pdus) {
    if (p.conn !== conn || p.name !== 'Login Response' || !p.keys) continue;
    for (const k of p.keys) {
      if (k === 'HeaderDigest=CRC32C') header = true;
      if (k === 'DataDigest=CRC32C') data = true;
    }
  }
  return { header, data };
}

/** Distinct connection numbers of a scenario. */
export function connections(sc: GoldenScenario): number[] {
  return [...new Set(sc.segments.map((s) => s.conn))].sort((a, b) => a - b);
}

/** A PDU as the framer handed it out, with where it sat in the stream. */
export interface FramedPdu {
  /** Stream offset of the BHS. */
  off: number;
  /** Bytes on the wire: BHS, AHS, digests, data, padding. */
  length: number;
  bhs: Buffer;
  ahs: Buffer;
  data: Buffer;
  /** Digest state of the framer when it took this PDU. */
  headerDigest: boolean;
  dataDigest: boolean;
}

export interface FrameRun {
  pdus: FramedPdu[];
  errors: FramerError[];
  /** PDUs handed out after an error was reported (must stay 0). */
  pdusAfterError: number;
  framer: PduFramer;
}

export interface FrameOptions {
  maxDataSegmentLength?: number;
  /** Digests to switch on after the PDU that ends the login phase (as the connection does). */
  digestsAfterLogin?: { header: boolean; data: boolean };
  headerDigest?: boolean;
  dataDigest?: boolean;
}

/** Largest value the 24-bit DataSegmentLength can hold. */
export const MAX_DSL = 0xffffff;

/** Push `chunks` through one PduFramer and collect what it emits. */
export function frameChunks(chunks: Iterable<Buffer>, opts: FrameOptions = {}): FrameRun {
  const pdus: FramedPdu[] = [];
  const errors: FramerError[] = [];
  let off = 0;
  let pdusAfterError = 0;
  const framer: PduFramer = new PduFramer(
    {
      maxDataSegmentLength: opts.maxDataSegmentLength ?? MAX_DSL,
      headerDigest: opts.headerDigest,
      dataDigest: opts.dataDigest,
    },
    (p: Pdu) => {
      if (errors.length > 0) pdusAfterError++;
      const dsl = p.data.length;
      const length =
        48 +
        p.ahs.length +
        (framer.headerDigest ? 4 : 0) +
        (dsl > 0 ? dsl + padLength(dsl) + (framer.dataDigest ? 4 : 0) : 0);
      pdus.push({
        off,
        length,
        bhs: p.bhs,
        ahs: p.ahs,
        data: p.data,
        headerDigest: framer.headerDigest,
        dataDigest: framer.dataDigest,
      });
      off += length;
      if (opts.digestsAfterLogin && endsLogin(p.bhs)) {
        framer.headerDigest = opts.digestsAfterLogin.header;
        framer.dataDigest = opts.digestsAfterLogin.data;
      }
    },
    (e) => errors.push(e),
  );
  for (const c of chunks) framer.push(c);
  return { pdus, errors, pdusAfterError, framer };
}

/** The framer options that reproduce a captured connection (digests from its login). */
export function frameOptionsFor(sc: GoldenScenario, conn: number): FrameOptions {
  const d = digestsNegotiated(sc, conn);
  return { maxDataSegmentLength: MAX_DSL, digestsAfterLogin: d.header || d.data ? d : undefined };
}

/** A comparable summary of framer output (hex of every part, and offsets). */
export function summarize(pdus: FramedPdu[]): string[] {
  return pdus.map(
    (p) => `${p.off}+${p.length} ${p.bhs.toString('hex')} ${p.ahs.toString('hex')} ${p.data.toString('hex')}`,
  );
}
