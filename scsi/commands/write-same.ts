/**
 * WRITE SAME(10/16) (SBC-4 5.48, 5.50; reference 4.9): one block of Data-Out
 * (or zeros with NDOB) written over a range; with UNMAP=1 the range is
 * deallocated instead (LBPRZ=1: it reads back as zeros).
 */
import type { CommandContext, CommandResult } from '../command-context';
import { invalidCdbField, SenseError } from '../sense';

const CHUNK_BYTES = 1024 * 1024;

export function decodeWriteSame(cdb: Buffer): { lba: bigint; blocks: number; unmap: boolean; ndob: boolean; lengthOffset: number } {
  const unmap = (cdb[1] & 0x08) !== 0;
  if (cdb.length === 10) return { lba: BigInt(cdb.readUInt32BE(2)), blocks: cdb.readUInt16BE(7), unmap, ndob: false, lengthOffset: 7 };
  return { lba: cdb.readBigUInt64BE(2), blocks: cdb.readUInt32BE(10), unmap, ndob: (cdb[1] & 0x01) !== 0, lengthOffset: 10 };
}

export async function executeWriteSame(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const d = decodeWriteSame(ctx.cdb);
  lu.checkRange(d.lba, BigInt(d.blocks));
  // WSNZ=0: NUMBER OF LOGICAL BLOCKS 0 = to the end of the medium (SBC-4 5.48).
  const blocks = d.blocks === 0 ? lu.blockCount - d.lba : BigInt(d.blocks);
  if (blocks > BigInt(lu.limits.maxWriteSameLength)) throw invalidCdbField(d.lengthOffset, 7);
  // UNMAP=1 when the LU cannot deallocate (LBPWS/LBPWS10 = 0) -> INVALID FIELD IN CDB.
  if (d.unmap && !ctx.device.table.provisioning(lu)[ctx.cdb.length === 10 ? 'lbpws10' : 'lbpws']) throw invalidCdbField(1, 3);
  let block: Buffer;
  if (d.ndob) {
    ctx.dataOutLength = 0;
    block = Buffer.alloc(lu.blockSize);
  } else {
    ctx.dataOutLength = lu.blockSize;
    // Data-Out must be exactly one block (reference 4.10 rule for CAW, applied alike).
    if (ctx.task.expectedDataTransferLength !== lu.blockSize) throw new SenseError('INVALID_FIELD_IN_CDB');
    block = await ctx.dataOut(lu.blockSize);
  }
  if (blocks === 0n) return {};
  const bs = lu.blockSize;
  const m = await lu.mutate(Number(d.lba) * bs, Number(blocks) * bs, 'auto');
  try {
    // UNMAP=1 deallocates whatever the Data-Out block holds, as LIO and tgtd do (libiscsi
    // WriteSame10.UnmapUntilEnd expects zeros back with LBPRZ=1 after 0xFF data).
    if (d.unmap) {
      await m.deallocate(Number(d.lba) * bs, Number(blocks) * bs);
    } else {
      const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / bs));
      const chunk = Buffer.alloc(Math.min(perChunk, Number(blocks)) * bs);
      for (let off = 0; off < chunk.length; off += bs) block.copy(chunk, off);
      let lba = Number(d.lba);
      let left = Number(blocks);
      while (left > 0) {
        if (ctx.signal.aborted) return {};
        const n = Math.min(left, perChunk);
        await m.write(lba * bs, n * bs === chunk.length ? chunk : chunk.subarray(0, n * bs));
        lba += n;
        left -= n;
      }
    }
    await m.commit();
  } finally {
    m.release();
  }
  return {};
}
