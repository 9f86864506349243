/**
 * EXTENDED COPY(LID1) 83h/00h and EXTENDED COPY(LID4) 83h/01h (SPC-5 6.6;
 * reference 2.3-2.5): parameter list decoding with the header checks in the
 * order the reference settles on, then hand-off to the copy manager.
 *
 * Everything found here is an ILLEGAL REQUEST before any data moves. CSCD
 * resolution and segment checks that the standard assigns to segment
 * processing are COPY ABORTED (copy-manager.ts).
 */
import * as BL from 'buffer-layout';
import type { CommandContext, CommandResult } from '../command-context';
import { SenseError, invalidCdbField, invalidParameterField } from '../sense';
import { decodeCscd, type CscdDescriptor } from './cscd';
import { decodeSegment, type SegmentDescriptor } from './segments';
import {
  CscdType,
  MAX_CSCD_DESCRIPTORS,
  MAX_DESCRIPTOR_LIST_LENGTH,
  MAX_INLINE_DATA_LENGTH,
  MAX_SEGMENT_DESCRIPTORS,
  SNLID,
} from './limits';
import { copyManagerOf } from './copy-manager';

export const ExtendedCopySa = { LID1: 0x00, LID4: 0x01 } as const;

/** LIST ID USAGE (header byte 1 bits 4:3; SPC-5 6.6.2 table). */
export const ListIdUsage = {
  /** List ID valid; status, held data and failure details retained. */
  RETAIN: 0,
  /** Reserved. */
  RESERVED: 1,
  /** List ID valid; no held data retained (status and failure details are). */
  NO_HELD_DATA: 2,
  /** No list identifier: LIST IDENTIFIER must be 0, nothing is retained. */
  NONE: 3,
} as const;

export const CSCD_DESCRIPTOR_LENGTH = 32;
export const LID1_HEADER_LENGTH = 16;
export const LID4_HEADER_LENGTH = 48;
/** Largest PARAMETER LIST LENGTH accepted for transfer (header + lists + inline + slack). */
export const MAX_PARAMETER_LIST_LENGTH = LID4_HEADER_LENGTH + MAX_DESCRIPTOR_LIST_LENGTH + MAX_INLINE_DATA_LENGTH + 64 * 1024;

interface Lid1Header {
  listId: number;
  flags: number;
  cscdListLength: number;
  reserved: number;
  segmentListLength: number;
  inlineDataLength: number;
}

/** EXTENDED COPY(LID1) parameter list header (SPC-5 6.6.2; reference 2.4). */
const LID1_HEADER = BL.struct<Lid1Header>([
  BL.u8('listId'),
  BL.u8('flags'),
  BL.u16be('cscdListLength'),
  BL.u32be('reserved'),
  BL.u32be('segmentListLength'),
  BL.u32be('inlineDataLength'),
]);

interface Lid4Header {
  format: number;
  flags: number;
  headerCscdListLength: number;
  reserved4: Buffer;
  immedFlags: number;
  headerCscdType: number;
  reserved17: Buffer;
  listId: number;
  reserved24: Buffer;
  cscdListLength: number;
  segmentListLength: number;
  inlineDataLength: number;
}

/** EXTENDED COPY(LID4) parameter list header (SPC-5 6.6.3; reference 2.5). */
const LID4_HEADER = BL.struct<Lid4Header>([
  BL.u8('format'),
  BL.u8('flags'),
  BL.u16be('headerCscdListLength'),
  BL.blob(11, 'reserved4'),
  BL.u8('immedFlags'),
  BL.u8('headerCscdType'),
  BL.blob(3, 'reserved17'),
  BL.u32be('listId'),
  BL.blob(18, 'reserved24'),
  BL.u16be('cscdListLength'),
  BL.u16be('segmentListLength'),
  BL.u16be('inlineDataLength'),
]);

/** A decoded, structurally valid parameter list. Offsets are into `params`. */
export interface CopyParameterList {
  lid4: boolean;
  listId: number;
  listIdUsage: number;
  priority: number;
  str: boolean;
  /** LID4 byte 15 bit 0: return GOOD once the list is accepted, copy in the background. */
  immed: boolean;
  /** LID4 byte 15 bit 1: return sense with GOOD (COMPLETED, 00/20). */
  gSense: boolean;
  /** Offset of the LIST IDENTIFIER field (field pointers). */
  listIdOffset: number;
  cscds: CscdDescriptor[];
  segments: SegmentDescriptor[];
  inlineDataLength: number;
  /** The parameter data as received (copied; outlives the receive buffer). */
  params: Buffer;
}

/**
 * Decode and check an EXTENDED COPY parameter list. `params` holds exactly the
 * PARAMETER LIST LENGTH bytes. Throws SenseError (ILLEGAL REQUEST) on the
 * first problem, in this order (reference 2.5): header length -> format /
 * LIST ID USAGE -> CSCD list length granularity -> MAXIMUM DESCRIPTOR LIST
 * LENGTH -> CSCD count -> inline length -> lists beyond the parameter list ->
 * segment count -> descriptor types.
 */
export function decodeExtendedCopyParameters(params: Buffer, lid4: boolean): CopyParameterList {
  const headerLength = lid4 ? LID4_HEADER_LENGTH : LID1_HEADER_LENGTH;
  // SPC-5 6.6.1: a parameter list that cannot hold the header.
  if (params.length < headerLength) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  let listId: number;
  let flags: number;
  let cscdListLength: number;
  let segmentListLength: number;
  let inlineDataLength: number;
  let immed = false;
  let gSense = false;
  let listIdOffset: number;
  let cscdListLengthOffset: number;
  if (lid4) {
    const h = LID4_HEADER.decode(params, 0);
    // SPC-5 6.6.3: PARAMETER LIST FORMAT 01h; the header pseudo-CSCD is 0020h bytes of type FFh.
    if (h.format !== 0x01) throw invalidParameterField(0, 7);
    if (h.headerCscdListLength !== 0x0020) throw invalidParameterField(2);
    if (h.headerCscdType !== CscdType.EXTENSION) throw invalidParameterField(16);
    listId = h.listId;
    flags = h.flags;
    cscdListLength = h.cscdListLength;
    segmentListLength = h.segmentListLength;
    inlineDataLength = h.inlineDataLength;
    immed = (h.immedFlags & 0x01) !== 0;
    gSense = (h.immedFlags & 0x02) !== 0;
    listIdOffset = 20;
    cscdListLengthOffset = 42;
  } else {
    const h = LID1_HEADER.decode(params, 0);
    listId = h.listId;
    flags = h.flags;
    cscdListLength = h.cscdListLength;
    segmentListLength = h.segmentListLength;
    inlineDataLength = h.inlineDataLength;
    listIdOffset = 0;
    cscdListLengthOffset = 2;
  }
  const listIdUsage = (flags >> 3) & 0x03;
  // SPC-5 6.6.2 LIST ID USAGE: 01b reserved; 11b needs LIST IDENTIFIER 0 (and SNLID).
  if (listIdUsage === ListIdUsage.RESERVED || (listIdUsage === ListIdUsage.NONE && !SNLID)) throw invalidParameterField(1, 4);
  if (listIdUsage === ListIdUsage.NONE && listId !== 0) throw invalidParameterField(listIdOffset);
  // CSCD descriptors are 32 bytes (extensions are whole 32-byte descriptors too).
  if (cscdListLength % CSCD_DESCRIPTOR_LENGTH !== 0) throw invalidParameterField(cscdListLengthOffset);
  // SPC-5 6.6.1: lists above MAXIMUM DESCRIPTOR LIST LENGTH -> PARAMETER LIST LENGTH ERROR.
  if (cscdListLength + segmentListLength > MAX_DESCRIPTOR_LIST_LENGTH) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  const cscdCount = cscdListLength / CSCD_DESCRIPTOR_LENGTH;
  if (cscdCount > MAX_CSCD_DESCRIPTORS) throw new SenseError('TOO_MANY_TARGET_DESCRIPTORS');
  if (inlineDataLength > MAX_INLINE_DATA_LENGTH) throw new SenseError('INLINE_DATA_LENGTH_EXCEEDED');
  // SPC-5 6.6.1: header + lists + inline data beyond PARAMETER LIST LENGTH.
  if (headerLength + cscdListLength + segmentListLength + inlineDataLength > params.length) {
    throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  }
  const cscds: CscdDescriptor[] = [];
  for (let i = 0; i < cscdCount; i++) cscds.push(decodeCscd(params, headerLength + i * CSCD_DESCRIPTOR_LENGTH, i));
  const segments: SegmentDescriptor[] = [];
  const segStart = headerLength + cscdListLength;
  const segEnd = segStart + segmentListLength;
  for (let off = segStart; off < segEnd; ) {
    if (segments.length >= MAX_SEGMENT_DESCRIPTORS) throw new SenseError('TOO_MANY_SEGMENT_DESCRIPTORS');
    // Every segment descriptor has at least the 4-byte header with its DESCRIPTOR LENGTH.
    if (off + 4 > segEnd) throw invalidParameterField(off);
    const length = 4 + params.readUInt16BE(off + 2);
    if (off + length > segEnd) throw invalidParameterField(off + 2);
    segments.push(decodeSegment(params, off, length, segments.length));
    off += length;
  }
  return {
    lid4,
    listId,
    listIdUsage,
    priority: flags & 0x07,
    str: (flags & 0x20) !== 0,
    immed,
    gSense,
    listIdOffset,
    cscds,
    segments,
    inlineDataLength,
    params,
  };
}

/** EXTENDED COPY(LID1) and (LID4): fetch and decode the list, then run it. */
export async function executeExtendedCopy(ctx: CommandContext): Promise<CommandResult> {
  const lid4 = (ctx.cdb[1] & 0x1f) === ExtendedCopySa.LID4;
  const length = ctx.cdb.readUInt32BE(10);
  ctx.dataOutLength = length;
  // Reference 2.3: PARAMETER LIST LENGTH 0 -> GOOD, no data, no state change.
  if (length === 0) return {};
  // A list longer than any valid one plus slack is refused before it is transferred
  // (a too-long but bounded list is a PARAMETER LIST LENGTH ERROR after decoding).
  if (length > MAX_PARAMETER_LIST_LENGTH) throw invalidCdbField(10);
  if (length > ctx.task.expectedDataTransferLength) throw new SenseError('INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
  const data = await ctx.dataOut(length);
  const params = Buffer.from(data.subarray(0, length));
  const list = decodeExtendedCopyParameters(params, lid4);
  return copyManagerOf(ctx).originate(ctx, list);
}
