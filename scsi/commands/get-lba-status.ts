/**
 * GET LBA STATUS (SBC-4 5.8; reference 4.9), from SEEK_DATA/SEEK_HOLE on the
 * backing store: mapped extents report 0, holes report 1 (deallocated).
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import { storeErrorToSense } from '../mutation';
import { SenseError } from '../sense';

const MAX_DESCRIPTORS = 1024;
const MAX_EXTENT = 0xffffffffn;

export const ProvisioningStatus = { MAPPED: 0, DEALLOCATED: 1, ANCHORED: 2 } as const;

export async function executeGetLbaStatus(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const start = ctx.cdb.readBigUInt64BE(2);
  const allocationLength = ctx.cdb.readUInt32BE(10);
  // SBC-4 5.8.1: STARTING LBA beyond the last LBA -> LBA OUT OF RANGE.
  if (start >= lu.blockCount) throw new SenseError('LBA_OUT_OF_RANGE', { information: start });
  const wanted = Math.max(1, Math.min(MAX_DESCRIPTORS, Math.floor((allocationLength - 8) / 16)));
  const bs = BigInt(lu.blockSize);
  const end = lu.blockCount;
  const descs: Array<[bigint, bigint, number]> = [];
  let lba = start;
  try {
    while (lba < end && descs.length < wanted) {
      const off = Number(lba * bs);
      const data = BigInt(await lu.store.seekData(off));
      let next: bigint;
      let status: number;
      if (data > BigInt(off)) {
        status = ProvisioningStatus.DEALLOCATED;
        next = data / bs; // a hole ends where data starts (filesystem blocks are LBA aligned)
      } else {
        status = ProvisioningStatus.MAPPED;
        const hole = BigInt(await lu.store.seekHole(off));
        next = (hole + bs - 1n) / bs;
      }
      if (next <= lba) next = lba + 1n;
      if (next > end) next = end;
      if (next - lba > MAX_EXTENT) next = lba + MAX_EXTENT;
      descs.push([lba, next - lba, status]);
      lba = next;
    }
  } catch (err) {
    throw storeErrorToSense(err, false);
  }
  const out = Buffer.alloc(8 + 16 * descs.length);
  out.writeUInt32BE(out.length - 4, 0); // PARAMETER DATA LENGTH (n-3)
  descs.forEach(([l, n, s], i) => {
    const o = 8 + 16 * i;
    out.writeBigUInt64BE(l, o);
    out.writeUInt32BE(Number(n), o + 8);
    out[o + 12] = s;
  });
  return allocationLimited(out, allocationLength);
}
