/**
 * iSCSI text key=value data (RFC 7143 §6.1, §6.2).
 *
 * Used by Login and Text Request/Response PDUs. The data segment is a run of
 * `key=value` strings, each terminated by a NUL byte. This module only deals
 * with syntax: splitting, length limits, value forms (numbers, binary,
 * booleans, lists). What a key *means* lives in `login-keys.ts`.
 */

/** RFC 7143 §6.1: a key name must not exceed 63 bytes. */
export const MAX_KEY_LENGTH = 63;

/**
 * RFC 7143 §6.1: unless a key says otherwise, a value is at most 255 bytes
 * (not counting the NUL delimiter).
 */
export const MAX_VALUE_LENGTH = 255;

/**
 * Text form limit for large-binary values (CHAP_C, CHAP_R). RFC 7143 §12.1.3
 * caps their *binary* length at 1024 bytes (2 + 2048 characters as hex); we
 * accept up to 8192 characters of text and let the CHAP code check the
 * decoded length.
 */
export const MAX_LARGE_BINARY_TEXT_LENGTH = 8192;

/** Keys whose values are large-binary-values (RFC 7143 §12.1.3). */
const LARGE_VALUE_KEYS: ReadonlySet<string> = new Set(['CHAP_C', 'CHAP_R']);

/** Default cap for text accumulated across PDUs with the C bit set. */
export const DEFAULT_TEXT_LIMIT = 64 * 1024;

/** The reserved answer constants of RFC 7143 §6.2. */
export const REJECT = 'Reject';
export const IRRELEVANT = 'Irrelevant';
export const NOT_UNDERSTOOD = 'NotUnderstood';
export const RESERVED_VALUES: ReadonlySet<string> = new Set([REJECT, IRRELEVANT, NOT_UNDERSTOOD]);

export type TextPair = [key: string, value: string];

export type ParseTextResult =
  | { ok: true; pairs: TextPair[] }
  | { ok: false; reason: string };

export interface ParseTextOptions {
  /**
   * Allow a key to appear more than once (a target's SendTargets answer
   * repeats TargetName/TargetAddress). Off by default: in a request a
   * repeated key is a protocol error (RFC 7143 §6.2).
   */
  allowDuplicateKeys?: boolean;
}

/**
 * RFC 7143 §6.1 key-name: letters, digits, dot, minus, plus, commercial at,
 * underscore; starts with a capital letter. `X#` public extension keys
 * (RFC 7143 §13.5.2) use '#' as their second character.
 */
const KEY_RE = /^(?:[A-Z][A-Za-z0-9.\-+@_]*|X#[A-Za-z0-9.\-+@_]+)$/;

export function isValidKeyName(key: string): boolean {
  return key.length <= MAX_KEY_LENGTH && KEY_RE.test(key);
}

/** Maximum value length in bytes for `key` (RFC 7143 §6.1, §12.1.3). */
export function maxValueLength(key: string): number {
  return LARGE_VALUE_KEYS.has(key) ? MAX_LARGE_BINARY_TEXT_LENGTH : MAX_VALUE_LENGTH;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Split a text data segment into key=value pairs. Tolerates a missing final
 * NUL and trailing padding NULs; anything else malformed is an error (which
 * the caller turns into a Login reject 0200h or a Reject PDU). Never throws.
 */
export function parseTextKeys(data: Uint8Array, options: ParseTextOptions = {}): ParseTextResult {
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  const pairs: TextPair[] = [];
  if (end === 0) return { ok: true, pairs };
  const seen = new Set<string>();
  let start = 0;
  while (start <= end) {
    let nul = data.indexOf(0, start);
    if (nul === -1 || nul > end) nul = end;
    const item = data.subarray(start, nul);
    const index = pairs.length;
    if (item.length === 0) return { ok: false, reason: `empty key=value item at offset ${start}` };
    const eq = item.indexOf(0x3d); // '='
    if (eq === -1) return { ok: false, reason: `item ${index} has no '='` };
    if (eq === 0) return { ok: false, reason: `item ${index} has an empty key` };
    if (eq > MAX_KEY_LENGTH) return { ok: false, reason: `item ${index}: key longer than ${MAX_KEY_LENGTH} bytes` };
    let key: string;
    let value: string;
    try {
      key = utf8.decode(item.subarray(0, eq));
      value = utf8.decode(item.subarray(eq + 1));
    } catch {
      return { ok: false, reason: `item ${index} is not valid UTF-8` };
    }
    if (!KEY_RE.test(key)) return { ok: false, reason: `invalid key name ${JSON.stringify(key)}` };
    const valueBytes = item.length - eq - 1;
    if (valueBytes > maxValueLength(key)) {
      return { ok: false, reason: `value of ${key} is ${valueBytes} bytes, limit ${maxValueLength(key)}` };
    }
    if (!options.allowDuplicateKeys) {
      // RFC 7143 §6.2: a key negotiated/declared twice is a protocol error.
      if (seen.has(key)) return { ok: false, reason: `duplicate key ${key}` };
      seen.add(key);
    }
    pairs.push([key, value]);
    start = nul + 1;
  }
  return { ok: true, pairs };
}

/**
 * Encode pairs as `key=value\0` strings. Throws on a key or value that cannot
 * be represented: that is a bug in the caller, not a peer error.
 */
export function encodeTextKeys(pairs: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of pairs) {
    if (!isValidKeyName(key)) throw new Error(`encodeTextKeys: invalid key name ${JSON.stringify(key)}`);
    if (value.includes('\0')) throw new Error(`encodeTextKeys: value of ${key} contains NUL`);
    const bytes = Buffer.from(`${key}=${value}\0`, 'utf8');
    if (bytes.length - key.length - 2 > maxValueLength(key)) {
      throw new Error(`encodeTextKeys: value of ${key} exceeds ${maxValueLength(key)} bytes`);
    }
    parts.push(bytes);
  }
  return Buffer.concat(parts);
}

export type AccumulateResult =
  | { status: 'partial' }
  | { status: 'complete'; data: Buffer }
  | { status: 'error'; reason: string };

/**
 * Joins the data segments of a Login/Text sequence sent with the C
 * (continue) bit (RFC 7143 §6.3, §11.10.2): a key=value pair may straddle
 * PDUs, so parse only when the last PDU (C=0) has arrived. Chunks are copied
 * because they alias the receive buffer; a single-PDU text is passed through.
 */
export class TextAccumulator {
  private chunks: Buffer[] = [];
  private total = 0;

  constructor(readonly limit: number = DEFAULT_TEXT_LIMIT) {}

  /** Bytes held so far. */
  get size(): number {
    return this.total;
  }

  /**
   * Add one PDU's data segment. `continues` is the PDU's C bit. After
   * `complete` or `error` the accumulator is empty and may be reused.
   */
  push(chunk: Uint8Array, continues: boolean): AccumulateResult {
    if (this.total + chunk.length > this.limit) {
      this.reset();
      return { status: 'error', reason: `text exceeds ${this.limit} bytes` };
    }
    if (!continues && this.chunks.length === 0) {
      return { status: 'complete', data: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) };
    }
    this.chunks.push(Buffer.from(chunk)); // copy: outlives the receive buffer
    this.total += chunk.length;
    if (continues) return { status: 'partial' };
    const data = Buffer.concat(this.chunks, this.total);
    this.reset();
    return { status: 'complete', data };
  }

  reset(): void {
    this.chunks = [];
    this.total = 0;
  }
}

// ---------------------------------------------------------------------------
// Value forms (RFC 7143 §6.1)

const DECIMAL_RE = /^(?:0|[1-9][0-9]*)$/;
const HEX_RE = /^0[xX]([0-9a-fA-F]+)$/;
const BASE64_RE = /^0[bB]([A-Za-z0-9+/]*={0,2})$/;
const MAX_U64 = (1n << 64n) - 1n;

/** Decode an RFC 4648 base64 string strictly (padding optional, alphabet checked). */
function decodeBase64(text: string): Buffer | undefined {
  if (text.length === 0) return undefined;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  if (pad > 0 && text.length % 4 !== 0) return undefined;
  if (pad === 0 && text.length % 4 === 1) return undefined;
  return Buffer.from(text, 'base64');
}

/**
 * numerical-value: decimal-constant, hex-constant (`0x`) or base64-constant
 * (`0b`), unsigned and below 2^64. Returns undefined when malformed.
 */
export function parseNumericValue(text: string): bigint | undefined {
  if (DECIMAL_RE.test(text)) {
    if (text.length > 20) return undefined;
    const value = BigInt(text);
    return value <= MAX_U64 ? value : undefined;
  }
  const bytes = parseBinaryValue(text);
  if (bytes === undefined) return undefined;
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  return value <= MAX_U64 ? value : undefined;
}

export type BoundedNumber =
  | { ok: true; value: number }
  | { ok: false; reason: 'malformed' | 'out-of-range' };

/** A numerical-value that must lie in [min, max]. */
export function parseBoundedNumber(text: string, min: number, max: number): BoundedNumber {
  const value = parseNumericValue(text);
  if (value === undefined) return { ok: false, reason: 'malformed' };
  if (value < BigInt(min) || value > BigInt(max)) return { ok: false, reason: 'out-of-range' };
  return { ok: true, value: Number(value) };
}

/**
 * binary-value in hex (`0x…`, an odd digit count implies a leading zero
 * nibble) or base64 (`0b…`) form. Decimal is not accepted: large-binary
 * values (CHAP_C, CHAP_R) must be hex or base64 (RFC 7143 §6.1).
 */
export function parseBinaryValue(text: string): Buffer | undefined {
  const hex = HEX_RE.exec(text);
  if (hex) {
    const digits = hex[1]!;
    return Buffer.from(digits.length % 2 === 1 ? `0${digits}` : digits, 'hex');
  }
  const b64 = BASE64_RE.exec(text);
  if (b64) return decodeBase64(b64[1]!);
  return undefined;
}

/** Encode bytes as an RFC 7143 hex-constant (`0x…`, lower case). */
export function encodeHexValue(bytes: Uint8Array): string {
  return `0x${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')}`;
}

/** boolean-value: exactly `Yes` or `No`. */
export function parseBooleanValue(text: string): boolean | undefined {
  if (text === 'Yes') return true;
  if (text === 'No') return false;
  return undefined;
}

export function encodeBooleanValue(value: boolean): 'Yes' | 'No' {
  return value ? 'Yes' : 'No';
}

/**
 * text-value (RFC 7143 §6.1): letters, digits, dot, minus, plus, commercial
 * at, underscore, slash, brackets, colon. May be empty.
 */
export function isTextValue(text: string): boolean {
  return /^[A-Za-z0-9.\-+@_/[\]:]*$/.test(text);
}

/**
 * list-of-values: comma-separated, no empty members (RFC 7143 §6.1).
 * Returns undefined for an empty list or an empty member.
 */
export function parseListValue(text: string): string[] | undefined {
  if (text.length === 0) return undefined;
  const items = text.split(',');
  return items.some((item) => item.length === 0) ? undefined : items;
}
