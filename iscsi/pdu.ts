/**
 * iSCSI PDU layout (RFC 7143 §11). The per-PDU hot path uses precomputed
 * offsets on the 48-byte Basic Header Segment; nothing here allocates except
 * the encoders, which fill one fresh header each.
 */

export const BHS_LENGTH = 48;
export const NO_TAG = 0xffffffff;

/** Initiator opcodes (RFC 7143 §11.1.1). */
export enum InitiatorOpcode {
  NOP_OUT = 0x00,
  SCSI_COMMAND = 0x01,
  TASK_MGMT_REQUEST = 0x02,
  LOGIN_REQUEST = 0x03,
  TEXT_REQUEST = 0x04,
  SCSI_DATA_OUT = 0x05,
  LOGOUT_REQUEST = 0x06,
  SNACK_REQUEST = 0x10,
}

/** Target opcodes. */
export enum TargetOpcode {
  NOP_IN = 0x20,
  SCSI_RESPONSE = 0x21,
  TASK_MGMT_RESPONSE = 0x22,
  LOGIN_RESPONSE = 0x23,
  TEXT_RESPONSE = 0x24,
  SCSI_DATA_IN = 0x25,
  LOGOUT_RESPONSE = 0x26,
  R2T = 0x31,
  ASYNC_MESSAGE = 0x32,
  REJECT = 0x3f,
}

/** Reject reasons (RFC 7143 §11.17.1). */
export enum RejectReason {
  DATA_DIGEST_ERROR = 0x02,
  SNACK_REJECT = 0x03,
  PROTOCOL_ERROR = 0x04,
  COMMAND_NOT_SUPPORTED = 0x05,
  IMMEDIATE_COMMAND_REJECT = 0x06,
  TASK_IN_PROGRESS = 0x07,
  INVALID_DATA_ACK = 0x08,
  INVALID_PDU_FIELD = 0x09,
  LONG_OPERATION_REJECT = 0x0a,
  NEGOTIATION_RESET = 0x0b,
  WAITING_FOR_LOGOUT = 0x0c,
}

/** TMF response codes (RFC 7143 §11.6.1). */
export enum TmfResponse {
  COMPLETE = 0,
  TASK_DOES_NOT_EXIST = 1,
  LUN_DOES_NOT_EXIST = 2,
  TASK_STILL_ALLEGIANT = 3,
  REASSIGNMENT_NOT_SUPPORTED = 4,
  NOT_SUPPORTED = 5,
  AUTHORIZATION_FAILED = 6,
  REJECTED = 255,
}

// Flag bits, byte 1.
export const FLAG_F = 0x80;
export const FLAG_C = 0x40; // Text/Login continue
export const FLAG_T = 0x80; // Login transit
export const CMD_FLAG_R = 0x40;
export const CMD_FLAG_W = 0x20;
export const CMD_ATTR_MASK = 0x07;
export const DATAIN_FLAG_A = 0x40;
export const RESP_FLAG_BIDI_OVERFLOW = 0x10;
export const RESP_FLAG_BIDI_UNDERFLOW = 0x08;
export const RESP_FLAG_OVERFLOW = 0x04;
export const RESP_FLAG_UNDERFLOW = 0x02;
export const DATAIN_FLAG_S = 0x01;

// Field offsets shared by every PDU.
const OFF_OPCODE = 0;
const OFF_FLAGS = 1;
const OFF_TOTAL_AHS = 4;
const OFF_DSL = 5;
const OFF_LUN = 8;
const OFF_ITT = 16;
const OFF_TTT = 20;
const OFF_CMDSN = 24; // initiator PDUs; StatSN in target PDUs
const OFF_EXPSTATSN = 28; // initiator PDUs; ExpCmdSN in target PDUs
const OFF_MAXCMDSN = 32; // target PDUs

export function opcodeOf(bhs: Buffer): number {
  return bhs[OFF_OPCODE] & 0x3f;
}
export function isImmediate(bhs: Buffer): boolean {
  return (bhs[OFF_OPCODE] & 0x40) !== 0;
}
export function flagsOf(bhs: Buffer): number {
  return bhs[OFF_FLAGS];
}
export function totalAhsLength(bhs: Buffer, off = 0): number {
  return bhs[off + OFF_TOTAL_AHS] * 4;
}
export function dataSegmentLength(bhs: Buffer, off = 0): number {
  return (bhs[off + OFF_DSL] << 16) | (bhs[off + OFF_DSL + 1] << 8) | bhs[off + OFF_DSL + 2];
}
export function ittOf(bhs: Buffer): number {
  return bhs.readUInt32BE(OFF_ITT);
}
export function tttOf(bhs: Buffer): number {
  return bhs.readUInt32BE(OFF_TTT);
}
export function cmdSnOf(bhs: Buffer): number {
  return bhs.readUInt32BE(OFF_CMDSN);
}
export function expStatSnOf(bhs: Buffer): number {
  return bhs.readUInt32BE(OFF_EXPSTATSN);
}

/** SCSI Command (01h). */
export const ScsiCommandField = {
  EDTL: 20,
  CDB: 32,
} as const;
/** Data-Out (05h). */
export const DataOutField = {
  DATASN: 36,
  BUFFER_OFFSET: 40,
} as const;
/** TMF request (02h). */
export const TmfField = {
  REF_TASK_TAG: 20,
  REF_CMDSN: 32,
  EXP_DATASN: 36,
} as const;
/** Login request (03h). */
export const LoginField = {
  VERSION_MAX: 2,
  VERSION_MIN: 3,
  ISID: 8,
  TSIH: 14,
  CID: 20,
} as const;
/** Logout request (06h). */
export const LogoutField = {
  CID: 20,
} as const;

/**
 * Decode the 8-byte SAM LUN field into a LUN number: peripheral (00b) and
 * flat space (01b) addressing of the first level; well-known LUNs
 * (C1h xx) become 0xC100 | xx. Anything else yields -1.
 */
export function decodeLun(bhs: Buffer, off = OFF_LUN): number {
  const b0 = bhs[off];
  const b1 = bhs[off + 1];
  const method = b0 >> 6;
  if (method === 0) return b0 === 0 ? b1 : -1;
  if (method === 1) return ((b0 & 0x3f) << 8) | b1;
  if (b0 === 0xc1) return 0xc100 | b1;
  return -1;
}

/** Encode a LUN number in the form decodeLun reads (flat space above 255). */
export function encodeLun(lun: number, out: Buffer, off = OFF_LUN): void {
  out.fill(0, off, off + 8);
  if (lun >= 0xc100 && lun <= 0xc1ff) {
    out[off] = 0xc1;
    out[off + 1] = lun & 0xff;
  } else if (lun < 256) {
    out[off + 1] = lun;
  } else {
    out[off] = 0x40 | ((lun >> 8) & 0x3f);
    out[off + 1] = lun & 0xff;
  }
}

/** A received PDU. All buffers may alias the receive buffer. */
export interface Pdu {
  /** The 48-byte BHS. */
  readonly bhs: Buffer;
  /** Additional header segments (without the BHS), empty when none. */
  readonly ahs: Buffer;
  /** Data segment without padding or digest. */
  readonly data: Buffer;
}

/** The three sequence numbers every target PDU with status fields carries. */
export interface SequenceNumbers {
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

function newHeader(opcode: number, flags: number, dataLength: number): Buffer {
  const h = Buffer.alloc(BHS_LENGTH);
  h[OFF_OPCODE] = opcode;
  h[OFF_FLAGS] = flags;
  h[OFF_DSL] = (dataLength >>> 16) & 0xff;
  h[OFF_DSL + 1] = (dataLength >>> 8) & 0xff;
  h[OFF_DSL + 2] = dataLength & 0xff;
  return h;
}

function putSn(h: Buffer, sn: SequenceNumbers): void {
  h.writeUInt32BE(sn.statSN >>> 0, OFF_CMDSN);
  h.writeUInt32BE(sn.expCmdSN >>> 0, OFF_EXPSTATSN);
  h.writeUInt32BE(sn.maxCmdSN >>> 0, OFF_MAXCMDSN);
}

export interface ScsiResponseFields {
  itt: number;
  status: number;
  response: number;
  flags: number; // O/U bits
  residual: number;
  expDataSN: number;
  dataLength: number;
}

export function encodeScsiResponse(f: ScsiResponseFields, sn: SequenceNumbers): Buffer {
  const h = newHeader(TargetOpcode.SCSI_RESPONSE, FLAG_F | f.flags, f.dataLength);
  h[2] = f.response;
  h[3] = f.status;
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  putSn(h, sn);
  h.writeUInt32BE(f.expDataSN >>> 0, 36);
  h.writeUInt32BE(f.residual >>> 0, 44);
  return h;
}

export interface DataInFields {
  itt: number;
  lun: Buffer | null; // 8 bytes or null
  flags: number; // F, S, O, U
  status: number;
  dataSN: number;
  bufferOffset: number;
  residual: number;
  dataLength: number;
}

export function encodeDataIn(f: DataInFields, sn: SequenceNumbers): Buffer {
  const h = newHeader(TargetOpcode.SCSI_DATA_IN, f.flags, f.dataLength);
  if (f.flags & DATAIN_FLAG_S) h[3] = f.status;
  if (f.lun) f.lun.copy(h, OFF_LUN, 0, 8);
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  h.writeUInt32BE(NO_TAG, OFF_TTT);
  // StatSN only meaningful with S; ExpCmdSN/MaxCmdSN always.
  putSn(h, sn);
  if (!(f.flags & DATAIN_FLAG_S)) h.writeUInt32BE(0, OFF_CMDSN);
  h.writeUInt32BE(f.dataSN >>> 0, 36);
  h.writeUInt32BE(f.bufferOffset >>> 0, 40);
  if (f.flags & DATAIN_FLAG_S) h.writeUInt32BE(f.residual >>> 0, 44);
  return h;
}

export interface R2tFields {
  itt: number;
  ttt: number;
  lun: Buffer;
  r2tSN: number;
  bufferOffset: number;
  desiredLength: number;
}

export function encodeR2t(f: R2tFields, sn: SequenceNumbers): Buffer {
  const h = newHeader(TargetOpcode.R2T, FLAG_F, 0);
  f.lun.copy(h, OFF_LUN, 0, 8);
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  h.writeUInt32BE(f.ttt >>> 0, OFF_TTT);
  putSn(h, sn);
  h.writeUInt32BE(f.r2tSN >>> 0, 36);
  h.writeUInt32BE(f.bufferOffset >>> 0, 40);
  h.writeUInt32BE(f.desiredLength >>> 0, 44);
  return h;
}

export function encodeNopIn(
  f: { itt: number; ttt: number; lun: Buffer | null; dataLength: number },
  sn: SequenceNumbers,
): Buffer {
  const h = newHeader(TargetOpcode.NOP_IN, FLAG_F, f.dataLength);
  if (f.lun) f.lun.copy(h, OFF_LUN, 0, 8);
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  h.writeUInt32BE(f.ttt >>> 0, OFF_TTT);
  putSn(h, sn);
  return h;
}

export function encodeTmfResponse(f: { itt: number; response: number }, sn: SequenceNumbers): Buffer {
  const h = newHeader(TargetOpcode.TASK_MGMT_RESPONSE, FLAG_F, 0);
  h[2] = f.response;
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  putSn(h, sn);
  return h;
}

export interface LoginResponseFields {
  transit: boolean;
  cont: boolean;
  csg: number;
  nsg: number;
  versionMax: number;
  versionActive: number;
  isid: Buffer; // 6 bytes
  tsih: number;
  itt: number;
  statusClass: number;
  statusDetail: number;
  dataLength: number;
}

export function encodeLoginResponse(f: LoginResponseFields, sn: SequenceNumbers): Buffer {
  let flags = (f.csg & 3) << 2;
  if (f.transit) flags |= FLAG_T | (f.nsg & 3);
  if (f.cont) flags |= FLAG_C;
  const h = newHeader(TargetOpcode.LOGIN_RESPONSE, flags, f.dataLength);
  h[2] = f.versionMax;
  h[3] = f.versionActive;
  f.isid.copy(h, LoginField.ISID, 0, 6);
  h.writeUInt16BE(f.tsih, LoginField.TSIH);
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  putSn(h, sn);
  h[36] = f.statusClass;
  h[37] = f.statusDetail;
  return h;
}

export function encodeTextResponse(
  f: { itt: number; ttt: number; final: boolean; cont: boolean; lun: Buffer | null; dataLength: number },
  sn: SequenceNumbers,
): Buffer {
  const h = newHeader(TargetOpcode.TEXT_RESPONSE, (f.final ? FLAG_F : 0) | (f.cont ? FLAG_C : 0), f.dataLength);
  if (f.lun) f.lun.copy(h, OFF_LUN, 0, 8);
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  h.writeUInt32BE(f.ttt >>> 0, OFF_TTT);
  putSn(h, sn);
  return h;
}

export function encodeLogoutResponse(
  f: { itt: number; response: number; time2Wait: number; time2Retain: number },
  sn: SequenceNumbers,
): Buffer {
  const h = newHeader(TargetOpcode.LOGOUT_RESPONSE, FLAG_F, 0);
  h[2] = f.response;
  h.writeUInt32BE(f.itt >>> 0, OFF_ITT);
  putSn(h, sn);
  h.writeUInt16BE(f.time2Wait, 40);
  h.writeUInt16BE(f.time2Retain, 42);
  return h;
}

export function encodeReject(f: { reason: number; dataSnOrR2tSn: number; dataLength: number }, sn: SequenceNumbers): Buffer {
  const h = newHeader(TargetOpcode.REJECT, FLAG_F, f.dataLength);
  h[2] = f.reason;
  h.writeUInt32BE(NO_TAG, OFF_ITT);
  putSn(h, sn);
  h.writeUInt32BE(f.dataSnOrR2tSn >>> 0, 36);
  return h;
}

export function encodeAsyncMessage(
  f: { lun: Buffer | null; event: number; vcode: number; p1: number; p2: number; p3: number; dataLength: number },
  sn: SequenceNumbers,
): Buffer {
  const h = newHeader(TargetOpcode.ASYNC_MESSAGE, FLAG_F, f.dataLength);
  if (f.lun) f.lun.copy(h, OFF_LUN, 0, 8);
  h.writeUInt32BE(NO_TAG, OFF_ITT);
  putSn(h, sn);
  h[36] = f.event;
  h[37] = f.vcode;
  h.writeUInt16BE(f.p1, 38);
  h.writeUInt16BE(f.p2, 40);
  h.writeUInt16BE(f.p3, 42);
  return h;
}

/** Serial number arithmetic (RFC 1982, 32 bits): a < b. */
export function snLessThan(a: number, b: number): boolean {
  return a !== b && ((b - a) >>> 0) < 0x80000000;
}
export function snLessOrEqual(a: number, b: number): boolean {
  return a === b || snLessThan(a, b);
}
export function snAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** Bytes of padding after a data segment of `n` bytes. */
export function padLength(n: number): number {
  return (4 - (n & 3)) & 3;
}
