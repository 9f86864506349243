/**
 * START STOP UNIT (SBC-4 5.25) and PREVENT ALLOW MEDIUM REMOVAL (SBC-4 5.11)
 * as a fixed, always-spinning disk answers them: accepted, nothing changes.
 */
import type { CommandContext, CommandResult } from '../command-context';

export async function executeStartStopUnit(ctx: CommandContext): Promise<CommandResult> {
  // A stop request still has to leave acknowledged writes durable (NO_FLUSH=0, byte 4 bit 2).
  const stop = (ctx.cdb[4] & 0x01) === 0 && (ctx.cdb[4] & 0xf0) === 0;
  if (stop && (ctx.cdb[4] & 0x04) === 0) await ctx.lu!.flush();
  return {};
}

export async function executePreventAllowMediumRemoval(_ctx: CommandContext): Promise<CommandResult> {
  return {};
}
