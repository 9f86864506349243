/**
 * READ(6/10/12/16), WRITE(6/10/12/16), WRITE AND VERIFY(10/12/16) and
 * VERIFY(10/12/16) (SBC-4 5.12-5.16, 5.31-5.36, 5.41-5.46; reference 4.5).
 */
import type { CommandContext, CommandResult } from '../command-context';
import type { LogicalUnit } from '../logical-unit';
import { SenseError, invalidCdbField } from '../sense';

/** The fields READ/WRITE/VERIFY CDBs share, whatever their length. */
export interface RwCdb {
  lba: bigint;
  /** TRANSFER / VERIFICATION LENGTH in blocks, as encoded (READ(6)/WRITE(6) 0 not yet mapped). */
  blocks: number;
  /** Offset of the transfer length field, for field pointers. */
  lengthOffset: number;
  dpo: boolean;
  fua: boolean;
  /** BYTCHK, byte 1 bits 2:1 (VERIFY, WRITE AND VERIFY). */
  bytchk: number;
}

export function decodeRwCdb(cdb: Buffer): RwCdb {
  let lba: bigint;
  let blocks: number;
  let lengthOffset: number;
  switch (cdb.length) {
    case 6: // 1 bits 4:0 LBA(20:16), 2-3 LBA, 4 TRANSFER LENGTH
      lba = BigInt(((cdb[1] & 0x1f) << 16) | cdb.readUInt16BE(2));
      blocks = cdb[4];
      lengthOffset = 4;
      break;
    case 10: // 2-5 LBA, 7-8 TRANSFER LENGTH
      lba = BigInt(cdb.readUInt32BE(2));
      blocks = cdb.readUInt16BE(7);
      lengthOffset = 7;
      break;
    case 12: // 2-5 LBA, 6-9 TRANSFER LENGTH
      lba = BigInt(cdb.readUInt32BE(2));
      blocks = cdb.readUInt32BE(6);
      lengthOffset = 6;
      break;
    case 16: // 2-9 LBA, 10-13 TRANSFER LENGTH
      lba = cdb.readBigUInt64BE(2);
      blocks = cdb.readUInt32BE(10);
      lengthOffset = 10;
      break;
    default:
      throw new Error(`decodeRwCdb: CDB length ${cdb.length}`);
  }
  const flags = cdb.length === 6 ? 0 : cdb[1];
  // One literal, one shape: spreading a shared part into each case cost ~5 us per command in V8.
  return { lba, blocks, lengthOffset, dpo: (flags & 0x10) !== 0, fua: (flags & 0x08) !== 0, bytchk: (flags >> 1) & 0x03 };
}

/**
 * Decode and check LBA range and length limits common to all of them.
 * SBC-4 4.5: LBA + length > capacity -> LBA OUT OF RANGE (also for length 0).
 * SBC-4 6.6.4: length > MAXIMUM TRANSFER LENGTH -> INVALID FIELD IN CDB.
 */
function decodeChecked(ctx: CommandContext, lu: LogicalUnit): RwCdb {
  const d = decodeRwCdb(ctx.cdb);
  // SBC-4 5.13/5.44: READ(6)/WRITE(6) TRANSFER LENGTH 0 means 256 blocks.
  if (ctx.cdb.length === 6 && d.blocks === 0) d.blocks = 256;
  lu.checkRange(d.lba, BigInt(d.blocks));
  if (d.blocks > lu.limits.maxTransferLength) throw invalidCdbField(d.lengthOffset, 7);
  return d;
}

/**
 * Fetch the Data-Out for `spdtl` bytes (the length the CDB implies).
 * EDTL >= SPDTL: take SPDTL (underflow; the transport reports the residual).
 * EDTL < SPDTL (overflow, FCP-4 9.4.2 / RFC 7143 11.4.5.2): process only the
 * whole blocks EDTL covers; if EDTL is not a whole number of blocks, transfer
 * nothing and fail with INVALID FIELD IN COMMAND INFORMATION UNIT. Both are
 * what libiscsi's write/write-and-verify residual tests accept.
 */
export async function fetchBlocks(ctx: CommandContext, lu: LogicalUnit, spdtl: number): Promise<Buffer> {
  ctx.dataOutLength = spdtl;
  const edtl = ctx.task.expectedDataTransferLength;
  let want = spdtl;
  if (edtl < spdtl) {
    if (edtl % lu.blockSize !== 0) throw new SenseError('INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
    want = edtl;
  }
  if (want === 0) return Buffer.alloc(0);
  const data = await ctx.dataOut(want);
  if (data.length !== want) throw new Error(`data mover returned ${data.length} of ${want} bytes`);
  return data;
}

export async function executeRead(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const d = decodeChecked(ctx, lu);
  if (d.blocks === 0) return {}; // SBC-4 5.14: 0 = no transfer, not an error
  const bytes = d.blocks * lu.blockSize;
  const edtl = ctx.task.expectedDataTransferLength;
  // Read only what the initiator's buffer can take; report the full length for the overflow residual.
  const sendBytes = Math.min(bytes, edtl);
  const readBlocks = Math.ceil(sendBytes / lu.blockSize);
  const data = readBlocks > 0 ? await lu.readBlocks(d.lba, readBlocks) : Buffer.alloc(0);
  return { dataIn: sendBytes > 0 ? [data.subarray(0, sendBytes)] : [], dataInLength: bytes };
}

async function writeCommon(ctx: CommandContext, durable: boolean): Promise<CommandResult> {
  const lu = ctx.lu!;
  const d = decodeChecked(ctx, lu);
  const data = await fetchBlocks(ctx, lu, d.blocks * lu.blockSize);
  if (data.length === 0) return {};
  await lu.writeBlocks(d.lba, data, durable || d.fua); // SBC-4 5.40: FUA -> durable before GOOD; DPO is a hint
  return {};
}

export async function executeWrite(ctx: CommandContext): Promise<CommandResult> {
  return writeCommon(ctx, false);
}

/** WRITE AND VERIFY: BYTCHK 00b/01b only (SBC-4 5.46); written durably so the verify is against the medium. */
export async function executeWriteAndVerify(ctx: CommandContext): Promise<CommandResult> {
  const bytchk = (ctx.cdb[1] >> 1) & 0x03;
  if (bytchk > 1) throw invalidCdbField(1, 2);
  return writeCommon(ctx, true);
}

/**
 * VERIFY (SBC-4 5.31): BYTCHK 00b medium verification only; 01b compare with
 * Data-Out; 11b compare every block with one Data-Out block; 10b reserved.
 * Mismatch -> MISCOMPARE DURING VERIFY OPERATION, INFORMATION = byte offset of
 * the first differing byte in the Data-Out buffer.
 */
export async function executeVerify(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const bytchk = (ctx.cdb[1] >> 1) & 0x03;
  if (bytchk === 2) throw invalidCdbField(1, 2);
  const d = decodeChecked(ctx, lu);
  if (bytchk === 0) {
    ctx.dataOutLength = 0;
    if (d.blocks > 0) await lu.readBlocks(d.lba, d.blocks);
    return {};
  }
  if (d.blocks === 0) {
    ctx.dataOutLength = 0;
    return {};
  }
  const bs = lu.blockSize;
  const data = await fetchBlocks(ctx, lu, bytchk === 1 ? d.blocks * bs : bs);
  if (data.length === 0) return {};
  const blocks = bytchk === 1 ? data.length / bs : d.blocks;
  const medium = await lu.readBlocks(d.lba, blocks);
  for (let b = 0; b < blocks; b++) {
    const expected = bytchk === 1 ? data.subarray(b * bs, (b + 1) * bs) : data;
    const actual = medium.subarray(b * bs, (b + 1) * bs);
    if (!expected.equals(actual)) {
      const at = firstDifference(expected, actual);
      throw new SenseError('MISCOMPARE', { information: (bytchk === 1 ? b * bs : 0) + at });
    }
  }
  return {};
}

export function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}
