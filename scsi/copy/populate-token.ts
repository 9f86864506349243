/**
 * POPULATE TOKEN 83h/10h (SBC-4 5.13; reference 2.11): create a ROD token
 * that stands for the listed ranges of this LU, point in time by default.
 * The token is fetched with RECEIVE ROD TOKEN INFORMATION under the same
 * list identifier on the same I_T nexus. Also the block device range
 * descriptor checks WRITE USING TOKEN shares.
 */
import * as BL from 'buffer-layout';
import type { CommandContext, CommandResult } from '../command-context';
import type { LogicalUnit } from '../logical-unit';
import { SenseError, invalidCdbField, invalidParameterField } from '../sense';
import { copyManagerOf } from './copy-manager';
import {
  DEFAULT_INACTIVITY_TIMEOUT_S,
  MAX_BYTES_IN_BLOCK_ROD,
  MAX_INACTIVITY_TIMEOUT_S,
  MAX_RANGE_DESCRIPTORS,
} from './limits';
import { RodType, TOKEN_OUT_TYPES } from './rod-token';
import type { BlockRange, RodTokenStore } from './token-store';

export const RodTokenSa = { POPULATE_TOKEN: 0x10, WRITE_USING_TOKEN: 0x11 } as const;

export const PT_HEADER_BYTES = 16;
export const RANGE_DESCRIPTOR_BYTES = 16;
/** POPULATE TOKEN DATA LENGTH must be at least 001Eh (header + one descriptor - 2). */
const PT_MIN_DATA_LENGTH = 0x1e;

interface PopulateTokenHeader {
  dataLength: number;
  flags: number;
  reserved3: number;
  inactivityTimeout: number;
  rodType: number;
  reserved12: number;
  rangeDescriptorLength: number;
}

/** POPULATE TOKEN parameter list header (SBC-4 5.13.2). */
const PT_HEADER = BL.struct<PopulateTokenHeader>([
  BL.u16be('dataLength'),
  BL.u8('flags'), // bit 1 RTV, bit 0 IMMED
  BL.u8('reserved3'),
  BL.u32be('inactivityTimeout'),
  BL.u32be('rodType'),
  BL.u16be('reserved12'),
  BL.u16be('rangeDescriptorLength'),
]);

/** Cap on PARAMETER LIST LENGTH before transfer: header + the most descriptors + one slack block. */
export const MAX_PT_PARAMETER_LIST_LENGTH = PT_HEADER_BYTES + RANGE_DESCRIPTOR_BYTES * MAX_RANGE_DESCRIPTORS + 512;

export function rodTokensOf(ctx: CommandContext): RodTokenStore {
  const s = ctx.device.rodTokens;
  if (!s) throw new SenseError('INVALID_COMMAND_OPERATION_CODE');
  return s;
}

/** The SCSI target device name the nexus reached (TARGET DEVICE DESCRIPTOR of tokens). */
export function targetNameOf(ctx: CommandContext): string {
  const port = ctx.task.nexus.targetPortName;
  const at = port.indexOf(',t,');
  return at >= 0 ? port.slice(0, at) : port;
}

/**
 * Block device range descriptors at `at` (reference 2.11 validation table):
 * complete descriptors only (a tail cut by a length is ignored); none -> 5/26/00
 * at the length field; too many -> 5/26/08; beyond capacity -> 5/21/00 with the
 * first bad LBA; two that share an LBA -> 5/26/00 at the second; more than
 * MAXIMUM BYTES IN BLOCK ROD in total -> 5/26/00 at the count that crosses it.
 */
export function decodeRangeDescriptors(params: Buffer, at: number, usable: number, lengthField: number, lu: LogicalUnit): BlockRange[] {
  const count = Math.floor(Math.max(0, usable) / RANGE_DESCRIPTOR_BYTES);
  if (count === 0) throw invalidParameterField(lengthField);
  if (count > MAX_RANGE_DESCRIPTORS) throw new SenseError('TOO_MANY_SEGMENT_DESCRIPTORS');
  const ranges: BlockRange[] = [];
  const capacity = lu.blockCount;
  let total = 0n;
  for (let i = 0; i < count; i++) {
    const off = at + i * RANGE_DESCRIPTOR_BYTES;
    const lba = params.readBigUInt64BE(off);
    const blocks = params.readUInt32BE(off + 8);
    // SBC-4 4.5: beyond the capacity (or wrapping) -> LBA OUT OF RANGE, INFORMATION = first bad LBA.
    if (lba + BigInt(blocks) > capacity) throw new SenseError('LBA_OUT_OF_RANGE', { information: lba > capacity ? lba : capacity });
    ranges.push({ lba, blocks });
    total += BigInt(blocks) * BigInt(lu.blockSize);
    if (total > BigInt(MAX_BYTES_IN_BLOCK_ROD)) throw invalidParameterField(off + 8);
  }
  for (let j = 1; j < count; j++) {
    const b = ranges[j];
    if (b.blocks === 0) continue;
    for (let i = 0; i < j; i++) {
      const a = ranges[i];
      if (a.blocks === 0) continue;
      // Reference 2.11: the same LBA in two descriptors -> INVALID FIELD IN PARAMETER LIST.
      if (a.lba < b.lba + BigInt(b.blocks) && b.lba < a.lba + BigInt(a.blocks)) throw invalidParameterField(at + j * RANGE_DESCRIPTOR_BYTES);
    }
  }
  return ranges;
}

export interface PopulateTokenParameters {
  immed: boolean;
  inactivityS: number;
  rodType: number;
  ranges: BlockRange[];
}

/** Decode and check a POPULATE TOKEN parameter list (everything found here: ILLEGAL REQUEST, nothing created). */
export function decodePopulateToken(params: Buffer, lu: LogicalUnit): PopulateTokenParameters {
  const h = PT_HEADER.decode(params, 0);
  if (h.dataLength < PT_MIN_DATA_LENGTH) throw invalidParameterField(0);
  // SBC-4: INACTIVITY TIMEOUT above MAXIMUM INACTIVITY TIMEOUT -> 5/26/00 at byte 4; 0 = the default.
  if (h.inactivityTimeout > MAX_INACTIVITY_TIMEOUT_S) throw invalidParameterField(4);
  const rtv = (h.flags & 0x02) !== 0;
  // RTV=1: a ROD type this copy manager creates (point in time, or access upon reference) -> else 5/26/00 at byte 8.
  if (rtv && !TOKEN_OUT_TYPES.includes(h.rodType) && h.rodType !== RodType.PIT_ANY) throw invalidParameterField(8);
  const usable = Math.min(h.rangeDescriptorLength, params.length - PT_HEADER_BYTES, h.dataLength + 2 - PT_HEADER_BYTES);
  if (h.rangeDescriptorLength < RANGE_DESCRIPTOR_BYTES) throw invalidParameterField(14);
  const ranges = decodeRangeDescriptors(params, PT_HEADER_BYTES, usable, 14, lu);
  return {
    immed: (h.flags & 0x01) !== 0,
    inactivityS: h.inactivityTimeout === 0 ? DEFAULT_INACTIVITY_TIMEOUT_S : h.inactivityTimeout,
    rodType: rtv ? h.rodType : RodType.PIT_DEFAULT,
    ranges,
  };
}

/** Fetch the Data-Out of an 83h token command, bounded before transfer. */
export async function fetchParameters(ctx: CommandContext, min: number, max: number): Promise<Buffer | undefined> {
  const length = ctx.cdb.readUInt32BE(10);
  ctx.dataOutLength = length;
  // Reference 2.11: PARAMETER LIST LENGTH 0 -> nothing to do, not an error.
  if (length === 0) return undefined;
  if (length < min) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  if (length > max) throw invalidCdbField(10);
  if (length > ctx.task.expectedDataTransferLength) throw new SenseError('INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
  return Buffer.from((await ctx.dataOut(length)).subarray(0, length));
}

export async function executePopulateToken(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const store = rodTokensOf(ctx);
  // PARAMETER LIST LENGTH 1..15 -> PARAMETER LIST LENGTH ERROR (reference 2.11).
  const params = await fetchParameters(ctx, PT_HEADER_BYTES, MAX_PT_PARAMETER_LIST_LENGTH);
  if (!params) return {};
  const pt = decodePopulateToken(params, lu);
  const blocks = pt.ranges.reduce((n, r) => n + r.blocks, 0);
  const listId = ctx.cdb.readUInt32BE(6);
  const targetName = targetNameOf(ctx);
  // Windows' budget (as for WRITE USING TOKEN): a foreground PT ends in time; what its image has
  // not taken by then is kept by copy on write (the token is whole either way).
  const deadline = pt.immed ? Infinity : Date.now() + store.wutDeadlineMs;
  return copyManagerOf(ctx).runTracked(
    ctx,
    { listId, serviceAction: RodTokenSa.POPULATE_TOKEN, immed: pt.immed, totalBytes: blocks * lu.blockSize },
    async (op, log) => {
      const token = await store.create({ lu, ranges: pt.ranges, rodType: pt.rodType, inactivityS: pt.inactivityS, targetName, signal: op.controller.signal, deadline });
      // TRANSFER COUNT: contiguous blocks represented from the start of the first range (all of them).
      op.rod = { blocks, partial: false, token: token.bytes };
      op.bytesTransferred = blocks * lu.blockSize;
      log.debug({ token: token.key, mode: token.mode, blocks }, 'POPULATE TOKEN');
    },
  );
}
