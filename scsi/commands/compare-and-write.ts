/**
 * COMPARE AND WRITE (SBC-4 5.3; reference 4.10) — VMware ATS. The range lock
 * makes read-compare-write atomic against every other write to those LBAs;
 * a store with compareAndWrite (RBD) does the compare and write itself, under
 * the same lock, so it is atomic across nodes too.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { SenseError, invalidCdbField } from '../sense';
import { firstDifference } from './read-write';

export async function executeCompareAndWrite(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const lba = ctx.cdb.readBigUInt64BE(2);
  const nlb = ctx.cdb[13];
  const fua = (ctx.cdb[1] & 0x08) !== 0;
  const bytes = nlb * lu.blockSize;
  ctx.dataOutLength = 2 * bytes;
  // SBC-4 5.3: NLB above MAXIMUM COMPARE AND WRITE LENGTH -> INVALID FIELD IN CDB.
  if (nlb > lu.limits.maxCompareAndWriteLength) throw invalidCdbField(13, 7);
  lu.checkRange(lba, BigInt(nlb));
  // Data-Out must be exactly 2 x NLB blocks (reference 4.10): reject without writing. Checked
  // before NLB 0, so a buffer for 256 blocks (NLB wrapped to 0) is refused, not ignored.
  if (ctx.task.expectedDataTransferLength !== 2 * bytes) throw new SenseError('INVALID_FIELD_IN_CDB');
  if (nlb === 0) return {}; // not an error; nothing compared or written
  const data = await ctx.dataOut(2 * bytes);
  const verify = data.subarray(0, bytes);
  const write = data.subarray(bytes);
  const offset = Number(lba) * lu.blockSize;
  const m = await lu.mutate(offset, bytes, fua ? 'fua' : 'auto');
  try {
    if (lu.store.compareAndWrite && bytes <= (lu.store.compareAndWriteMaxBytes ?? Infinity)) {
      // The store compares and writes in one operation (RBD: in the OSD, atomic across nodes).
      const miss = await m.move(offset, bytes, (store) => store.compareAndWrite!(offset, verify, write, { fua }));
      if (miss !== null) throw new SenseError('MISCOMPARE', { information: miss });
      await m.commit();
      return {};
    }
    const current = await lu.readBlocks(lba, nlb);
    if (!current.equals(verify)) {
      // INFORMATION = offset of the first differing byte from the start of the Data-Out buffer.
      throw new SenseError('MISCOMPARE', { information: firstDifference(verify, current) });
    }
    await m.write(offset, write);
    await m.commit();
  } finally {
    m.release();
  }
  return {};
}
