/**
 * RECEIVE COPY STATUS/... (opcode 84h; SPC-5 6.18-6.22; reference 2.9) and
 * COPY OPERATION ABORT (83h/1Ch; SPC-5 6.5; reference 2.10).
 */
import * as BL from 'buffer-layout';
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import { ScsiStatus } from '../types';
import { invalidCdbField } from '../sense';
import { copyManagerOf, CopyOperationStatus, type CopyOperation } from './copy-manager';
import {
  DATA_SEGMENT_GRANULARITY_LOG2,
  HELD_DATA_GRANULARITY_LOG2,
  HELD_DATA_LIMIT,
  INLINE_DATA_GRANULARITY_LOG2,
  MAX_CSCD_DESCRIPTORS,
  MAX_DESCRIPTOR_LIST_LENGTH,
  MAX_IDENTIFIED_CONCURRENT_COPIES,
  MAX_INLINE_DATA_LENGTH,
  MAX_SEGMENT_DESCRIPTORS,
  MAX_SEGMENT_LENGTH,
  MAX_STREAM_DEVICE_TRANSFER_SIZE,
  SNLID,
  SUPPORTED_CSCD_TYPES,
  SUPPORTED_SEGMENT_TYPES,
  TOTAL_CONCURRENT_COPIES,
} from './limits';

export const ReceiveCopySa = {
  COPY_STATUS_LID1: 0x00,
  OPERATING_PARAMETERS: 0x03,
  FAILURE_DETAILS_LID1: 0x04,
  COPY_STATUS_LID4: 0x05,
} as const;

/** TRANSFER COUNT UNITS (SPC-5 6.18.2). */
export const TransferCountUnits = { BYTES: 0x00, KIB: 0x01, MIB: 0x02, DESTINATION_BLOCKS: 0xf1 } as const;

/** RECEIVE COPY STATUS(LID1) COPY COMMAND STATUS. */
const Lid1Status = { IN_PROGRESS: 0x00, COMPLETED: 0x01, COMPLETED_WITH_ERRORS: 0x02 } as const;

function allocation(ctx: CommandContext): number {
  return ctx.cdb.readUInt32BE(10);
}

/** Unknown list identifier for this I_T nexus -> 5/24/00 at CDB byte 2 (reference 2.9). */
function unknownListId(): Error {
  return invalidCdbField(2);
}

function lookup(ctx: CommandContext, listId: number): CopyOperation {
  const op = copyManagerOf(ctx).find(ctx.task.nexus.key, ctx.lun, listId);
  if (!op) throw unknownListId();
  return op;
}

interface OperatingParameters {
  availableData: number;
  snlid: number;
  reserved5: number;
  reserved6: number;
  maxCscdCount: number;
  maxSegmentCount: number;
  maxDescriptorListLength: number;
  maxSegmentLength: number;
  maxInlineDataLength: number;
  heldDataLimit: number;
  maxStreamDeviceTransferSize: number;
  reserved32: number;
  totalConcurrentCopies: number;
  maxConcurrentCopies: number;
  dataSegmentGranularity: number;
  inlineDataGranularity: number;
  heldDataGranularity: number;
  reserved40: number;
  reserved42: number;
  implementedDescriptorListLength: number;
}

/** RECEIVE COPY OPERATING PARAMETERS data bytes 0..43 (SPC-5 6.20.2). */
const OPERATING_PARAMETERS = BL.struct<OperatingParameters>([
  BL.u32be('availableData'),
  BL.u8('snlid'),
  BL.u8('reserved5'),
  BL.u16be('reserved6'),
  BL.u16be('maxCscdCount'),
  BL.u16be('maxSegmentCount'),
  BL.u32be('maxDescriptorListLength'),
  BL.u32be('maxSegmentLength'),
  BL.u32be('maxInlineDataLength'),
  BL.u32be('heldDataLimit'),
  BL.u32be('maxStreamDeviceTransferSize'),
  BL.u16be('reserved32'),
  BL.u16be('totalConcurrentCopies'),
  BL.u8('maxConcurrentCopies'),
  BL.u8('dataSegmentGranularity'),
  BL.u8('inlineDataGranularity'),
  BL.u8('heldDataGranularity'),
  BL.u16be('reserved40'),
  BL.u8('reserved42'),
  BL.u8('implementedDescriptorListLength'),
]);

/** The implemented segment and CSCD descriptor type codes, ascending. */
export function implementedDescriptorTypes(): number[] {
  return [...SUPPORTED_SEGMENT_TYPES, ...SUPPORTED_CSCD_TYPES].sort((a, b) => a - b);
}

/** 84h/03h: the same numbers as VPD 8Fh, from the same constants (limits.ts). */
export function encodeOperatingParameters(): Buffer {
  const types = implementedDescriptorTypes();
  const b = Buffer.alloc(44 + types.length);
  OPERATING_PARAMETERS.encode(
    {
      availableData: b.length - 4,
      snlid: SNLID ? 0x01 : 0x00,
      reserved5: 0,
      reserved6: 0,
      maxCscdCount: MAX_CSCD_DESCRIPTORS,
      maxSegmentCount: MAX_SEGMENT_DESCRIPTORS,
      maxDescriptorListLength: MAX_DESCRIPTOR_LIST_LENGTH,
      maxSegmentLength: MAX_SEGMENT_LENGTH,
      maxInlineDataLength: MAX_INLINE_DATA_LENGTH,
      heldDataLimit: HELD_DATA_LIMIT,
      maxStreamDeviceTransferSize: MAX_STREAM_DEVICE_TRANSFER_SIZE,
      reserved32: 0,
      totalConcurrentCopies: SNLID ? TOTAL_CONCURRENT_COPIES : 0,
      maxConcurrentCopies: Math.min(255, MAX_IDENTIFIED_CONCURRENT_COPIES),
      dataSegmentGranularity: DATA_SEGMENT_GRANULARITY_LOG2,
      inlineDataGranularity: INLINE_DATA_GRANULARITY_LOG2,
      heldDataGranularity: HELD_DATA_GRANULARITY_LOG2,
      reserved40: 0,
      reserved42: 0,
      implementedDescriptorListLength: types.length,
    },
    b,
    0,
  );
  Buffer.from(types).copy(b, 44);
  return b;
}

/** TRANSFER COUNT in 32 bits: bytes while they fit, else MiB (as FreeBSD does). */
function transferCount32(bytes: number): { units: number; count: number } {
  if (bytes <= 0xffffffff) return { units: TransferCountUnits.BYTES, count: bytes };
  return { units: TransferCountUnits.MIB, count: Math.min(0xffffffff, Math.floor(bytes / (1024 * 1024))) };
}

/** 84h/00h RECEIVE COPY STATUS(LID1), 12 bytes (SPC-5 6.19). Returned once after completion. */
export function encodeCopyStatusLid1(op: CopyOperation): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32BE(8, 0); // AVAILABLE DATA
  b[4] = op.state === 'running' ? Lid1Status.IN_PROGRESS : op.state === 'completed' ? Lid1Status.COMPLETED : Lid1Status.COMPLETED_WITH_ERRORS;
  b.writeUInt16BE(op.segmentsProcessed & 0xffff, 5);
  const tc = transferCount32(op.bytesTransferred);
  b[7] = tc.units;
  b.writeUInt32BE(tc.count, 8);
  return b;
}

/** 84h/04h RECEIVE COPY FAILURE DETAILS(LID1) (SPC-5 6.21). */
export function encodeFailureDetails(op: CopyOperation): Buffer {
  if (op.state === 'completed') return Buffer.alloc(4); // AVAILABLE DATA 0: no failure details
  const sense = op.failureSense ?? Buffer.alloc(0);
  const b = Buffer.alloc(60 + sense.length);
  b.writeUInt32BE(b.length - 4, 0);
  b[56] = op.completionStatus ?? ScsiStatus.CHECK_CONDITION; // EXTENDED COPY COMMAND STATUS
  b.writeUInt16BE(sense.length, 58);
  sense.copy(b, 60);
  return b;
}

/** 84h/05h RECEIVE COPY STATUS(LID4) (SPC-5 6.22; reference 2.9). */
export function encodeCopyStatusLid4(op: CopyOperation): Buffer {
  const running = op.state === 'running';
  const sense = !running && op.state === 'failed' && op.failureSense ? op.failureSense : Buffer.alloc(0);
  const senseField = Math.ceil(sense.length / 4) * 4; // LENGTH OF THE SENSE DATA FIELD: multiple of 4
  const b = Buffer.alloc(32 + senseField);
  b.writeUInt32BE(b.length - 4, 0);
  b[4] = op.serviceAction & 0x1f; // RESPONSE TO SERVICE ACTION
  let status: number;
  if (running) status = op.background ? CopyOperationStatus.IN_PROGRESS_BACKGROUND : CopyOperationStatus.IN_PROGRESS_FOREGROUND;
  else if (op.state === 'aborted') status = CopyOperationStatus.TERMINATED;
  // SBC-4 PT/WUT: a shortfall with a contiguous TRANSFER COUNT is "partial ROD token usage" (03h).
  else if (op.rod?.partial) status = CopyOperationStatus.COMPLETED_PARTIAL;
  else if (op.state === 'completed') status = CopyOperationStatus.COMPLETED;
  else status = CopyOperationStatus.COMPLETED_WITH_ERRORS;
  b[5] = status;
  b.writeUInt16BE(op.operationCounter & 0xffff, 6);
  // ESTIMATED STATUS UPDATE DELAY (ms): FFFF_FFFEh once the operation has ended.
  b.writeUInt32BE(running ? 100 : 0xfffffffe, 8);
  if (!running) b[12] = op.state === 'aborted' ? ScsiStatus.TASK_ABORTED : op.completionStatus ?? ScsiStatus.GOOD;
  b[13] = senseField;
  b[14] = sense.length;
  if (op.rod) {
    // SBC-4: PT/WUT report logical blocks of the copy destination; SEGMENTS PROCESSED 0.
    b[15] = TransferCountUnits.DESTINATION_BLOCKS;
    b.writeBigUInt64BE(BigInt(op.rod.blocks), 16);
  } else {
    b[15] = TransferCountUnits.BYTES;
    b.writeBigUInt64BE(BigInt(op.bytesTransferred), 16);
    b.writeUInt16BE(Math.min(0xffff, op.segmentsProcessed), 24);
  }
  sense.copy(b, 32);
  return b;
}

export async function executeReceiveCopyStatusLid1(ctx: CommandContext): Promise<CommandResult> {
  const op = lookup(ctx, ctx.cdb[2]);
  const data = encodeCopyStatusLid1(op);
  // SPC-5 6.19: the status of a completed operation is discarded once it has been returned.
  copyManagerOf(ctx).discard(op);
  return allocationLimited(data, allocation(ctx));
}

export async function executeReceiveCopyFailureDetails(ctx: CommandContext): Promise<CommandResult> {
  const op = lookup(ctx, ctx.cdb[2]);
  // Reference 2.9: for an operation still running -> 5/24/00.
  if (op.state === 'running') throw unknownListId();
  const data = encodeFailureDetails(op);
  copyManagerOf(ctx).discard(op);
  return allocationLimited(data, allocation(ctx));
}

export async function executeReceiveCopyOperatingParameters(ctx: CommandContext): Promise<CommandResult> {
  return allocationLimited(encodeOperatingParameters(), allocation(ctx));
}

export async function executeReceiveCopyStatusLid4(ctx: CommandContext): Promise<CommandResult> {
  const op = lookup(ctx, ctx.cdb.readUInt32BE(2));
  return allocationLimited(encodeCopyStatusLid4(op), allocation(ctx));
}

/** 83h/1Ch COPY OPERATION ABORT: returns once the operation's I/O has stopped. */
export async function executeCopyOperationAbort(ctx: CommandContext): Promise<CommandResult> {
  const listId = ctx.cdb.readUInt32BE(2);
  // SPC-5 6.5: no such operation in progress on this I_T nexus -> 5/24/00 at the LIST IDENTIFIER.
  if (!(await copyManagerOf(ctx).abortOperation(ctx.task.nexus.key, ctx.lun, listId))) throw unknownListId();
  return {};
}
