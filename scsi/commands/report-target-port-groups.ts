/**
 * REPORT TARGET PORT GROUPS (SPC-5 6.37; reference 4.13): every target port
 * group of the device (scsi/alua.ts) with its access state, the states it
 * supports, why its state last changed, and its relative target ports. One
 * node: one group, active/optimized, with every relative target port.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import { invalidCdbField } from '../sense';

export async function executeReportTargetPortGroups(ctx: CommandContext): Promise<CommandResult> {
  const format = ctx.cdb[1] >> 5; // PARAMETER DATA FORMAT: 000b length only, 001b extended header
  if (format > 1) throw invalidCdbField(1, 7);
  const allocationLength = ctx.cdb.readUInt32BE(6);
  const alua = ctx.device.alua;
  // The port the command came in on is in a group even when no group names it (this node's).
  const arrival = alua.groupOfPort(ctx.task.nexus.relativeTargetPort).id;
  const descriptors = alua.groups().map((g) => {
    const ports = g.id === arrival ? [...new Set([...g.relativeTargetPorts, ctx.task.nexus.relativeTargetPort])].sort((a, b) => a - b) : g.relativeTargetPorts;
    const d = Buffer.alloc(8 + 4 * ports.length);
    d[0] = g.state & 0x0f; // PREF=0
    d[1] = alua.supportedStates;
    d.writeUInt16BE(g.id, 2);
    d[5] = g.statusCode; // STATUS CODE: 02h after an implicit transition
    d[7] = ports.length; // TARGET PORT COUNT
    ports.forEach((p, i) => d.writeUInt16BE(p, 8 + 4 * i + 2));
    return d;
  });
  const headerLength = format === 1 ? 8 : 4;
  const body = Buffer.concat(descriptors);
  const data = Buffer.alloc(headerLength + body.length);
  data.writeUInt32BE(data.length - 4, 0); // RETURN DATA LENGTH (n-3)
  if (format === 1) {
    data[4] = 0x10; // FORMAT TYPE 001b
    data[5] = Math.min(alua.implicitTransitionSeconds, 255); // IMPLICIT TRANSITION TIME
  }
  body.copy(data, headerLength);
  return allocationLimited(data, allocationLength);
}
