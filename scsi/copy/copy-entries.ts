/**
 * The third-party copy entries of the command table (SPC-5 6.5, 6.6, 6.18-6.22;
 * reference 2.1). command-table.ts spreads them into ENTRIES; they drive
 * dispatch, CDB validation, REPORT SUPPORTED OPERATION CODES and the VPD 8Fh
 * Supported Commands descriptor.
 */
import type { CommandEntry } from '../command-table';
import { executeExtendedCopy, ExtendedCopySa } from './extended-copy';
import {
  ReceiveCopySa,
  executeCopyOperationAbort,
  executeReceiveCopyFailureDetails,
  executeReceiveCopyOperatingParameters,
  executeReceiveCopyStatusLid1,
  executeReceiveCopyStatusLid4,
} from './receive-copy-results';

export const Opcode3pc = { EXTENDED_COPY: 0x83, RECEIVE_COPY_RESULTS: 0x84 } as const;
export const COPY_OPERATION_ABORT_SA = 0x1c;

const FF = 0xff;
const C = 0x00;
const T_FAST = { nominal: 0, recommended: 10 };
/** A foreground copy may move gigabytes. */
const T_COPY = { nominal: 0, recommended: 600 };

/** 83h CDB: SA in byte 1, PARAMETER LIST LENGTH in 10-13. */
const XCOPY_USAGE = [0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
/** 84h LID1-style: LIST IDENTIFIER byte 2, ALLOCATION LENGTH 10-13. */
const RCR_LID1_USAGE = [0x84, 0x1f, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
/** 84h/03h: no list identifier. */
const RCR_OP_PARAMS_USAGE = [0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
/** 84h LID4-style and 83h/1Ch: LIST IDENTIFIER bytes 2-5. */
const RCR_LID4_USAGE = [0x84, 0x1f, FF, FF, FF, FF, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
const COA_USAGE = [0x83, 0x1f, FF, FF, FF, FF, 0, 0, 0, 0, 0, 0, 0, 0, 0, C];

export const COPY_ENTRIES: CommandEntry[] = [
  { opcode: 0x83, serviceAction: ExtendedCopySa.LID1, name: 'EXTENDED COPY(LID1)', cdbLength: 16, usage: XCOPY_USAGE, direction: 'out', flags: 0, handler: executeExtendedCopy, timeouts: T_COPY },
  { opcode: 0x83, serviceAction: ExtendedCopySa.LID4, name: 'EXTENDED COPY(LID4)', cdbLength: 16, usage: XCOPY_USAGE, direction: 'out', flags: 0, handler: executeExtendedCopy, timeouts: T_COPY },
  { opcode: 0x83, serviceAction: COPY_OPERATION_ABORT_SA, name: 'COPY OPERATION ABORT', cdbLength: 16, usage: COA_USAGE, direction: 'none', flags: 0, handler: executeCopyOperationAbort, timeouts: T_COPY },
  { opcode: 0x84, serviceAction: ReceiveCopySa.COPY_STATUS_LID1, name: 'RECEIVE COPY STATUS(LID1)', cdbLength: 16, usage: RCR_LID1_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyStatusLid1, timeouts: T_FAST },
  { opcode: 0x84, serviceAction: ReceiveCopySa.OPERATING_PARAMETERS, name: 'RECEIVE COPY OPERATING PARAMETERS', cdbLength: 16, usage: RCR_OP_PARAMS_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyOperatingParameters, timeouts: T_FAST },
  { opcode: 0x84, serviceAction: ReceiveCopySa.FAILURE_DETAILS_LID1, name: 'RECEIVE COPY FAILURE DETAILS(LID1)', cdbLength: 16, usage: RCR_LID1_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyFailureDetails, timeouts: T_FAST },
  { opcode: 0x84, serviceAction: ReceiveCopySa.COPY_STATUS_LID4, name: 'RECEIVE COPY STATUS(LID4)', cdbLength: 16, usage: RCR_LID4_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyStatusLid4, timeouts: T_FAST },
];
