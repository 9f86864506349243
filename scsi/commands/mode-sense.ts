/**
 * MODE SENSE(6) / MODE SENSE(10) (SPC-5 6.13-6.14; SBC-4 6.5; reference 4.7).
 * Pages: 08h Caching, 0Ah Control, 1Ch Informational Exceptions Control,
 * 3Fh all pages. Page controls: current, changeable, default; saved -> 5/39/00.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import type { LogicalUnit, ModeState } from '../logical-unit';
import { SenseError, invalidCdbField } from '../sense';

export const ModePage = { CACHING: 0x08, CONTROL: 0x0a, INFORMATIONAL_EXCEPTIONS: 0x1c, ALL: 0x3f } as const;

export const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;

type PageEncoder = (lu: LogicalUnit, pc: number) => Buffer;

function modeValues(lu: LogicalUnit, pc: number): ModeState {
  return pc === PageControl.DEFAULT ? lu.defaultMode : lu.mode;
}

/** Caching mode page (SBC-4 6.5.5), 20 bytes. */
function cachingPage(lu: LogicalUnit, pc: number): Buffer {
  const b = Buffer.alloc(0x14);
  b[0] = ModePage.CACHING;
  b[1] = 0x12;
  if (pc === PageControl.CHANGEABLE) b[2] = 0x04; // WCE is changeable
  else b[2] = modeValues(lu, pc).writeCacheEnabled ? 0x04 : 0x00; // WCE; RCD=0
  return b;
}

/** Control mode page (SPC-5 7.5.10), 12 bytes. Nothing changeable. */
function controlPage(_lu: LogicalUnit, pc: number): Buffer {
  const b = Buffer.alloc(0x0c);
  b[0] = ModePage.CONTROL;
  b[1] = 0x0a;
  if (pc === PageControl.CHANGEABLE) return b;
  b[2] = 0x02; // TST=000b, D_SENSE=0 (fixed format), GLTSD=1
  b[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1 (unrestricted), QERR=00b
  b[5] = 0x00; // TAS=0: tasks aborted by another I_T nexus are not answered; UA 2F/00 instead
  b.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
  return b;
}

/** Informational Exceptions Control mode page (SPC-5 7.5.14), 12 bytes. */
function informationalExceptionsPage(_lu: LogicalUnit, pc: number): Buffer {
  const b = Buffer.alloc(0x0c);
  b[0] = ModePage.INFORMATIONAL_EXCEPTIONS;
  b[1] = 0x0a;
  if (pc === PageControl.CHANGEABLE) return b;
  b[2] = 0x08; // DEXCPT: no informational exception reporting
  return b;
}

const PAGES: ReadonlyMap<number, PageEncoder> = new Map([
  [ModePage.CACHING, cachingPage],
  [ModePage.CONTROL, controlPage],
  [ModePage.INFORMATIONAL_EXCEPTIONS, informationalExceptionsPage],
]);

/** Block descriptors (SBC-4 6.5.2): short = 4-byte block count + 3-byte length; long = 8 + 4. */
function blockDescriptor(lu: LogicalUnit, long: boolean): Buffer {
  if (long) {
    const b = Buffer.alloc(16);
    b.writeBigUInt64BE(lu.blockCount, 0);
    b.writeUInt32BE(lu.blockSize, 12);
    return b;
  }
  const b = Buffer.alloc(8);
  b.writeUInt32BE(lu.blockCount > 0xffffffffn ? 0xffffffff : Number(lu.blockCount), 0);
  b.writeUInt32BE(lu.blockSize & 0xffffff, 4); // byte 4 reserved, 5-7 LOGICAL BLOCK LENGTH
  return b;
}

export function encodeModePages(lu: LogicalUnit, page: number, subpage: number, pc: number): Buffer {
  if (pc === PageControl.SAVED) throw new SenseError('SAVING_PARAMETERS_NOT_SUPPORTED'); // SPC-5 6.13
  if (page === ModePage.ALL) {
    if (subpage !== 0x00 && subpage !== 0xff) throw invalidCdbField(3, 7);
    return Buffer.concat([...PAGES.values()].map((enc) => enc(lu, pc)));
  }
  const enc = PAGES.get(page);
  if (!enc) throw invalidCdbField(2, 5);
  if (subpage !== 0x00 && subpage !== 0xff) throw invalidCdbField(3, 7);
  return enc(lu, pc);
}

export async function executeModeSense(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const six = ctx.cdb.length === 6;
  const dbd = (ctx.cdb[1] & 0x08) !== 0;
  const llbaa = !six && (ctx.cdb[1] & 0x10) !== 0;
  const pc = ctx.cdb[2] >> 6;
  const page = ctx.cdb[2] & 0x3f;
  const subpage = ctx.cdb[3];
  const allocationLength = six ? ctx.cdb[4] : ctx.cdb.readUInt16BE(7);
  const pages = encodeModePages(lu, page, subpage, pc);
  const bd = dbd ? Buffer.alloc(0) : blockDescriptor(lu, llbaa);
  // DEVICE-SPECIFIC PARAMETER (SBC-4 6.5.1): WP, DPOFUA.
  const dsp = (lu.readOnly ? 0x80 : 0) | 0x10;
  let header: Buffer;
  if (six) {
    header = Buffer.alloc(4);
    header[0] = Math.min(0xff, 3 + bd.length + pages.length); // MODE DATA LENGTH (n-1)
    header[2] = dsp;
    header[3] = bd.length;
  } else {
    header = Buffer.alloc(8);
    header.writeUInt16BE(Math.min(0xffff, 6 + bd.length + pages.length), 0); // MODE DATA LENGTH (n-2)
    header[3] = dsp;
    header[4] = llbaa && !dbd ? 0x01 : 0x00; // LONGLBA
    header.writeUInt16BE(bd.length, 6);
  }
  return allocationLimited(Buffer.concat([header, bd, pages]), allocationLength);
}
