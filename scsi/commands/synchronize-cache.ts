/** SYNCHRONIZE CACHE(10/16) (SBC-4 5.26-5.27) and PRE-FETCH(10/16) (SBC-4 5.9-5.10). */
import type { CommandContext, CommandResult } from '../command-context';
import type { LogicalUnit } from '../logical-unit';

function decodeRange(cdb: Buffer): { lba: bigint; blocks: bigint } {
  return cdb.length === 10
    ? { lba: BigInt(cdb.readUInt32BE(2)), blocks: BigInt(cdb.readUInt16BE(7)) }
    : { lba: cdb.readBigUInt64BE(2), blocks: BigInt(cdb.readUInt32BE(10)) };
}

/** NUMBER OF LOGICAL BLOCKS 0 = from LBA to the end of the medium; the range must fit (5/21/00). */
function checkRange(lu: LogicalUnit, cdb: Buffer): void {
  const { lba, blocks } = decodeRange(cdb);
  lu.checkRange(lba, blocks);
}

export async function executeSynchronizeCache(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  checkRange(lu, ctx.cdb);
  await lu.flush(); // IMMED is honoured by completing only after the flush, which the standard allows
  return {};
}

/** No cache to load: check the range and return GOOD (SBC-4 5.9: GOOD = not all blocks fit the cache). */
export async function executePreFetch(ctx: CommandContext): Promise<CommandResult> {
  checkRange(ctx.lu!, ctx.cdb);
  return {};
}
