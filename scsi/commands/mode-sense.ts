/**
 * MODE SENSE(6) / MODE SENSE(10) (SPC-5 6.13-6.14; SBC-4 6.5; reference 4.7).
 * Pages: 08h Caching, 0Ah Control, 1Ch Informational Exceptions Control,
 * 3Fh all pages. Page controls: current, changeable, default, and saved where
 * the LU can save (else 5/39/00).
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import type { LogicalUnit, ModeState } from '../logical-unit';
import { SenseError, invalidCdbField } from '../sense';

export const ModePage = { CACHING: 0x08, CONTROL: 0x0a, INFORMATIONAL_EXCEPTIONS: 0x1c, ALL: 0x3f } as const;

export const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;

/**
 * One mode page: its length, how to encode a set of values, which bits
 * MODE SELECT may change (the PC=01b answer), and how to read those bits back.
 * The table drives MODE SENSE and MODE SELECT alike.
 */
export interface ModePageDefinition {
  readonly code: number;
  readonly name: string;
  /** Whole page length in bytes, header included (PAGE LENGTH + 2). */
  readonly length: number;
  encode(lu: LogicalUnit, values: Readonly<ModeState>): Buffer;
  /** Changeable-bit mask per byte; bytes 0-1 (page code, length) are never changeable. */
  readonly changeable: readonly number[];
  /** Read the changeable fields of a MODE SELECT page into `values`. */
  apply(values: ModeState, page: Buffer): void;
}

function pageBuffer(code: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  b[0] = code;
  b[1] = length - 2;
  return b;
}

/** Caching mode page (SBC-4 6.5.5), 20 bytes. WCE changeable; RCD=0. */
const CACHING: ModePageDefinition = {
  code: ModePage.CACHING,
  name: 'caching',
  length: 0x14,
  encode(_lu, v) {
    const b = pageBuffer(ModePage.CACHING, 0x14);
    b[2] = v.writeCacheEnabled ? 0x04 : 0x00; // WCE
    return b;
  },
  changeable: [0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  apply(v, page) {
    v.writeCacheEnabled = (page[2] & 0x04) !== 0;
  },
};

/**
 * Control mode page (SPC-5 7.5.10), 12 bytes, with LIO's values: TST 000b,
 * QUEUE ALGORITHM MODIFIER 1 (unrestricted), QERR 00b, TAS=0 (aborted tasks
 * of other nexuses get UA 2F/00), BUSY TIMEOUT unlimited. D_SENSE is
 * changeable (fixed or descriptor sense, as CTL allows).
 */
const CONTROL: ModePageDefinition = {
  code: ModePage.CONTROL,
  name: 'control',
  length: 0x0c,
  encode(_lu, v) {
    const b = pageBuffer(ModePage.CONTROL, 0x0c);
    b[2] = 0x02 | (v.descriptorSense ? 0x04 : 0); // GLTSD=1, D_SENSE
    b[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1, QERR 00b
    b[5] = 0x00; // TAS=0
    b.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
    return b;
  },
  changeable: [0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  apply(v, page) {
    v.descriptorSense = (page[2] & 0x04) !== 0;
  },
};

/** Informational Exceptions Control mode page (SPC-5 7.5.14), 12 bytes: DEXCPT, nothing changeable. */
const INFORMATIONAL_EXCEPTIONS: ModePageDefinition = {
  code: ModePage.INFORMATIONAL_EXCEPTIONS,
  name: 'informational exceptions control',
  length: 0x0c,
  encode() {
    const b = pageBuffer(ModePage.INFORMATIONAL_EXCEPTIONS, 0x0c);
    b[2] = 0x08; // DEXCPT: no informational exception reporting
    return b;
  },
  changeable: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  apply() {},
};

/** The mode pages, in page-code order (3Fh returns them in this order). */
export const MODE_PAGES: ReadonlyMap<number, ModePageDefinition> = new Map(
  [CACHING, CONTROL, INFORMATIONAL_EXCEPTIONS].map((p) => [p.code, p]),
);

/** A page as MODE SENSE returns it for page control `pc`; PS=1 where the LU can save. */
function encodePage(lu: LogicalUnit, def: ModePageDefinition, pc: number): Buffer {
  let b: Buffer;
  if (pc === PageControl.CHANGEABLE) {
    b = Buffer.from(def.changeable);
    b[0] = def.code;
    b[1] = def.length - 2;
  } else {
    const values = pc === PageControl.DEFAULT ? lu.defaultMode : pc === PageControl.SAVED ? lu.savedMode! : lu.mode;
    b = def.encode(lu, values);
  }
  if (lu.savedMode && def.changeable.some((m) => m !== 0)) b[0] |= 0x80; // PS (SPC-5 7.5.7)
  return b;
}

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
  // SPC-5 6.13: saved values only where the LU can save them.
  if (pc === PageControl.SAVED && !lu.savedMode) throw new SenseError('SAVING_PARAMETERS_NOT_SUPPORTED');
  if (page === ModePage.ALL) {
    if (subpage !== 0x00 && subpage !== 0xff) throw invalidCdbField(3, 7);
    return Buffer.concat([...MODE_PAGES.values()].map((def) => encodePage(lu, def, pc)));
  }
  const def = MODE_PAGES.get(page);
  if (!def) throw invalidCdbField(2, 5);
  if (subpage !== 0x00 && subpage !== 0xff) throw invalidCdbField(3, 7);
  return encodePage(lu, def, pc);
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
