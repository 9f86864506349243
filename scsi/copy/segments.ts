/**
 * Segment descriptors (SPC-5 6.6.5; reference 2.7): 02h block -> block, 07h
 * verify CSCD, 0Ah block with byte offset -> block with byte offset. Decoding
 * checks the structure (ILLEGAL REQUEST before anything moves); `planSegment`
 * turns a decoded segment and its resolved CSCDs into byte ranges and finds
 * the errors the standard assigns to segment processing (COPY ABORTED).
 */
import { SenseError, invalidParameterField } from '../sense';
import type { LogicalUnit } from '../logical-unit';
import { SegmentType } from './limits';

interface SegmentBase {
  /** Segment number (0-based, list order): CSI of COPY ABORTED sense. */
  index: number;
  /** Byte offset of the descriptor in the parameter list. */
  offset: number;
  type: number;
  /** Byte 1 bit 1: NUMBER OF BLOCKS counts destination blocks. */
  dc: boolean;
  /** Byte 1 bit 0: residue carried to the next segment. */
  cat: boolean;
  sourceId: number;
}

export interface BlockToBlockSegment extends SegmentBase {
  type: typeof SegmentType.BLOCK_TO_BLOCK;
  destinationId: number;
  blocks: number;
  sourceLba: bigint;
  destinationLba: bigint;
}

export interface ByteOffsetSegment extends SegmentBase {
  type: typeof SegmentType.BLOCK_TO_BLOCK_BYTE_OFFSET;
  destinationId: number;
  bytes: number;
  sourceLba: bigint;
  destinationLba: bigint;
  sourceByteOffset: number;
  destinationByteOffset: number;
}

export interface VerifySegment extends SegmentBase {
  type: typeof SegmentType.VERIFY_CSCD;
  /** Byte 8 bit 0: send TEST UNIT READY. */
  tur: boolean;
}

export type SegmentDescriptor = BlockToBlockSegment | ByteOffsetSegment | VerifySegment;

/** DESCRIPTOR LENGTH (bytes 2-3) each implemented type must carry. */
export const SEGMENT_DESCRIPTOR_LENGTH: Readonly<Record<number, number>> = {
  [SegmentType.BLOCK_TO_BLOCK]: 0x18,
  [SegmentType.VERIFY_CSCD]: 0x08,
  [SegmentType.BLOCK_TO_BLOCK_BYTE_OFFSET]: 0x1c,
};

/**
 * Decode one segment descriptor of `length` bytes (4 + DESCRIPTOR LENGTH) at
 * `offset`. Unknown type -> 5/26/09; a DESCRIPTOR LENGTH the type does not
 * have -> 5/26/00 pointing at it.
 */
export function decodeSegment(params: Buffer, offset: number, length: number, index: number): SegmentDescriptor {
  const type = params[offset];
  const expected = SEGMENT_DESCRIPTOR_LENGTH[type];
  if (expected === undefined) {
    throw new SenseError('UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE', { field: { byte: offset, bit: 7, cd: false } });
  }
  if (length - 4 !== expected) throw invalidParameterField(offset + 2);
  const base = {
    index,
    offset,
    dc: (params[offset + 1] & 0x02) !== 0,
    cat: (params[offset + 1] & 0x01) !== 0,
    sourceId: params.readUInt16BE(offset + 4),
  };
  switch (type) {
    case SegmentType.BLOCK_TO_BLOCK:
      return {
        ...base,
        type,
        destinationId: params.readUInt16BE(offset + 6),
        blocks: params.readUInt16BE(offset + 10),
        sourceLba: params.readBigUInt64BE(offset + 12),
        destinationLba: params.readBigUInt64BE(offset + 20),
      };
    case SegmentType.BLOCK_TO_BLOCK_BYTE_OFFSET:
      return {
        ...base,
        type,
        destinationId: params.readUInt16BE(offset + 6),
        bytes: params.readUInt32BE(offset + 8),
        sourceLba: params.readBigUInt64BE(offset + 12),
        destinationLba: params.readBigUInt64BE(offset + 20),
        sourceByteOffset: params.readUInt16BE(offset + 28),
        destinationByteOffset: params.readUInt16BE(offset + 30),
      };
    default:
      return { ...base, type: SegmentType.VERIFY_CSCD, tur: (params[offset + 8] & 0x01) !== 0 };
  }
}

/** One side of a resolved segment: the LU and how its CSCD descriptor describes it. */
export interface SegmentEnd {
  lu: LogicalUnit;
  /** Block size the copy uses (the LU's; a CSCD DISK BLOCK LENGTH must agree). */
  blockSize: number;
  /** PAD bit of the CSCD descriptor (false for FFFFh). */
  pad: boolean;
}

/** The bytes a data-moving segment reads and writes. */
export interface SegmentPlan {
  /** Byte offsets into the backing stores. */
  sourceOffset: number;
  destinationOffset: number;
  /** Bytes read from the source and written to the destination (before padding). */
  bytes: number;
  /** Zero bytes written after `bytes` to fill the last destination block (PAD=1). */
  padBytes: number;
  /** Whole blocks touched, for the range checks of the internal READ/WRITE. */
  sourceLba: bigint;
  sourceBlocks: bigint;
  destinationLba: bigint;
  destinationBlocks: bigint;
}

/** A segment-processing error (COPY ABORTED) with a pointer into the segment descriptor (SD=1). */
export function segmentFieldError(reason: 'COPY_INVALID_FIELD_IN_PARAMETER_LIST' | 'COPY_UNEXPECTED_INEXACT_SEGMENT' | 'COPY_ABORTED', seg: SegmentDescriptor, byte: number): SenseError {
  return new SenseError(reason, { field: { byte, cd: false, sd: true }, commandSpecific: seg.index });
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

/**
 * Byte ranges of a 02h or 0Ah segment (SPC-5 6.6.5.5, 6.6.5.9). Different
 * block sizes are fine wherever the bytes line up; a residue that does not
 * fill a destination block needs PAD=1 on the destination CSCD (zeros fill
 * the block), and CAT=1 is refused as inexact (reference 2.7).
 * Ranges beyond capacity are COPY ABORTED, pointing at the LBA field.
 */
export function planSegment(seg: BlockToBlockSegment | ByteOffsetSegment, src: SegmentEnd, dst: SegmentEnd): SegmentPlan {
  const sbs = BigInt(src.blockSize);
  const dbs = BigInt(dst.blockSize);
  let bytes: bigint;
  let srcStart: bigint;
  let dstStart: bigint;
  let padBytes = 0n;
  if (seg.type === SegmentType.BLOCK_TO_BLOCK) {
    bytes = BigInt(seg.blocks) * (seg.dc ? dbs : sbs);
    srcStart = seg.sourceLba * sbs;
    dstStart = seg.destinationLba * dbs;
    const dstResidue = bytes % dbs;
    const srcResidue = bytes % sbs;
    if (dstResidue !== 0n) {
      // A partial destination block: PAD=1 (and CAT=0) fills it with zeros; anything else is inexact.
      if (!dst.pad || seg.cat) throw segmentFieldError('COPY_UNEXPECTED_INEXACT_SEGMENT', seg, 10);
      padBytes = dbs - dstResidue;
    }
    if (srcResidue !== 0n && !src.pad) throw segmentFieldError('COPY_UNEXPECTED_INEXACT_SEGMENT', seg, 10);
  } else {
    if (seg.sourceByteOffset >= src.blockSize) throw segmentFieldError('COPY_INVALID_FIELD_IN_PARAMETER_LIST', seg, 28);
    if (seg.destinationByteOffset >= dst.blockSize) throw segmentFieldError('COPY_INVALID_FIELD_IN_PARAMETER_LIST', seg, 30);
    bytes = BigInt(seg.bytes);
    srcStart = seg.sourceLba * sbs + BigInt(seg.sourceByteOffset);
    dstStart = seg.destinationLba * dbs + BigInt(seg.destinationByteOffset);
  }
  const srcBlocks = ceilDiv(srcStart + bytes, sbs) - srcStart / sbs;
  const dstBlocks = ceilDiv(dstStart + bytes + padBytes, dbs) - dstStart / dbs;
  // Range checks of the internal READ/WRITE, as SBC-4 4.5 does for host I/O.
  if (seg.sourceLba + srcBlocks > src.lu.blockCount) throw segmentFieldError('COPY_ABORTED', seg, 12);
  if (seg.destinationLba + dstBlocks > dst.lu.blockCount) throw segmentFieldError('COPY_ABORTED', seg, 20);
  return {
    sourceOffset: Number(srcStart),
    destinationOffset: Number(dstStart),
    bytes: Number(bytes),
    padBytes: Number(padBytes),
    sourceLba: seg.sourceLba,
    sourceBlocks: srcBlocks,
    destinationLba: seg.destinationLba,
    destinationBlocks: dstBlocks,
  };
}
