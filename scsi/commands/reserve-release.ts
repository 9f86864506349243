/**
 * RESERVE(6)/(10) and RELEASE(6)/(10) (SPC-2 7.21-7.24; reference 4.1):
 * the whole LU for one I_T nexus. Third-party and extent reservations are
 * not supported (their CDB bits are outside the usage masks). The core
 * releases a reservation when its nexus goes away or the LU is reset.
 */
import type { CommandContext, CommandResult } from '../command-context';

export async function executeReserve(ctx: CommandContext): Promise<CommandResult> {
  // RESERVE(10) may carry a parameter list only for third-party reservations, which the mask forbids.
  ctx.dataOutLength = 0;
  const nexus = ctx.task.nexus;
  await ctx.lu!.state.changeReservations((r) => r.reserveSpc2(nexus));
  return {};
}

export async function executeRelease(ctx: CommandContext): Promise<CommandResult> {
  ctx.dataOutLength = 0;
  const nexus = ctx.task.nexus;
  await ctx.lu!.state.changeReservations((r) => r.releaseSpc2(nexus));
  return {};
}
