/**
 * CSCD descriptors (SPC-5 6.6.4; reference 2.6): decoding, and resolution of
 * the E4h Identification Descriptor to a logical unit the issuing I_T nexus
 * may access. The designators compared are exactly those the LUs report in
 * VPD 83h (commands/inquiry.ts `luDesignators`): NAA 5/6, EUI-64, T10 vendor
 * ID, whatever the LU has, up to 20 bytes.
 */
import type { ItNexus } from '../types';
import type { LogicalUnit } from '../logical-unit';
import { SenseError, invalidParameterField } from '../sense';
import { luDesignators } from '../commands/inquiry';
import { CscdType } from './limits';

/** Designation descriptor fields that identify an LU (SPC-5 7.8.6.1). */
export interface Designator {
  codeSet: number;
  association: number;
  designatorType: number;
  value: Buffer;
}

export interface CscdDescriptor {
  /** CSCD descriptor ID (position in the CSCD descriptor list). */
  id: number;
  /** Byte offset of the descriptor in the parameter list (segment pointers, SD=0). */
  offset: number;
  type: number;
  /** Byte 1 bits 7:6 (ignored for E4h: SPC-4 and later, as libiscsi expects). */
  luIdType: number;
  peripheralDeviceType: number;
  relativeInitiatorPort: number;
  /** E4h only. */
  designator?: Designator;
  /** Block device type-specific parameters (byte 28 bit 2). */
  pad: boolean;
  /** DISK BLOCK LENGTH, 0 = the copy manager finds it. */
  diskBlockLength: number;
}

/** The largest designator an E4h descriptor can carry (bytes 8..27). */
export const MAX_E4_DESIGNATOR_LENGTH = 20;

/**
 * Decode one 32-byte CSCD descriptor. Unknown type codes -> 5/26/07 (SPC-5
 * 6.6.4.1); an E4h designator longer than 20 bytes -> 5/26/00 at byte 7.
 */
export function decodeCscd(params: Buffer, offset: number, id: number): CscdDescriptor {
  const type = params[offset];
  const d: CscdDescriptor = {
    id,
    offset,
    type,
    luIdType: (params[offset + 1] >> 6) & 0x03,
    peripheralDeviceType: params[offset + 1] & 0x1f,
    relativeInitiatorPort: params.readUInt16BE(offset + 2),
    pad: (params[offset + 28] & 0x04) !== 0,
    diskBlockLength: params.readUIntBE(offset + 29, 3),
  };
  if (type === CscdType.EXTENSION) return d; // the tail of a longer descriptor; never resolvable
  if (type !== CscdType.IDENTIFICATION) {
    throw new SenseError('UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE', { field: { byte: offset, bit: 7, cd: false } });
  }
  const length = params[offset + 7];
  if (length > MAX_E4_DESIGNATOR_LENGTH) throw invalidParameterField(offset + 7);
  d.designator = {
    codeSet: params[offset + 4] & 0x0f,
    association: (params[offset + 5] >> 4) & 0x03,
    designatorType: params[offset + 5] & 0x0f,
    value: Buffer.from(params.subarray(offset + 8, offset + 8 + length)),
  };
  return d;
}

/** Decode the LU-association designation descriptors of VPD 83h. */
export function designatorsOf(lu: LogicalUnit): readonly Designator[] {
  // Built once per identity (configuration: fixed for the LU's life; a reload that changes it
  // makes a new LogicalUnit): every CSCD and token creator resolution compares against every
  // LU the nexus sees, and building them allocated four buffers per LU each time (issue 12).
  let ds = designatorCache.get(lu.identity);
  if (!ds) {
    ds = Object.freeze(luDesignators(lu).map((b) => Object.freeze({
      codeSet: b[0] & 0x0f,
      association: (b[1] >> 4) & 0x03,
      designatorType: b[1] & 0x0f,
      value: b.subarray(4, 4 + b[3]),
    })));
    designatorCache.set(lu.identity, ds);
  }
  return ds;
}

const designatorCache = new WeakMap<LogicalUnit['identity'], readonly Designator[]>();

/** Exact match of code set, association, designator type, length and value (reference 2.6). */
export function designatorMatches(lu: LogicalUnit, want: Designator): boolean {
  return designatorsOf(lu).some(
    (d) =>
      d.codeSet === want.codeSet &&
      d.association === want.association &&
      d.designatorType === want.designatorType &&
      d.value.equals(want.value),
  );
}

/**
 * What a CSCD resolves to: a logical unit, the device that owns it (its
 * pipeline admits the copy I/O) and its LUN there. `device` is structural so
 * scsi/copy needs no import cycle with scsi-device.ts.
 */
export interface CopyTarget {
  device: CopyTargetDevice;
  lun: number;
  lu: LogicalUnit;
}

/** The part of a ScsiDevice the copy engine's internal port uses. */
export interface CopyTargetDevice {
  /**
   * The admission checks of the command pipeline for an internal READ/WRITE
   * CDB on `lun` as if issued by `nexus` (LU visibility, CDB, write protect,
   * reservations), without unit attentions. Returns the status to fail with
   * (RESERVATION CONFLICT) or undefined; throws SenseError.
   */
  admitCopyIo(nexus: ItNexus, lun: number, cdb: Buffer): number | undefined;
}

/**
 * The access scope of copies: resolve a designator to an LU that `nexus` may
 * access, across every target of the daemon, or undefined. Injected by the
 * composer (src/daemon.ts), which knows the targets' ACLs.
 */
export type CopyScope = (nexus: ItNexus, designator: Designator) => CopyTarget | undefined;
