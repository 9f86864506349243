/**
 * REPORT SUPPORTED OPERATION CODES (SPC-5 6.35; reference 4.11), generated
 * from the command table: what the table says is what is reported.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import type { CommandEntry } from '../command-table';
import { invalidCdbField } from '../sense';

export const ReportingOptions = { ALL: 0, OPCODE: 1, OPCODE_SA: 2, OPCODE_MAYBE_SA: 3 } as const;

/** Command timeouts descriptor (SPC-5 6.35.4), 12 bytes. */
export function encodeTimeoutsDescriptor(e: CommandEntry): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0x000a, 0); // DESCRIPTOR LENGTH
  b.writeUInt32BE(e.timeouts.nominal, 4);
  b.writeUInt32BE(e.timeouts.recommended, 8);
  return b;
}

/** Command descriptor of the all-commands format (SPC-5 6.35.2). */
function commandDescriptor(e: CommandEntry, rctd: boolean): Buffer {
  const b = Buffer.alloc(8);
  b[0] = e.opcode;
  b.writeUInt16BE(e.serviceAction ?? 0, 2);
  b[5] = (rctd ? 0x02 : 0) | (e.serviceAction !== undefined ? 0x01 : 0); // CTDP, SERVACTV
  b.writeUInt16BE(e.cdbLength, 6);
  return rctd ? Buffer.concat([b, encodeTimeoutsDescriptor(e)]) : b;
}

/** One-command format (SPC-5 6.35.3). SUPPORT 011b = supported, 001b = not supported. */
function oneCommand(e: CommandEntry | undefined, rctd: boolean): Buffer {
  if (!e) {
    const b = Buffer.alloc(4);
    b[1] = 0x01;
    return b;
  }
  const b = Buffer.alloc(4 + e.cdbLength);
  b[1] = (rctd ? 0x80 : 0) | 0x03;
  b.writeUInt16BE(e.cdbLength, 2);
  Buffer.from(e.usage).copy(b, 4);
  return rctd ? Buffer.concat([b, encodeTimeoutsDescriptor(e)]) : b;
}

export async function executeReportSupportedOperationCodes(ctx: CommandContext): Promise<CommandResult> {
  const table = ctx.device.table;
  const rctd = (ctx.cdb[2] & 0x80) !== 0;
  const options = ctx.cdb[2] & 0x07;
  const opcode = ctx.cdb[3];
  const sa = ctx.cdb.readUInt16BE(4);
  const allocationLength = ctx.cdb.readUInt32BE(6);
  const supported = (e: CommandEntry | undefined): CommandEntry | undefined =>
    e && table.isEnabled(e, ctx.lu) ? e : undefined;
  let data: Buffer;
  switch (options) {
    case ReportingOptions.ALL: {
      const descs = table.supported(ctx.lu).map((e) => commandDescriptor(e, rctd));
      const body = Buffer.concat(descs);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length, 0); // COMMAND DATA LENGTH
      data = Buffer.concat([head, body]);
      break;
    }
    case ReportingOptions.OPCODE:
      // SPC-5 6.35.1: 001b for an opcode with service actions -> INVALID FIELD IN CDB.
      if (table.hasServiceActions(opcode)) throw invalidCdbField(2, 2);
      data = oneCommand(supported(table.find(opcode)), rctd);
      break;
    case ReportingOptions.OPCODE_SA:
      // 010b for an opcode without service actions -> INVALID FIELD IN CDB.
      if (table.find(opcode) !== undefined && !table.hasServiceActions(opcode)) throw invalidCdbField(2, 2);
      data = oneCommand(supported(table.find(opcode, sa)), rctd);
      break;
    case ReportingOptions.OPCODE_MAYBE_SA:
      data = oneCommand(supported(table.hasServiceActions(opcode) ? table.find(opcode, sa) : table.find(opcode)), rctd);
      break;
    default:
      throw invalidCdbField(2, 2);
  }
  return allocationLimited(data, allocationLength);
}
