/**
 * The third-party copy entries of the command table (SPC-5 6.5, 6.6, 6.18-6.22;
 * reference 2.1). command-table.ts spreads them into ENTRIES; they drive
 * dispatch, CDB validation, REPORT SUPPORTED OPERATION CODES and the VPD 8Fh
 * Supported Commands descriptor.
 */
import { CommandFlag, Opcode, Timeouts, USAGE_ALL, USAGE_CONTROL, type CommandEntry } from '../command-entry';
import { executeExtendedCopy, ExtendedCopySa } from './extended-copy';
import {
  ReceiveCopySa,
  executeCopyOperationAbort,
  executeReceiveCopyFailureDetails,
  executeReceiveCopyOperatingParameters,
  executeReceiveCopyStatusLid1,
  executeReceiveCopyStatusLid4,
} from './receive-copy-results';
import { RodTokenSa, executePopulateToken } from './populate-token';
import { executeWriteUsingToken } from './write-using-token';
import { RodTokenInfoSa, executeReceiveRodTokenInformation, executeReportAllRodTokens } from './receive-rod-token-information';

export const COPY_OPERATION_ABORT_SA = 0x1c;

const FF = USAGE_ALL;
const C = USAGE_CONTROL;
const T_FAST = Timeouts.FAST;
const T_COPY = Timeouts.COPY;
const { WRITES_MEDIUM, PR_ALLOWED, PR_READ } = CommandFlag;
const XCOPY = Opcode.EXTENDED_COPY;
const RCR = Opcode.RECEIVE_COPY_RESULTS;

/** 83h CDB: SA in byte 1, PARAMETER LIST LENGTH in 10-13. */
const XCOPY_USAGE = [0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
/** 84h LID1-style: LIST IDENTIFIER byte 2, ALLOCATION LENGTH 10-13. */
const RCR_LID1_USAGE = [0x84, 0x1f, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
/** 84h/03h: no list identifier. */
const RCR_OP_PARAMS_USAGE = [0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
/** 84h LID4-style and 83h/1Ch: LIST IDENTIFIER bytes 2-5. */
const RCR_LID4_USAGE = [0x84, 0x1f, FF, FF, FF, FF, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];
const COA_USAGE = [0x83, 0x1f, FF, FF, FF, FF, 0, 0, 0, 0, 0, 0, 0, 0, 0, C];
/** PT/WUT: LIST IDENTIFIER 6-9, PARAMETER LIST LENGTH 10-13, GROUP NUMBER byte 14 bits 4:0 (SBC-4). */
const TOKEN_USAGE = [0x83, 0x1f, 0, 0, 0, 0, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C];
/** 84h/08h: ALLOCATION LENGTH only. */
const RART_USAGE = [0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, C];

export const COPY_ENTRIES: CommandEntry[] = [
  { opcode: XCOPY, serviceAction: ExtendedCopySa.LID1, name: 'EXTENDED COPY(LID1)', cdbLength: 16, usage: XCOPY_USAGE, direction: 'out', flags: 0, handler: executeExtendedCopy, timeouts: T_COPY },
  { opcode: XCOPY, serviceAction: ExtendedCopySa.LID4, name: 'EXTENDED COPY(LID4)', cdbLength: 16, usage: XCOPY_USAGE, direction: 'out', flags: 0, handler: executeExtendedCopy, timeouts: T_COPY },
  { opcode: XCOPY, serviceAction: COPY_OPERATION_ABORT_SA, name: 'COPY OPERATION ABORT', cdbLength: 16, usage: COA_USAGE, direction: 'none', flags: 0, handler: executeCopyOperationAbort, timeouts: T_COPY },
  { opcode: RCR, serviceAction: ReceiveCopySa.COPY_STATUS_LID1, name: 'RECEIVE COPY STATUS(LID1)', cdbLength: 16, usage: RCR_LID1_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyStatusLid1, timeouts: T_FAST },
  { opcode: RCR, serviceAction: ReceiveCopySa.OPERATING_PARAMETERS, name: 'RECEIVE COPY OPERATING PARAMETERS', cdbLength: 16, usage: RCR_OP_PARAMS_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyOperatingParameters, timeouts: T_FAST },
  { opcode: RCR, serviceAction: ReceiveCopySa.FAILURE_DETAILS_LID1, name: 'RECEIVE COPY FAILURE DETAILS(LID1)', cdbLength: 16, usage: RCR_LID1_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyFailureDetails, timeouts: T_FAST },
  { opcode: RCR, serviceAction: ReceiveCopySa.COPY_STATUS_LID4, name: 'RECEIVE COPY STATUS(LID4)', cdbLength: 16, usage: RCR_LID4_USAGE, direction: 'in', flags: 0, handler: executeReceiveCopyStatusLid4, timeouts: T_FAST },
  // ODX (SBC-4): POPULATE TOKEN reads the medium; WRITE USING TOKEN writes it (write protect, reservations).
  { opcode: XCOPY, serviceAction: RodTokenSa.POPULATE_TOKEN, name: 'POPULATE TOKEN', cdbLength: 16, usage: TOKEN_USAGE, direction: 'out', flags: PR_READ, handler: executePopulateToken, timeouts: T_COPY },
  { opcode: XCOPY, serviceAction: RodTokenSa.WRITE_USING_TOKEN, name: 'WRITE USING TOKEN', cdbLength: 16, usage: TOKEN_USAGE, direction: 'out', flags: WRITES_MEDIUM, handler: executeWriteUsingToken, timeouts: T_COPY },
  { opcode: RCR, serviceAction: RodTokenInfoSa.RECEIVE_ROD_TOKEN_INFORMATION, name: 'RECEIVE ROD TOKEN INFORMATION', cdbLength: 16, usage: RCR_LID4_USAGE, direction: 'in', flags: PR_ALLOWED, handler: executeReceiveRodTokenInformation, timeouts: T_FAST },
  { opcode: RCR, serviceAction: RodTokenInfoSa.REPORT_ALL_ROD_TOKENS, name: 'REPORT ALL ROD TOKENS', cdbLength: 16, usage: RART_USAGE, direction: 'in', flags: PR_ALLOWED, handler: executeReportAllRodTokens, timeouts: T_FAST },
];
