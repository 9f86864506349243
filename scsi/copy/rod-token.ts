/**
 * The 512-byte ROD token (SPC-5 5.17.6.x ROD token format; SBC-4 block device
 * type specific data; reference 2.12). Bytes 0-127 follow the standard's
 * generic layout; the TARGET DEVICE DESCRIPTOR follows at 128; the rest is
 * EXTENDED ROD TOKEN DATA, which the standard leaves to the copy manager:
 *
 *   432-439  creation time (ms since the epoch)
 *   440-443  inactivity timeout (s)
 *   444-447  'XCT1' (this layout)
 *   448-479  256 bits of secure random material (SPC-5: at least 256 bits)
 *   480-511  HMAC-SHA-256 over bytes 0-479, keyed by the copy manager's secret
 *
 * The MAC is the "inexact validation at least as strong as SHA-256" the
 * standard allows: a token with any byte changed fails it and is refused
 * (5/23/05 TOKEN CORRUPT) before anything else in it is believed. The
 * extended data reveals no LBAs.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import * as BL from 'buffer-layout';
import { SenseError } from '../sense';

export const ROD_TOKEN_BYTES = 512;
/** ROD TOKEN LENGTH (n-7). */
export const ROD_TOKEN_LENGTH = 0x01f8;

/** ROD TYPE (SPC-5 table "ROD type codes"; reference 2.12). */
export const RodType = {
  /** Only meaningful in ROD CSCD descriptors. */
  COPY_MANAGER_INTERNAL: 0x0000_0000,
  ACCESS_UPON_REFERENCE: 0x0001_0000,
  PIT_DEFAULT: 0x0080_0000,
  PIT_CHANGE_VULNERABLE: 0x0080_0001,
  PIT_PERSISTENT: 0x0080_0002,
  /** Request only: the manager picks (persistent here) and names it in the token. */
  PIT_ANY: 0x0080_ffff,
  /** SBC-4: the well-known block device zero ROD token (input only). */
  BLOCK_DEVICE_ZERO: 0xffff_0001,
} as const;

/** ROD types POPULATE TOKEN creates (RTV=1 may ask for any of them). */
export const TOKEN_OUT_TYPES: readonly number[] = [
  RodType.ACCESS_UPON_REFERENCE, RodType.PIT_DEFAULT, RodType.PIT_CHANGE_VULNERABLE, RodType.PIT_PERSISTENT,
];

export function isPointInTime(type: number): boolean {
  return type >= RodType.PIT_DEFAULT && type <= RodType.PIT_ANY;
}

const EXT_MAGIC = Buffer.from('XCT1', 'ascii');
const TARGET_DESCRIPTOR_AT = 128;
const EXT_AT = 432;
const RANDOM_AT = 448;
const MAC_AT = 480;
/** Room for the target device designation descriptor (bytes 128-431). */
export const MAX_TARGET_DESCRIPTOR_BYTES = EXT_AT - TARGET_DESCRIPTOR_AT;

interface TokenHead {
  rodType: number;
  reserved4: number;
  length: number;
  id: Buffer;
  creator: Buffer;
  bytesRepresented: Buffer;
  typeSpecific: Buffer;
  logicalBlockLength: number;
  protection: number;
  exponents: number;
  lowestAligned: number;
  reserved104: Buffer;
}

/** Bytes 0-127 (the ROD management token is 0-95). */
const TOKEN_HEAD = BL.struct<TokenHead>([
  BL.u32be('rodType'),
  BL.u16be('reserved4'),
  BL.u16be('length'),
  BL.blob(8, 'id'), // COPY MANAGER ROD TOKEN IDENTIFIER (64 bit)
  BL.blob(32, 'creator'), // CREATOR LOGICAL UNIT DESCRIPTOR: E4h CSCD descriptor
  BL.blob(16, 'bytesRepresented'), // NUMBER OF BYTES REPRESENTED (128 bit)
  BL.blob(32, 'typeSpecific'), // ROD TOKEN TYPE SPECIFIC DATA (reserved for these types)
  // DEVICE TYPE SPECIFIC DATA = READ CAPACITY(16) parameter bytes 8-31 (SBC-4)
  BL.u32be('logicalBlockLength'),
  BL.u8('protection'),
  BL.u8('exponents'),
  BL.u16be('lowestAligned'), // bit 15 LBPME, bit 14 LBPRZ, 13:0 LOWEST ALIGNED LBA
  BL.blob(24, 'reserved104'),
]);

/** What a token says (all of it covered by the MAC). */
export interface RodTokenFields {
  rodType: number;
  id: bigint;
  /** 32-byte E4h CSCD descriptor naming the creating LU. */
  creator: Buffer;
  bytesRepresented: bigint;
  logicalBlockLength: number;
  /** READ CAPACITY(16) byte 13: LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (P_I_EXPONENT 0). */
  physicalBlockExponent: number;
  lbpme: boolean;
  lbprz: boolean;
  /** Designation descriptor of the SCSI target device (association 10b). */
  targetDescriptor: Buffer;
  createdMs: number;
  inactivityTimeoutS: number;
  random: Buffer;
}

/** Encode the E4h Identification Descriptor CSCD for a creator LU (SPC-5 6.6.4.2). */
export function encodeCreatorDescriptor(designator: { codeSet: number; designatorType: number; value: Buffer }, blockLength: number): Buffer {
  const d = Buffer.alloc(32);
  d[0] = 0xe4;
  d[1] = 0x00; // LU ID TYPE 00b, PERIPHERAL DEVICE TYPE 00h
  d[4] = designator.codeSet & 0x0f;
  d[5] = designator.designatorType & 0x0f; // PIV 0, ASSOCIATION 00b (logical unit)
  d[7] = designator.value.length;
  designator.value.copy(d, 8, 0, Math.min(20, designator.value.length));
  d.writeUIntBE(blockLength, 29, 3); // DISK BLOCK LENGTH
  return d;
}

/** SCSI name string designation descriptor of the target device (SPC-5 7.8.6.11): UTF-8, NUL-terminated, 4-byte multiple. */
export function encodeTargetDeviceDescriptor(name: string): Buffer {
  const raw = Buffer.from(name, 'utf8');
  const len = Math.min(MAX_TARGET_DESCRIPTOR_BYTES - 4, Math.ceil((raw.length + 1) / 4) * 4);
  const d = Buffer.alloc(4 + len);
  d[0] = 0x03; // PROTOCOL IDENTIFIER 0, CODE SET 3h UTF-8
  d[1] = 0x20 | 0x08; // PIV 0, ASSOCIATION 10b (SCSI target device), TYPE 8h SCSI name string
  d[3] = len;
  raw.copy(d, 4, 0, Math.min(raw.length, len - 1));
  return d;
}

function mac(secret: Buffer, body: Buffer): Buffer {
  return createHmac('sha256', secret).update(body).digest();
}

/** Build the 512 bytes and seal them with the MAC. */
export function encodeRodToken(f: RodTokenFields, secret: Buffer): Buffer {
  if (f.targetDescriptor.length > MAX_TARGET_DESCRIPTOR_BYTES) throw new RangeError('target device descriptor too long');
  if (f.random.length !== 32) throw new RangeError('a token needs 32 random bytes');
  const t = Buffer.alloc(ROD_TOKEN_BYTES);
  const id = Buffer.alloc(8);
  id.writeBigUInt64BE(f.id);
  const represented = Buffer.alloc(16);
  represented.writeBigUInt64BE(f.bytesRepresented >> 64n, 0);
  represented.writeBigUInt64BE(f.bytesRepresented & 0xffff_ffff_ffff_ffffn, 8);
  TOKEN_HEAD.encode(
    {
      rodType: f.rodType >>> 0,
      reserved4: 0,
      length: ROD_TOKEN_LENGTH,
      id,
      creator: f.creator,
      bytesRepresented: represented,
      typeSpecific: Buffer.alloc(32),
      logicalBlockLength: f.logicalBlockLength,
      protection: 0,
      exponents: f.physicalBlockExponent & 0x0f,
      lowestAligned: (f.lbpme ? 0x8000 : 0) | (f.lbprz ? 0x4000 : 0),
      reserved104: Buffer.alloc(24),
    },
    t,
    0,
  );
  f.targetDescriptor.copy(t, TARGET_DESCRIPTOR_AT);
  t.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(f.createdMs))), EXT_AT);
  t.writeUInt32BE(f.inactivityTimeoutS >>> 0, EXT_AT + 8);
  EXT_MAGIC.copy(t, EXT_AT + 12);
  f.random.copy(t, RANDOM_AT);
  mac(secret, t.subarray(0, MAC_AT)).copy(t, MAC_AT);
  return t;
}

/** Read the fields of a token (no validation). */
export function decodeRodToken(t: Buffer): RodTokenFields {
  const h = TOKEN_HEAD.decode(t, 0);
  const tdLen = 4 + t[TARGET_DESCRIPTOR_AT + 3];
  return {
    rodType: h.rodType,
    id: t.readBigUInt64BE(8),
    creator: Buffer.from(h.creator),
    bytesRepresented: (t.readBigUInt64BE(48) << 64n) | t.readBigUInt64BE(56),
    logicalBlockLength: h.logicalBlockLength,
    physicalBlockExponent: h.exponents & 0x0f,
    lbpme: (h.lowestAligned & 0x8000) !== 0,
    lbprz: (h.lowestAligned & 0x4000) !== 0,
    targetDescriptor: Buffer.from(t.subarray(TARGET_DESCRIPTOR_AT, TARGET_DESCRIPTOR_AT + Math.min(tdLen, MAX_TARGET_DESCRIPTOR_BYTES))),
    createdMs: Number(t.readBigUInt64BE(EXT_AT)),
    inactivityTimeoutS: t.readUInt32BE(EXT_AT + 8),
    random: Buffer.from(t.subarray(RANDOM_AT, RANDOM_AT + 32)),
  };
}

/** The ROD management token (bytes 0-95) REPORT ALL ROD TOKENS returns. */
export function rodManagementToken(t: Buffer): Buffer {
  return Buffer.from(t.subarray(0, 96));
}

/** The creator LU's designator, from the E4h descriptor in bytes 16-47. */
export function creatorDesignator(f: RodTokenFields): { codeSet: number; association: number; designatorType: number; value: Buffer } {
  const c = f.creator;
  return {
    codeSet: c[4] & 0x0f,
    association: (c[5] >> 4) & 0x03,
    designatorType: c[5] & 0x0f,
    value: Buffer.from(c.subarray(8, 8 + Math.min(20, c[7]))),
  };
}

export function isBlockDeviceZeroToken(t: Buffer): boolean {
  return t.length >= 4 && t.readUInt32BE(0) === RodType.BLOCK_DEVICE_ZERO;
}

/**
 * Check a presented token before anything in it is used (reference 2.12,
 * "Validation of a presented token"): ROD TOKEN LENGTH (5/23/0A), ROD TYPE
 * (5/23/01), then the MAC over the whole token (5/23/05). Returns the fields
 * of a token this copy manager sealed. The zero ROD token is not checked here.
 */
export function verifyRodToken(t: Buffer, secret: Buffer): RodTokenFields {
  if (t.length !== ROD_TOKEN_BYTES || t.readUInt16BE(6) !== ROD_TOKEN_LENGTH) throw new SenseError('INVALID_TOKEN_LENGTH');
  const type = t.readUInt32BE(0);
  if (!TOKEN_OUT_TYPES.includes(type)) throw new SenseError('UNSUPPORTED_TOKEN_TYPE');
  const expected = mac(secret, t.subarray(0, MAC_AT));
  if (!timingSafeEqual(expected, t.subarray(MAC_AT, MAC_AT + 32)) || !t.subarray(EXT_AT + 12, EXT_AT + 16).equals(EXT_MAGIC)) {
    throw new SenseError('TOKEN_CORRUPT');
  }
  return decodeRodToken(t);
}
