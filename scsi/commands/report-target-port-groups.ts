/**
 * REPORT TARGET PORT GROUPS (SPC-5 6.37; reference 4.13): one target port
 * group, active/optimized, containing every relative target port.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import { invalidCdbField } from '../sense';

export const AsymmetricAccessState = { ACTIVE_OPTIMIZED: 0x0 } as const;

export async function executeReportTargetPortGroups(ctx: CommandContext): Promise<CommandResult> {
  const format = ctx.cdb[1] >> 5; // PARAMETER DATA FORMAT: 000b length only, 001b extended header
  if (format > 1) throw invalidCdbField(1, 7);
  const allocationLength = ctx.cdb.readUInt32BE(6);
  const ports = [...new Set([...ctx.device.relativeTargetPorts, ctx.task.nexus.relativeTargetPort])].sort((a, b) => a - b);
  const group = Buffer.alloc(8 + 4 * ports.length);
  group[0] = AsymmetricAccessState.ACTIVE_OPTIMIZED; // PREF=0
  group[1] = 0x01; // AO_SUP only
  group.writeUInt16BE(ctx.device.targetPortGroup, 2);
  group[5] = 0; // STATUS CODE: no status
  group[7] = ports.length;
  ports.forEach((p, i) => group.writeUInt16BE(p, 8 + 4 * i + 2));
  const headerLength = format === 1 ? 8 : 4;
  const data = Buffer.alloc(headerLength + group.length);
  data.writeUInt32BE(data.length - 4, 0); // RETURN DATA LENGTH (n-3)
  if (format === 1) {
    data[4] = 0x10; // FORMAT TYPE 001b
    data[5] = 0; // IMPLICIT TRANSITION TIME
  }
  group.copy(data, headerLength);
  return allocationLimited(data, allocationLength);
}
