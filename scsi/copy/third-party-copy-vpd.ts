/**
 * Third-party Copy VPD page 8Fh (SPC-5 7.8.17; reference 2.13). Supported
 * commands come from the command table (83h/84h entries enabled for the LU);
 * every limit comes from limits.ts, the constants the engine enforces.
 * Descriptors in ascending type order, each padded to a multiple of 4.
 * Block Device ROD Limits (0000h), ROD Token Features (0106h) and Supported
 * ROD Token and ROD Types (0108h) appear when the LU enables POPULATE TOKEN.
 */
import * as BL from 'buffer-layout';
import type { CommandContext } from '../command-context';
import type { LogicalUnit } from '../logical-unit';
import {
  DATA_SEGMENT_GRANULARITY_LOG2,
  INLINE_DATA_GRANULARITY_LOG2,
  MAX_CSCD_DESCRIPTORS,
  MAX_DESCRIPTOR_LIST_LENGTH,
  MAX_IDENTIFIED_CONCURRENT_COPIES,
  MAX_INLINE_DATA_LENGTH,
  MAX_SEGMENT_DESCRIPTORS,
  MAX_SEGMENT_LENGTH,
  SUPPORTED_CSCD_IDS,
  TOTAL_CONCURRENT_COPIES,
} from './limits';
import { implementedDescriptorTypes } from './receive-copy-results';
import {
  DEFAULT_INACTIVITY_TIMEOUT_S,
  MAX_BYTES_IN_BLOCK_ROD,
  MAX_INACTIVITY_TIMEOUT_S,
  MAX_RANGE_DESCRIPTORS,
  MAX_TOKEN_LIFETIME_S,
  MIN_TOKEN_LIFETIME_S,
  OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER,
} from './limits';
import { RodType, TOKEN_OUT_TYPES } from './rod-token';

const POPULATE_TOKEN_SA = 0x10;

interface BlockDeviceRodLimits {
  vendor4: Buffer;
  maxRangeDescriptors: number;
  maxInactivityTimeout: number;
  defaultInactivityTimeout: number;
  maxTokenTransferSize: Buffer;
  optimalTransferCount: Buffer;
}

/** 0000h Block Device ROD Limits body (bytes 4..35; SBC-4 6.6.x; reference 2.13). */
const BLOCK_DEVICE_ROD_LIMITS = BL.struct<BlockDeviceRodLimits>([
  BL.blob(6, 'vendor4'),
  BL.u16be('maxRangeDescriptors'),
  BL.u32be('maxInactivityTimeout'),
  BL.u32be('defaultInactivityTimeout'),
  BL.blob(8, 'maxTokenTransferSize'), // logical blocks, 64 bit
  BL.blob(8, 'optimalTransferCount'), // logical blocks, 64 bit
]);

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/**
 * 0000h: what Windows reads into DEVICE_COPY_OFFLOAD_DESCRIPTOR; blocks from MAXIMUM/OPTIMAL
 * BYTES IN BLOCK ROD. `optimalBytes`: the token store's (measured default, limits.ts).
 */
export function encodeBlockDeviceRodLimits(lu: LogicalUnit, optimalBytes = OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER): Buffer {
  const body = Buffer.alloc(BLOCK_DEVICE_ROD_LIMITS.span);
  BLOCK_DEVICE_ROD_LIMITS.encode(
    {
      vendor4: Buffer.alloc(6),
      maxRangeDescriptors: MAX_RANGE_DESCRIPTORS,
      maxInactivityTimeout: MAX_INACTIVITY_TIMEOUT_S,
      defaultInactivityTimeout: DEFAULT_INACTIVITY_TIMEOUT_S,
      maxTokenTransferSize: u64(Math.floor(MAX_BYTES_IN_BLOCK_ROD / lu.blockSize)),
      optimalTransferCount: u64(Math.max(1, Math.floor(optimalBytes / lu.blockSize))),
    },
    body,
    0,
  );
  return descriptor(TpcDescriptorType.BLOCK_DEVICE_ROD_LIMITS, body);
}

/** 0106h ROD Token Features with one block ROD device type specific features descriptor (SPC-5 7.8.17.7). */
export function encodeRodTokenFeatures(lu: LogicalUnit, optimalBytes = OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER): Buffer {
  // SPC-5: OPTIMAL BYTES IN BLOCK ROD TRANSFER matches OPTIMAL TRANSFER COUNT x block size.
  const optimal = BigInt(Math.max(1, Math.floor(optimalBytes / lu.blockSize)) * lu.blockSize);
  const body = Buffer.alloc(44 + 48);
  body[0] = 0x00; // REMOTE TOKENS 0h: tokens of this copy manager only
  body.writeUInt32BE(MIN_TOKEN_LIFETIME_S, 12);
  body.writeUInt32BE(MAX_TOKEN_LIFETIME_S, 16);
  body.writeUInt32BE(MAX_INACTIVITY_TIMEOUT_S, 20);
  body.writeUInt16BE(48, 42); // ROD DEVICE TYPE SPECIFIC FEATURES DESCRIPTORS LENGTH
  const f = body.subarray(44);
  f[0] = 0x00; // DESCRIPTOR FORMAT 000b, PERIPHERAL DEVICE TYPE 00h
  f.writeUInt16BE(0x002c, 2);
  f.writeUInt16BE(Math.max(1, lu.store.physicalBlockSize / lu.blockSize), 6); // OPTIMAL BLOCK ROD LENGTH GRANULARITY
  f.writeBigUInt64BE(BigInt(MAX_BYTES_IN_BLOCK_ROD), 8);
  f.writeBigUInt64BE(optimal, 16);
  f.writeBigUInt64BE(optimal, 24); // OPTIMAL BYTES TO TOKEN PER SEGMENT
  f.writeBigUInt64BE(optimal, 32); // OPTIMAL BYTES FROM TOKEN PER SEGMENT
  return descriptor(TpcDescriptorType.ROD_TOKEN_FEATURES, body);
}

/** 0108h Supported ROD Token and ROD Types: 64-byte descriptors, ascending ROD TYPE. */
export function encodeSupportedRodTypes(): Buffer {
  const types = [...TOKEN_OUT_TYPES.map((t) => ({ t, out: true })), { t: RodType.BLOCK_DEVICE_ZERO, out: false }].sort((a, b) => a.t - b.t);
  const body = Buffer.alloc(4 + 64 * types.length);
  body.writeUInt16BE(64 * types.length, 2);
  types.forEach(({ t, out }, i) => {
    const d = body.subarray(4 + 64 * i);
    d.writeUInt32BE(t >>> 0, 0);
    d[4] = 0x02 | (out ? 0x01 : 0x00); // TOKEN_IN, TOKEN_OUT (ECPY_INT 0: no ROD CSCD descriptors)
  });
  return descriptor(TpcDescriptorType.SUPPORTED_ROD_TYPES, body);
}

export const VPD_THIRD_PARTY_COPY = 0x8f;

export const TpcDescriptorType = {
  BLOCK_DEVICE_ROD_LIMITS: 0x0000,
  SUPPORTED_COMMANDS: 0x0001,
  PARAMETER_DATA: 0x0004,
  SUPPORTED_DESCRIPTORS: 0x0008,
  SUPPORTED_CSCD_IDS: 0x000c,
  ROD_TOKEN_FEATURES: 0x0106,
  SUPPORTED_ROD_TYPES: 0x0108,
  GENERAL_COPY_OPERATIONS: 0x8001,
} as const;

/** Opcodes whose service actions the Supported Commands descriptor lists (third-party copy). */
const TPC_OPCODES = [0x83, 0x84] as const;

/** A descriptor: TYPE, LENGTH (n-3), body padded to a multiple of 4. */
function descriptor(type: number, body: Buffer): Buffer {
  const padded = Math.ceil(body.length / 4) * 4;
  const b = Buffer.alloc(4 + padded);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(padded, 2);
  body.copy(b, 4);
  return b;
}

/** 0001h: [OPCODE, SA LIST LENGTH, SAs ascending] per opcode, from the command table. */
export function encodeSupportedCommands(ctx: CommandContext, lu: LogicalUnit): Buffer {
  const parts: number[] = [];
  for (const opcode of TPC_OPCODES) {
    const sas = ctx.device.table
      .supported(lu)
      .filter((e) => e.opcode === opcode && e.serviceAction !== undefined)
      .map((e) => e.serviceAction!)
      .sort((a, b) => a - b);
    if (sas.length) parts.push(opcode, sas.length, ...sas);
  }
  return descriptor(TpcDescriptorType.SUPPORTED_COMMANDS, Buffer.from([parts.length, ...parts]));
}

interface ParameterData {
  reserved4: number;
  maxCscdCount: number;
  maxSegmentCount: number;
  maxDescriptorListLength: number;
  maxInlineDataLength: number;
  reserved20: Buffer;
}

/** 0004h Parameter Data body (bytes 4..31). */
const PARAMETER_DATA = BL.struct<ParameterData>([
  BL.u32be('reserved4'),
  BL.u16be('maxCscdCount'),
  BL.u16be('maxSegmentCount'),
  BL.u32be('maxDescriptorListLength'),
  BL.u32be('maxInlineDataLength'),
  BL.blob(12, 'reserved20'),
]);

interface GeneralCopyOperations {
  totalConcurrentCopies: number;
  maxIdentifiedConcurrentCopies: number;
  maxSegmentLength: number;
  dataSegmentGranularity: number;
  inlineDataGranularity: number;
  reserved18: Buffer;
}

/** 8001h General Copy Operations body (bytes 4..35). */
const GENERAL_COPY_OPERATIONS = BL.struct<GeneralCopyOperations>([
  BL.u32be('totalConcurrentCopies'),
  BL.u32be('maxIdentifiedConcurrentCopies'),
  BL.u32be('maxSegmentLength'),
  BL.u8('dataSegmentGranularity'),
  BL.u8('inlineDataGranularity'),
  BL.blob(18, 'reserved18'),
]);

export function encodeThirdPartyCopyPage(ctx: CommandContext, lu: LogicalUnit): Buffer {
  const pd = Buffer.alloc(PARAMETER_DATA.span);
  PARAMETER_DATA.encode(
    {
      reserved4: 0,
      maxCscdCount: MAX_CSCD_DESCRIPTORS,
      maxSegmentCount: MAX_SEGMENT_DESCRIPTORS,
      maxDescriptorListLength: MAX_DESCRIPTOR_LIST_LENGTH,
      maxInlineDataLength: MAX_INLINE_DATA_LENGTH,
      reserved20: Buffer.alloc(12),
    },
    pd,
    0,
  );
  const types = implementedDescriptorTypes();
  const ids = Buffer.alloc(2 + 2 * SUPPORTED_CSCD_IDS.length);
  ids.writeUInt16BE(2 * SUPPORTED_CSCD_IDS.length, 0);
  [...SUPPORTED_CSCD_IDS].sort((a, b) => a - b).forEach((id, i) => ids.writeUInt16BE(id, 2 + 2 * i));
  const gco = Buffer.alloc(GENERAL_COPY_OPERATIONS.span);
  GENERAL_COPY_OPERATIONS.encode(
    {
      totalConcurrentCopies: TOTAL_CONCURRENT_COPIES,
      maxIdentifiedConcurrentCopies: MAX_IDENTIFIED_CONCURRENT_COPIES,
      maxSegmentLength: MAX_SEGMENT_LENGTH,
      dataSegmentGranularity: DATA_SEGMENT_GRANULARITY_LOG2,
      inlineDataGranularity: INLINE_DATA_GRANULARITY_LOG2,
      reserved18: Buffer.alloc(18),
    },
    gco,
    0,
  );
  const tokens = ctx.device.table.supported(lu).some((e) => e.opcode === 0x83 && e.serviceAction === POPULATE_TOKEN_SA);
  const optimal = ctx.device.rodTokens?.optimalTransferBytes;
  return Buffer.concat([
    ...(tokens ? [encodeBlockDeviceRodLimits(lu, optimal)] : []),
    encodeSupportedCommands(ctx, lu),
    descriptor(TpcDescriptorType.PARAMETER_DATA, pd),
    descriptor(TpcDescriptorType.SUPPORTED_DESCRIPTORS, Buffer.from([types.length, ...types])),
    descriptor(TpcDescriptorType.SUPPORTED_CSCD_IDS, ids),
    ...(tokens ? [encodeRodTokenFeatures(lu, optimal), encodeSupportedRodTypes()] : []),
    descriptor(TpcDescriptorType.GENERAL_COPY_OPERATIONS, gco),
  ]);
}
