/** READ CAPACITY(10) (SBC-4 5.19) and READ CAPACITY(16) (SBC-4 5.20, reference 4.4). */
import * as BL from 'buffer-layout';
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import { invalidCdbField } from '../sense';
import type { LogicalUnit } from '../logical-unit';

export async function executeReadCapacity10(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  // SBC-4 5.19: PMI=0 with a non-zero LBA field -> INVALID FIELD IN CDB.
  if ((ctx.cdb[8] & 0x01) === 0 && ctx.cdb.readUInt32BE(2) !== 0) throw invalidCdbField(2, 7);
  const last = lu.blockCount - 1n;
  const data = Buffer.alloc(8);
  data.writeUInt32BE(last > 0xfffffffen ? 0xffffffff : Number(last), 0); // FFFF_FFFFh -> use RC16
  data.writeUInt32BE(lu.blockSize, 4);
  return { dataIn: [data], dataInLength: 8 };
}

interface Rc16Fields {
  blockLength: number;
  protection: number;
  exponents: number;
  lbp: number;
  lowestAligned: number;
}

/** Bytes 8..15 of READ CAPACITY(16) parameter data; bytes 0-7 are written as a 64-bit LBA. */
const RC16_TAIL = BL.struct<Rc16Fields>([
  BL.u32be('blockLength'),
  BL.u8('protection'), // RC BASIS, P_TYPE, PROT_EN
  BL.u8('exponents'), // P_I_EXPONENT, LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
  BL.u8('lbp'), // LBPME, LBPRZ, LOWEST ALIGNED LBA (13:8)
  BL.u8('lowestAligned'),
]);

export function encodeReadCapacity16(lu: LogicalUnit, lbpme: boolean): Buffer {
  const data = Buffer.alloc(32);
  data.writeBigUInt64BE(lu.blockCount - 1n, 0);
  RC16_TAIL.encode({
    blockLength: lu.blockSize,
    protection: 0,
    exponents: lu.physicalBlockExponent & 0x0f,
    // LBPRZ: a deallocated (punched) block reads back as zeros.
    lbp: lbpme ? 0xc0 : 0x00,
    lowestAligned: 0,
  }, data, 8);
  return data;
}

export async function executeReadCapacity16(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  // SBC-4 5.20: PMI=0 with a non-zero LBA field -> INVALID FIELD IN CDB.
  if ((ctx.cdb[14] & 0x01) === 0 && ctx.cdb.readBigUInt64BE(2) !== 0n) throw invalidCdbField(2, 7);
  const allocationLength = ctx.cdb.readUInt32BE(10);
  return allocationLimited(encodeReadCapacity16(lu, lu.lbpme && ctx.device.table.provisioningCommandsEnabled(lu)), allocationLength);
}
