/**
 * Typed sense errors, mapped once (SPC-5 4.4 sense data; reference doc 1.3, 1.5, 5).
 *
 * Handlers throw `SenseError` with a named reason; `SENSE_TABLE` is the one
 * place that turns reasons into SENSE KEY / ASC / ASCQ; only the core catch in
 * scsi-device.ts builds CHECK CONDITION from it.
 */

/** Sense keys (SPC-5 table 28). */
export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  VOLUME_OVERFLOW: 0xd,
  MISCOMPARE: 0xe,
  COMPLETED: 0xf,
} as const;

const K = SenseKey;

/** reason -> [key, ASC, ASCQ]. The single mapping table. */
export const SENSE_TABLE = {
  NO_SENSE: [K.NO_SENSE, 0x00, 0x00],
  // ILLEGAL REQUEST
  PARAMETER_LIST_LENGTH_ERROR: [K.ILLEGAL_REQUEST, 0x1a, 0x00],
  INVALID_COMMAND_OPERATION_CODE: [K.ILLEGAL_REQUEST, 0x20, 0x00],
  LBA_OUT_OF_RANGE: [K.ILLEGAL_REQUEST, 0x21, 0x00],
  INVALID_FIELD_IN_CDB: [K.ILLEGAL_REQUEST, 0x24, 0x00],
  LOGICAL_UNIT_NOT_SUPPORTED: [K.ILLEGAL_REQUEST, 0x25, 0x00],
  INVALID_FIELD_IN_PARAMETER_LIST: [K.ILLEGAL_REQUEST, 0x26, 0x00],
  PARAMETER_NOT_SUPPORTED: [K.ILLEGAL_REQUEST, 0x26, 0x01],
  PARAMETER_VALUE_INVALID: [K.ILLEGAL_REQUEST, 0x26, 0x02],
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: [K.ILLEGAL_REQUEST, 0x26, 0x04],
  SAVING_PARAMETERS_NOT_SUPPORTED: [K.ILLEGAL_REQUEST, 0x39, 0x00],
  INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT: [K.ILLEGAL_REQUEST, 0x0e, 0x03],
  INSUFFICIENT_REGISTRATION_RESOURCES: [K.ILLEGAL_REQUEST, 0x55, 0x04],
  // Third-party copy, before segment processing (SPC-5 6.6.x; reference 2.5, 5)
  OPERATION_IN_PROGRESS: [K.ILLEGAL_REQUEST, 0x00, 0x16],
  TOO_MANY_TARGET_DESCRIPTORS: [K.ILLEGAL_REQUEST, 0x26, 0x06],
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: [K.ILLEGAL_REQUEST, 0x26, 0x07],
  TOO_MANY_SEGMENT_DESCRIPTORS: [K.ILLEGAL_REQUEST, 0x26, 0x08],
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: [K.ILLEGAL_REQUEST, 0x26, 0x09],
  INLINE_DATA_LENGTH_EXCEEDED: [K.ILLEGAL_REQUEST, 0x26, 0x0b],
  INSUFFICIENT_RESOURCES: [K.ILLEGAL_REQUEST, 0x55, 0x03],
  // ROD tokens (SPC-5 6.4 / SBC-4 5.x POPULATE TOKEN, WRITE USING TOKEN; reference 2.11, 2.12)
  INSUFFICIENT_RESOURCES_TO_CREATE_ROD: [K.ILLEGAL_REQUEST, 0x55, 0x0c],
  INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN: [K.ILLEGAL_REQUEST, 0x55, 0x0d],
  INVALID_TOKEN_CAUSE_NOT_REPORTABLE: [K.ILLEGAL_REQUEST, 0x23, 0x00],
  UNSUPPORTED_TOKEN_TYPE: [K.ILLEGAL_REQUEST, 0x23, 0x01],
  REMOTE_TOKEN_USAGE_NOT_SUPPORTED: [K.ILLEGAL_REQUEST, 0x23, 0x02],
  TOKEN_UNKNOWN: [K.ILLEGAL_REQUEST, 0x23, 0x04],
  TOKEN_CORRUPT: [K.ILLEGAL_REQUEST, 0x23, 0x05],
  TOKEN_REVOKED: [K.ILLEGAL_REQUEST, 0x23, 0x06],
  TOKEN_EXPIRED: [K.ILLEGAL_REQUEST, 0x23, 0x07],
  TOKEN_CANCELLED: [K.ILLEGAL_REQUEST, 0x23, 0x08],
  TOKEN_DELETED: [K.ILLEGAL_REQUEST, 0x23, 0x09],
  INVALID_TOKEN_LENGTH: [K.ILLEGAL_REQUEST, 0x23, 0x0a],
  /** SBC-4 WRITE USING TOKEN / POPULATE TOKEN shortfall with TRANSFER COUNT 0. */
  DATA_UNDERRUN_NOTHING_TRANSFERRED: [K.ILLEGAL_REQUEST, 0x0d, 0x04],
  // COPY ABORTED: failures once segment processing has begun (reference 2.8)
  COPY_ABORTED: [K.COPY_ABORTED, 0x00, 0x00],
  COPY_UNREACHABLE_COPY_TARGET: [K.COPY_ABORTED, 0x08, 0x04],
  COPY_THIRD_PARTY_DEVICE_FAILURE: [K.COPY_ABORTED, 0x0d, 0x01],
  COPY_TARGET_DEVICE_NOT_REACHABLE: [K.COPY_ABORTED, 0x0d, 0x02],
  COPY_INCORRECT_TARGET_DEVICE_TYPE: [K.COPY_ABORTED, 0x0d, 0x03],
  COPY_INVALID_FIELD_IN_PARAMETER_LIST: [K.COPY_ABORTED, 0x26, 0x00],
  COPY_UNEXPECTED_INEXACT_SEGMENT: [K.COPY_ABORTED, 0x26, 0x0a],
  COPY_COMMAND_CLEARED_BY_DEVICE_SERVER: [K.COPY_ABORTED, 0x2f, 0x02],
  /** COPY TARGET DEVICE DATA UNDERRUN: a partial, contiguous transfer (INFORMATION = TRANSFER COUNT). */
  COPY_TARGET_DEVICE_DATA_UNDERRUN: [K.COPY_ABORTED, 0x0d, 0x04],
  // DATA PROTECT
  WRITE_PROTECTED: [K.DATA_PROTECT, 0x27, 0x00],
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: [K.DATA_PROTECT, 0x27, 0x07],
  // MEDIUM ERROR
  MEDIUM_ERROR_READ: [K.MEDIUM_ERROR, 0x11, 0x00], // UNRECOVERED READ ERROR
  WRITE_ERROR: [K.MEDIUM_ERROR, 0x0c, 0x00],
  // HARDWARE ERROR
  INTERNAL_TARGET_FAILURE: [K.HARDWARE_ERROR, 0x44, 0x00],
  // MISCOMPARE
  MISCOMPARE: [K.MISCOMPARE, 0x1d, 0x00],
  // NOT READY
  LU_NOT_READY_MANUAL_INTERVENTION: [K.NOT_READY, 0x04, 0x03],
  /** ALUA (SPC-5 5.16.2.4): the port's target port group is transitioning / in standby / unavailable. */
  LU_NOT_ACCESSIBLE_TRANSITIONING: [K.NOT_READY, 0x04, 0x0a],
  LU_NOT_ACCESSIBLE_STANDBY: [K.NOT_READY, 0x04, 0x0b],
  LU_NOT_ACCESSIBLE_UNAVAILABLE: [K.NOT_READY, 0x04, 0x0c],
  // UNIT ATTENTION (SPC-5 annex; SAM-5 6.3)
  UA_POWER_ON_RESET: [K.UNIT_ATTENTION, 0x29, 0x00],
  UA_POWER_ON_OCCURRED: [K.UNIT_ATTENTION, 0x29, 0x01],
  UA_BUS_DEVICE_RESET_FUNCTION: [K.UNIT_ATTENTION, 0x29, 0x03],
  UA_I_T_NEXUS_LOSS: [K.UNIT_ATTENTION, 0x29, 0x07],
  UA_MODE_PARAMETERS_CHANGED: [K.UNIT_ATTENTION, 0x2a, 0x01],
  UA_RESERVATIONS_PREEMPTED: [K.UNIT_ATTENTION, 0x2a, 0x03],
  UA_RESERVATIONS_RELEASED: [K.UNIT_ATTENTION, 0x2a, 0x04],
  UA_REGISTRATIONS_PREEMPTED: [K.UNIT_ATTENTION, 0x2a, 0x05],
  UA_ASYMMETRIC_ACCESS_STATE_CHANGED: [K.UNIT_ATTENTION, 0x2a, 0x06],
  UA_CAPACITY_DATA_HAS_CHANGED: [K.UNIT_ATTENTION, 0x2a, 0x09],
  UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: [K.UNIT_ATTENTION, 0x2f, 0x00],
  UA_INQUIRY_DATA_HAS_CHANGED: [K.UNIT_ATTENTION, 0x3f, 0x03],
  UA_REPORTED_LUNS_DATA_HAS_CHANGED: [K.UNIT_ATTENTION, 0x3f, 0x0e],
} as const satisfies Record<string, readonly [number, number, number]>;

export type SenseReason = keyof typeof SENSE_TABLE;
/** The reasons that are unit attention conditions. */
export type UnitAttentionReason = Extract<SenseReason, `UA_${string}`>;

/**
 * Sense-key-specific FIELD POINTER (SPC-5 4.4.2.2, reference 1.5).
 * `cd`: true = the error is in the CDB, false = in the parameter data.
 */
export interface FieldPointer {
  byte: number;
  /** Bit 0..7; omitted -> BPV = 0. */
  bit?: number;
  cd: boolean;
  /**
   * COPY ABORTED segment pointer (SPC-5 4.4.2.4.5): SD=1 -> `byte` is relative to
   * the start of the segment descriptor, SD=0 -> to the parameter list. Leave `cd` false.
   */
  sd?: boolean;
}

export interface SenseErrorOptions {
  field?: FieldPointer;
  /** INFORMATION field (VALID=1 when it fits in 32 bits for fixed format). */
  information?: bigint | number;
  commandSpecific?: number;
}

/** A failure a handler reports; the core turns it into CHECK CONDITION. */
export class SenseError extends Error {
  readonly reason: SenseReason;
  readonly field?: FieldPointer;
  readonly information?: bigint;
  readonly commandSpecific?: number;

  constructor(reason: SenseReason, options: SenseErrorOptions = {}) {
    super(reason);
    this.name = 'SenseError';
    this.reason = reason;
    this.field = options.field;
    this.information = options.information === undefined ? undefined : BigInt(options.information);
    this.commandSpecific = options.commandSpecific;
  }
}

/** Shorthand for the most common case: INVALID FIELD IN CDB pointing at byte/bit. */
export function invalidCdbField(byte: number, bit?: number): SenseError {
  return new SenseError('INVALID_FIELD_IN_CDB', { field: { byte, bit, cd: true } });
}

/** Shorthand: INVALID FIELD IN PARAMETER LIST pointing at byte/bit of the parameter data. */
export function invalidParameterField(byte: number, bit?: number): SenseError {
  return new SenseError('INVALID_FIELD_IN_PARAMETER_LIST', { field: { byte, bit, cd: false } });
}

/** 3 sense-key-specific bytes for a field pointer, SKSV set (reference 1.5). */
export function encodeFieldPointer(field: FieldPointer): Buffer {
  const b = Buffer.alloc(3);
  b[0] = 0x80 | (field.cd ? 0x40 : 0) | (field.sd ? 0x20 : 0) | (field.bit !== undefined ? 0x08 | (field.bit & 0x07) : 0);
  b.writeUInt16BE(field.byte & 0xffff, 1);
  return b;
}

export interface FixedSenseInput {
  key: number;
  asc: number;
  ascq: number;
  information?: bigint;
  commandSpecific?: number;
  /** 3 bytes including SKSV in bit 7 of byte 0. */
  senseKeySpecific?: Buffer;
  deferred?: boolean;
}

export const FIXED_SENSE_LENGTH = 18;

/** Fixed-format sense data, response code 70h/71h, 18 bytes (SPC-5 4.4.3, reference 1.3). */
export function encodeFixedSense(s: FixedSenseInput): Buffer {
  const b = Buffer.alloc(FIXED_SENSE_LENGTH);
  const infoFits = s.information !== undefined && s.information >= 0n && s.information <= 0xffffffffn;
  b[0] = (infoFits ? 0x80 : 0) | (s.deferred ? 0x71 : 0x70);
  b[2] = s.key & 0x0f;
  if (infoFits) b.writeUInt32BE(Number(s.information), 3);
  b[7] = FIXED_SENSE_LENGTH - 8; // ADDITIONAL SENSE LENGTH (n-7)
  if (s.commandSpecific !== undefined) b.writeUInt32BE(s.commandSpecific >>> 0, 8);
  b[12] = s.asc;
  b[13] = s.ascq;
  if (s.senseKeySpecific) s.senseKeySpecific.copy(b, 15, 0, 3);
  return b;
}

/** Key/ASC/ASCQ for a reason. */
export function senseCodes(reason: SenseReason): { key: number; asc: number; ascq: number } {
  const [key, asc, ascq] = SENSE_TABLE[reason];
  return { key, asc, ascq };
}

/** Encode a SenseError as fixed-format sense bytes. */
export function encodeSenseError(err: SenseError): Buffer {
  return encodeFixedSense({
    ...senseCodes(err.reason),
    information: err.information,
    commandSpecific: err.commandSpecific,
    senseKeySpecific: err.field ? encodeFieldPointer(err.field) : undefined,
  });
}

/** Decoded view of fixed sense, for tests and REQUEST SENSE round trips. */
export function decodeFixedSense(b: Buffer): {
  valid: boolean; responseCode: number; key: number; asc: number; ascq: number;
  information: number; sksv: boolean; cd: boolean; bpv: boolean; bit: number; fieldPointer: number;
} {
  return {
    valid: (b[0] & 0x80) !== 0,
    responseCode: b[0] & 0x7f,
    key: b[2] & 0x0f,
    information: b.readUInt32BE(3),
    asc: b[12],
    ascq: b[13],
    sksv: (b[15] & 0x80) !== 0,
    cd: (b[15] & 0x40) !== 0,
    bpv: (b[15] & 0x08) !== 0,
    bit: b[15] & 0x07,
    fieldPointer: b.readUInt16BE(16),
  };
}

/**
 * Descriptor-format sense (72h), for REQUEST SENSE with DESC=1 (SPC-5 4.4.2,
 * reference 1.4): information descriptor (00h) and sense-key-specific
 * descriptor (02h) when present.
 */
export function encodeDescriptorSense(s: FixedSenseInput): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(8);
  header[0] = s.deferred ? 0x73 : 0x72;
  header[1] = s.key & 0x0f;
  header[2] = s.asc;
  header[3] = s.ascq;
  parts.push(header);
  if (s.information !== undefined) {
    const d = Buffer.alloc(12);
    d[0] = 0x00;
    d[1] = 0x0a;
    d[2] = 0x80; // VALID
    d.writeBigUInt64BE(BigInt.asUintN(64, s.information), 4);
    parts.push(d);
  }
  if (s.senseKeySpecific) {
    const d = Buffer.alloc(8);
    d[0] = 0x02;
    d[1] = 0x06;
    s.senseKeySpecific.copy(d, 4, 0, 3);
    parts.push(d);
  }
  const out = Buffer.concat(parts);
  out[7] = out.length - 8;
  return out;
}

/** Sense fields for a SenseError, in the form the encoders take. */
export function senseInput(err: SenseError): FixedSenseInput {
  return {
    ...senseCodes(err.reason),
    information: err.information,
    commandSpecific: err.commandSpecific,
    senseKeySpecific: err.field ? encodeFieldPointer(err.field) : undefined,
  };
}
