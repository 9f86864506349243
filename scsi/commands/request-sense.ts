/**
 * REQUEST SENSE (SPC-5 6.39): returns, with GOOD status, a pending unit
 * attention (and clears it), LOGICAL UNIT NOT SUPPORTED for a LUN without a
 * logical unit, or NO SENSE. DESC=1 selects descriptor format.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { encodeDescriptorSense, encodeFixedSense, senseCodes, type SenseReason } from '../sense';

export async function executeRequestSense(ctx: CommandContext): Promise<CommandResult> {
  const desc = (ctx.cdb[1] & 0x01) !== 0;
  const allocationLength = ctx.cdb[4];
  let reason: SenseReason = 'NO_SENSE';
  if (!ctx.lu) reason = 'LOGICAL_UNIT_NOT_SUPPORTED';
  else reason = ctx.lu.state.takeUa(ctx.task.nexus.key) ?? 'NO_SENSE';
  const input = senseCodes(reason);
  const data = desc ? encodeDescriptorSense(input) : encodeFixedSense(input);
  const n = Math.min(data.length, allocationLength);
  return { dataIn: n > 0 ? [data.subarray(0, n)] : [], dataInLength: n };
}
