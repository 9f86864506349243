/**
 * Third-party Copy VPD page 8Fh (SPC-5 7.8.17; reference 2.13). Supported
 * commands come from the command table (83h/84h entries enabled for the LU);
 * every limit comes from limits.ts, the constants the engine enforces.
 * Descriptors in ascending type order, each padded to a multiple of 4.
 * (Block Device ROD Limits 0000h belongs to POPULATE TOKEN / WRITE USING TOKEN.)
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

export const VPD_THIRD_PARTY_COPY = 0x8f;

export const TpcDescriptorType = {
  SUPPORTED_COMMANDS: 0x0001,
  PARAMETER_DATA: 0x0004,
  SUPPORTED_DESCRIPTORS: 0x0008,
  SUPPORTED_CSCD_IDS: 0x000c,
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
  return Buffer.concat([
    encodeSupportedCommands(ctx, lu),
    descriptor(TpcDescriptorType.PARAMETER_DATA, pd),
    descriptor(TpcDescriptorType.SUPPORTED_DESCRIPTORS, Buffer.from([types.length, ...types])),
    descriptor(TpcDescriptorType.SUPPORTED_CSCD_IDS, ids),
    descriptor(TpcDescriptorType.GENERAL_COPY_OPERATIONS, gco),
  ]);
}
