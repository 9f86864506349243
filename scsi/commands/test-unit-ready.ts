/** TEST UNIT READY (SPC-5 6.47). The core reports pending unit attentions first; a present LU is ready. */
import type { CommandContext, CommandResult } from '../command-context';

export async function executeTestUnitReady(_ctx: CommandContext): Promise<CommandResult> {
  return {};
}
