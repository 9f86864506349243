/** UNMAP (SBC-4 5.30; reference 4.9): deallocate the ranges of the block descriptors. */
import type { CommandContext, CommandResult } from '../command-context';
import { SenseError, invalidParameterField } from '../sense';

const HEADER = 8;
const DESCRIPTOR = 16;

export async function executeUnmap(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const parameterListLength = ctx.cdb.readUInt16BE(7);
  ctx.dataOutLength = parameterListLength;
  if (parameterListLength === 0) return {}; // SBC-4 5.30.1: not an error, nothing to do
  // SBC-4 5.30.1: a list too short for its header -> PARAMETER LIST LENGTH ERROR.
  if (parameterListLength < HEADER) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  const take = Math.min(parameterListLength, ctx.task.expectedDataTransferLength);
  if (take < HEADER) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  const data = await ctx.dataOut(take);
  const descriptorBytes = Math.min(data.readUInt16BE(2), data.length - HEADER);
  const count = Math.floor(descriptorBytes / DESCRIPTOR);
  if (count > lu.limits.maxUnmapBlockDescriptorCount) throw invalidParameterField(2);
  const ranges: Array<[bigint, bigint]> = [];
  let total = 0n;
  for (let i = 0; i < count; i++) {
    const off = HEADER + i * DESCRIPTOR;
    const lba = data.readBigUInt64BE(off);
    const n = BigInt(data.readUInt32BE(off + 8));
    lu.checkRange(lba, n); // 5/21/00
    total += n;
    ranges.push([lba, n]);
  }
  // Exceeding MAXIMUM UNMAP LBA COUNT -> INVALID FIELD IN PARAMETER LIST.
  if (total > BigInt(lu.limits.maxUnmapLbaCount)) throw invalidParameterField(HEADER + 8);
  const bs = lu.blockSize;
  for (const [lba, n] of ranges) {
    if (n === 0n) continue;
    const m = await lu.mutate(Number(lba) * bs, Number(n) * bs, 'deferred');
    try {
      await m.deallocate(Number(lba) * bs, Number(n) * bs);
    } finally {
      m.release();
    }
  }
  await lu.syncIfWriteThrough(); // one flush for every descriptor
  return {};
}
