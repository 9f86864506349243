/** REPORT LUNS (SPC-5 6.33, reference 4.8). */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import { REPORT_LUNS_WELL_KNOWN_LUN } from '../opcodes';
import { invalidCdbField } from '../sense';

/** SAM-5 4.7: peripheral addressing below 256, flat space up to 16383; well-known LUNs as C1xxh. */
export function encodeLun(lun: number): Buffer {
  const b = Buffer.alloc(8);
  if (lun >= 0xc100 && lun <= 0xc1ff) {
    b.writeUInt16BE(lun, 0); // extended addressing, well-known LUN
  } else if (lun < 256) {
    b[1] = lun;
  } else if (lun < 16384) {
    b[0] = 0x40 | (lun >> 8);
    b[1] = lun & 0xff;
  } else {
    throw new Error(`LUN ${lun} cannot be encoded`);
  }
  return b;
}

export async function executeReportLuns(ctx: CommandContext): Promise<CommandResult> {
  const selectReport = ctx.cdb[2];
  const allocationLength = ctx.cdb.readUInt32BE(6);
  // SPC-5 6.33.1: ALLOCATION LENGTH < 16 -> INVALID FIELD IN CDB.
  if (allocationLength < 16) throw invalidCdbField(6, 7);
  let luns: number[];
  switch (selectReport) {
    case 0x00: luns = ctx.device.lunsFor(ctx.task.nexus); break;
    case 0x01: luns = [REPORT_LUNS_WELL_KNOWN_LUN]; break;
    case 0x02: luns = [...ctx.device.lunsFor(ctx.task.nexus), REPORT_LUNS_WELL_KNOWN_LUN]; break;
    default: throw invalidCdbField(2, 7);
  }
  const data = Buffer.alloc(8 + 8 * luns.length);
  data.writeUInt32BE(8 * luns.length, 0); // LUN LIST LENGTH
  luns.forEach((lun, i) => encodeLun(lun).copy(data, 8 + 8 * i));
  return allocationLimited(data, allocationLength);
}
