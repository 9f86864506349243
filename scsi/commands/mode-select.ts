/**
 * MODE SELECT(6) / MODE SELECT(10) (SPC-5 6.11-6.12; reference 4.7). The
 * pages and their changeable bits come from MODE_PAGES (mode-sense.ts), the
 * same table MODE SENSE answers from. A changed parameter raises MODE
 * PARAMETERS CHANGED for every other I_T nexus (SAM-5 5.14); SP=1 also saves
 * the values where the LU can (persistPath).
 */
import type { CommandContext, CommandResult } from '../command-context';
import type { ModeState } from '../logical-unit';
import { SenseError, invalidCdbField, invalidParameterField } from '../sense';
import { MODE_PAGES } from './mode-sense';

const PF = 0x10;
const SP = 0x01;

export async function executeModeSelect(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const six = ctx.cdb.length === 6;
  const length = six ? ctx.cdb[4] : ctx.cdb.readUInt16BE(7);
  const save = (ctx.cdb[1] & SP) !== 0;
  ctx.dataOutLength = length;
  if (save && !lu.savedMode) throw invalidCdbField(1, 0); // SPC-5 6.11: SP=1 without saved pages
  if (length === 0) return {}; // SPC-5 6.11: nothing to select, not an error
  // PF=0 would mean vendor-specific page formats; only SPC pages are understood here.
  if ((ctx.cdb[1] & PF) === 0) throw invalidCdbField(1, 4);
  const headerLength = six ? 4 : 8;
  if (length < headerLength || ctx.task.expectedDataTransferLength < length) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  const data = await ctx.dataOut(length);

  // Header: MODE DATA LENGTH is reserved here; MEDIUM TYPE must be 0 (SBC-4 6.5.1).
  if (data[six ? 1 : 2] !== 0) throw invalidParameterField(six ? 1 : 2);
  const longLba = !six && (data[4] & 0x01) !== 0;
  const bdLength = six ? data[3] : data.readUInt16BE(6);
  const bdSize = longLba ? 16 : 8;
  if (bdLength % bdSize !== 0 || headerLength + bdLength > length) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  // Block descriptors (SBC-4 6.5.2): the capacity and block length cannot change here.
  for (let off = headerLength; off < headerLength + bdLength; off += bdSize) {
    const blocks = longLba ? data.readBigUInt64BE(off) : BigInt(data.readUInt32BE(off) >>> 0);
    const blockLength = longLba ? data.readUInt32BE(off + 12) : data.readUIntBE(off + 5, 3);
    const current = longLba || lu.blockCount <= 0xffffffffn ? lu.blockCount : 0xffffffffn;
    if (blocks !== 0n && blocks !== current) throw invalidParameterField(off);
    if (blockLength !== lu.blockSize) throw invalidParameterField(off + (longLba ? 12 : 5));
  }

  const next: ModeState = { ...lu.mode };
  let off = headerLength + bdLength;
  while (off < length) {
    if (off + 2 > length) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
    if (data[off] & 0x40) throw invalidParameterField(off, 6); // SPF: no subpages here
    const def = MODE_PAGES.get(data[off] & 0x3f);
    if (!def) throw invalidParameterField(off, 5);
    if (data[off + 1] !== def.length - 2) throw invalidParameterField(off + 1);
    if (off + def.length > length) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
    const page = data.subarray(off, off + def.length);
    const current = def.encode(lu, lu.mode);
    // SPC-5 6.11: a bit that is not changeable must keep its current value (PS is reserved here).
    for (let i = 2; i < def.length; i++) {
      const bad = (page[i] ^ current[i]) & ~def.changeable[i] & 0xff;
      if (bad) throw invalidParameterField(off + i, 31 - Math.clz32(bad));
    }
    def.apply(next, page);
    off += def.length;
  }

  const changed = (Object.keys(next) as Array<keyof ModeState>).some((k) => next[k] !== lu.mode[k]);
  if (changed) {
    if (lu.mode.writeCacheEnabled && !next.writeCacheEnabled) await lu.flush(); // WCE 1 -> 0: nothing left volatile
    lu.mode = next;
    // SAM-5 5.14 / SPC-5 7.5.2: other I_T nexuses learn of it by MODE PARAMETERS CHANGED.
    lu.state.raiseUaForAll('UA_MODE_PARAMETERS_CHANGED', ctx.task.nexus.key);
  }
  if (save) {
    lu.savedMode = { ...next };
    await lu.persist();
  }
  return {};
}
