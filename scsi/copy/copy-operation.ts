/**
 * One copy operation as RECEIVE COPY RESULTS and RRTI see it (SPC-5 5.17.4,
 * 6.18-6.22): its list identifier, state, progress counters, how it ended,
 * and for POPULATE TOKEN / WRITE USING TOKEN its TRANSFER COUNT in blocks.
 */
import type { ScsiStatus } from '../types';
import type { SenseError } from '../sense';
import { ListIdUsage } from './extended-copy';

/** SPC-5 6.18.5 COPY OPERATION STATUS (RECEIVE COPY STATUS(LID4)). */
export const CopyOperationStatus = {
  COMPLETED: 0x01,
  COMPLETED_WITH_ERRORS: 0x02,
  /** PT/WUT only: completed without errors but partial ROD token usage. */
  COMPLETED_PARTIAL: 0x03,
  IN_PROGRESS_FOREGROUND: 0x11,
  IN_PROGRESS_BACKGROUND: 0x12,
  TERMINATED: 0x60,
} as const;

export type CopyState = 'running' | 'completed' | 'failed' | 'aborted';

/** Why a copy stopped early. */
export type AbortCause = 'copy-operation-abort' | 'task-aborted' | 'reset';

/** One copy operation, as RECEIVE COPY RESULTS sees it. */
export class CopyOperation {
  state: CopyState = 'running';
  /** Segments completed (SEGMENTS PROCESSED). */
  segmentsProcessed = 0;
  /** Bytes written in strict order (TRANSFER COUNT). */
  bytesTransferred = 0;
  /** TRANSFER COUNT when the current segment started (residuals of a failed segment). */
  segmentStartBytes = 0;
  /** Bytes the whole list moves (progress percentage). */
  totalBytes = 0;
  /** Internal commands that completed GOOD (OPERATION COUNTER, wraps at 16 bits). */
  operationCounter = 0;
  /** SCSI status the operation completed with (EXTENDED COPY COMPLETION STATUS). */
  completionStatus?: ScsiStatus;
  /** The sense of a failure, as sent (RECEIVE COPY FAILURE DETAILS / STATUS(LID4)). */
  failure?: SenseError;
  failureSense?: Buffer;
  abortCause?: AbortCause;
  completedAt = 0;
  /**
   * POPULATE TOKEN / WRITE USING TOKEN (SBC-4): TRANSFER COUNT in logical
   * blocks (units F1h), a partial transfer (COPY OPERATION STATUS 03h) and
   * the ROD token RRTI returns.
   */
  rod?: { blocks: number; partial: boolean; token?: Buffer };
  readonly controller = new AbortController();
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly nexusKey: string,
    readonly lun: number,
    readonly listId: number,
    readonly listIdUsage: number,
    /** Service action of the originating command (RESPONSE TO SERVICE ACTION). */
    readonly serviceAction: number,
    readonly background: boolean,
  ) {}

  /** A list identifier names it (LIST ID USAGE 00b/10b). */
  get identified(): boolean {
    return this.listIdUsage !== ListIdUsage.NONE;
  }

  /** Progress 0..100 (for logs and status consumers). */
  get percent(): number {
    if (this.state === 'completed') return 100;
    return this.totalBytes > 0 ? Math.floor((this.bytesTransferred * 100) / this.totalBytes) : 0;
  }
}
