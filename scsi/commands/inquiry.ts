/**
 * INQUIRY (SPC-5 6.7): standard data and the VPD pages 00h, 80h, 83h, 86h,
 * B0h, B1h, B2h (SPC-5 7.8, SBC-4 6.6; reference 4.2, 4.3).
 */
import * as BL from 'buffer-layout';
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import type { LogicalUnit } from '../logical-unit';
import { Opcode, REPORT_LUNS_WELL_KNOWN_LUN } from '../opcodes';
import { SenseError, invalidCdbField } from '../sense';
import { VPD_THIRD_PARTY_COPY, encodeThirdPartyCopyPage } from '../copy/third-party-copy-vpd';

export const PERIPHERAL_DIRECT_ACCESS = 0x00;
/** PQ 011b, PDT 1Fh: no logical unit at this LUN (SPC-5 6.7.2). */
export const PERIPHERAL_NOT_PRESENT = 0x7f;
/** PQ 000b, PDT 1Eh: well-known logical unit. */
export const PERIPHERAL_WELL_KNOWN = 0x1e;

/** VERSION: 06h = SPC-4. */
export const INQUIRY_VERSION_SPC4 = 0x06;
export const STANDARD_INQUIRY_LENGTH = 96;

/** Version descriptors (SPC-5 table 59 excerpts). */
export const VersionDescriptor = { SAM5: 0x00a0, SPC4: 0x0460, SBC3: 0x04c0, ISCSI: 0x0960 } as const;

export const VpdPage = {
  SUPPORTED_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
  EXTENDED_INQUIRY: 0x86,
  BLOCK_LIMITS: 0xb0,
  BLOCK_DEVICE_CHARACTERISTICS: 0xb1,
  LOGICAL_BLOCK_PROVISIONING: 0xb2,
} as const;

const SUPPORTED_VPD_PAGES = [0x00, 0x80, 0x83, 0x86, VPD_THIRD_PARTY_COPY, 0xb0, 0xb1, 0xb2] as const;

function ascii(s: string, width: number): Buffer {
  const b = Buffer.alloc(width, 0x20);
  b.write(s.slice(0, width), 'ascii');
  return b;
}

export function encodeStandardInquiry(ctx: CommandContext): Buffer {
  const lu = ctx.lu;
  const b = Buffer.alloc(STANDARD_INQUIRY_LENGTH);
  const ident = lu?.identity ?? ctx.device.defaultIdentity;
  if (lu) b[0] = PERIPHERAL_DIRECT_ACCESS;
  else if (ctx.lun === REPORT_LUNS_WELL_KNOWN_LUN) b[0] = PERIPHERAL_WELL_KNOWN;
  else b[0] = PERIPHERAL_NOT_PRESENT;
  b[1] = 0x00; // RMB=0: not removable
  b[2] = INQUIRY_VERSION_SPC4;
  b[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
  b[4] = STANDARD_INQUIRY_LENGTH - 5; // ADDITIONAL LENGTH (n-4)
  b[5] = 0x10; // TPGS=01b implicit ALUA (REPORT TARGET PORT GROUPS); SCCS, ACC, PROTECT = 0
  // 3PC (reference 2.1): the LU's command table has third-party copy commands (EXTENDED COPY).
  if (lu && ctx.device.table.supported(lu).some((e) => e.opcode === 0x83)) b[5] |= 0x08;
  b[6] = 0x00;
  b[7] = 0x02; // CMDQUE
  ascii(ident.vendor, 8).copy(b, 8);
  ascii(ident.product, 16).copy(b, 16);
  ascii(ident.revision, 4).copy(b, 32);
  ctx.device.versionDescriptors.slice(0, 8).forEach((v, i) => b.writeUInt16BE(v, 58 + 2 * i));
  return b;
}

function vpdPage(lu: LogicalUnit, page: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = PERIPHERAL_DIRECT_ACCESS;
  h[1] = page;
  h.writeUInt16BE(body.length, 2); // PAGE LENGTH (n-3)
  void lu;
  return Buffer.concat([h, body]);
}

/** Designation descriptor (SPC-5 7.8.6.1). */
function designator(codeSet: number, association: number, type: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + value.length);
  b[0] = codeSet & 0x0f;
  b[1] = ((association & 0x03) << 4) | (type & 0x0f);
  b[3] = value.length;
  value.copy(b, 4);
  return b;
}

const CodeSet = { BINARY: 1, ASCII: 2 } as const;
const Association = { LU: 0, TARGET_PORT: 1 } as const;
const DesignatorType = { T10_VENDOR_ID: 1, EUI_64: 2, NAA: 3, RELATIVE_TARGET_PORT: 4, TARGET_PORT_GROUP: 5 } as const;

/**
 * The LU-association designation descriptors of VPD 83h: NAA, EUI-64 (when
 * configured), T10 vendor ID. E4h CSCD descriptors are matched against these (copy/cscd.ts).
 */
export function luDesignators(lu: LogicalUnit): Buffer[] {
  const t10 = Buffer.concat([ascii(lu.identity.vendor, 8), Buffer.from(lu.identity.serial, 'ascii')]);
  const out = [designator(CodeSet.BINARY, Association.LU, DesignatorType.NAA, lu.identity.naa)];
  if (lu.identity.eui64) out.push(designator(CodeSet.BINARY, Association.LU, DesignatorType.EUI_64, lu.identity.eui64));
  out.push(designator(CodeSet.ASCII, Association.LU, DesignatorType.T10_VENDOR_ID, t10));
  return out;
}

export function encodeDeviceIdentification(ctx: CommandContext, lu: LogicalUnit): Buffer {
  // The port the command came in on and its target port group (SPC-5 7.8.6.5, 7.8.6.6; ALUA: scsi/alua.ts).
  const port = Buffer.alloc(4);
  port.writeUInt16BE(ctx.task.nexus.relativeTargetPort & 0xffff, 2);
  const group = Buffer.alloc(4);
  group.writeUInt16BE(ctx.device.alua.groupOfPort(ctx.task.nexus.relativeTargetPort).id & 0xffff, 2);
  return Buffer.concat([
    ...luDesignators(lu),
    designator(CodeSet.BINARY, Association.TARGET_PORT, DesignatorType.RELATIVE_TARGET_PORT, port),
    designator(CodeSet.BINARY, Association.TARGET_PORT, DesignatorType.TARGET_PORT_GROUP, group),
  ]);
}

interface BlockLimitsPage {
  wsnz: number;
  maxCompareAndWriteLength: number;
  optimalTransferLengthGranularity: number;
  maxTransferLength: number;
  optimalTransferLength: number;
  maxPrefetchLength: number;
  maxUnmapLbaCount: number;
  maxUnmapBlockDescriptorCount: number;
  optimalUnmapGranularity: number;
  unmapGranularityAlignment: number;
}

/** Block Limits VPD page bytes 4..35 (SBC-4 6.6.4); 36..43 MAXIMUM WRITE SAME LENGTH is 64-bit. */
const BLOCK_LIMITS = BL.struct<BlockLimitsPage>([
  BL.u8('wsnz'),
  BL.u8('maxCompareAndWriteLength'),
  BL.u16be('optimalTransferLengthGranularity'),
  BL.u32be('maxTransferLength'),
  BL.u32be('optimalTransferLength'),
  BL.u32be('maxPrefetchLength'),
  BL.u32be('maxUnmapLbaCount'),
  BL.u32be('maxUnmapBlockDescriptorCount'),
  BL.u32be('optimalUnmapGranularity'),
  BL.u32be('unmapGranularityAlignment'),
]);

export function encodeBlockLimits(ctx: CommandContext, lu: LogicalUnit): Buffer {
  const body = Buffer.alloc(0x3c); // PAGE LENGTH 003Ch (Linux ignores the page otherwise)
  const lim = lu.limits;
  const prov = ctx.device.table.provisioning(lu);
  const enabled = (op: number): boolean => {
    const e = ctx.device.table.find(op);
    return e !== undefined && ctx.device.table.isEnabled(e, lu);
  };
  const cawEnabled = enabled(Opcode.COMPARE_AND_WRITE);
  BLOCK_LIMITS.encode({
    wsnz: 0x00, // WSNZ=0: WRITE SAME with 0 blocks writes to the end of the medium
    maxCompareAndWriteLength: cawEnabled ? lim.maxCompareAndWriteLength : 0,
    optimalTransferLengthGranularity: lim.optimalTransferLengthGranularity,
    maxTransferLength: lim.maxTransferLength,
    optimalTransferLength: lim.optimalTransferLength,
    maxPrefetchLength: lim.maxTransferLength,
    maxUnmapLbaCount: prov.lbpu ? lim.maxUnmapLbaCount : 0,
    maxUnmapBlockDescriptorCount: prov.lbpu ? lim.maxUnmapBlockDescriptorCount : 0,
    optimalUnmapGranularity: prov.lbpu ? lim.optimalUnmapGranularity : 0,
    unmapGranularityAlignment: 0,
  }, body, 0);
  const wsEnabled = enabled(Opcode.WRITE_SAME_16) || enabled(Opcode.WRITE_SAME_10);
  body.writeBigUInt64BE(BigInt(wsEnabled ? lim.maxWriteSameLength : 0), 32);
  return body;
}

function encodeVpd(ctx: CommandContext, lu: LogicalUnit, page: number): Buffer {
  switch (page) {
    case VpdPage.SUPPORTED_PAGES:
      return vpdPage(lu, page, Buffer.from(SUPPORTED_VPD_PAGES));
    case VpdPage.UNIT_SERIAL_NUMBER:
      return vpdPage(lu, page, Buffer.from(lu.identity.serial, 'ascii'));
    case VpdPage.DEVICE_IDENTIFICATION:
      return vpdPage(lu, page, encodeDeviceIdentification(ctx, lu));
    case VpdPage.EXTENDED_INQUIRY: {
      const body = Buffer.alloc(0x3c);
      body[1] = 0x01; // SIMPSUP
      body[2] = 0x01; // V_SUP: volatile write cache (SYNCHRONIZE CACHE makes it durable)
      return vpdPage(lu, page, body);
    }
    case VpdPage.BLOCK_LIMITS:
      return vpdPage(lu, page, encodeBlockLimits(ctx, lu));
    case VpdPage.BLOCK_DEVICE_CHARACTERISTICS: {
      const body = Buffer.alloc(0x3c);
      body.writeUInt16BE(0x0001, 0); // MEDIUM ROTATION RATE: non-rotating medium
      return vpdPage(lu, page, body);
    }
    case VpdPage.LOGICAL_BLOCK_PROVISIONING: {
      const body = Buffer.alloc(4);
      const p = ctx.device.table.provisioning(lu);
      const any = p.lbpu || p.lbpws || p.lbpws10;
      body[0] = 0; // THRESHOLD EXPONENT
      body[1] = (p.lbpu ? 0x80 : 0) | (p.lbpws ? 0x40 : 0) | (p.lbpws10 ? 0x20 : 0) | (any ? 0x04 : 0); // LBPRZ=001b
      body[2] = any && lu.store.thinProvisioned ? 0x02 : 0x00; // PROVISIONING TYPE: thin / full
      return vpdPage(lu, page, body);
    }
    case VPD_THIRD_PARTY_COPY:
      return vpdPage(lu, page, encodeThirdPartyCopyPage(ctx, lu));
    default:
      throw invalidCdbField(2, 7); // SPC-5 6.7.1: unsupported VPD page
  }
}

export async function executeInquiry(ctx: CommandContext): Promise<CommandResult> {
  const evpd = (ctx.cdb[1] & 0x01) !== 0;
  const page = ctx.cdb[2];
  const allocationLength = ctx.cdb.readUInt16BE(3);
  if (!evpd) {
    // SPC-5 6.7.1: EVPD=0 with PAGE CODE != 0 -> INVALID FIELD IN CDB.
    if (page !== 0) throw invalidCdbField(2, 7);
    return allocationLimited(encodeStandardInquiry(ctx), allocationLength);
  }
  if (!ctx.lu) throw new SenseError('LOGICAL_UNIT_NOT_SUPPORTED');
  return allocationLimited(encodeVpd(ctx, ctx.lu, page), allocationLength);
}
