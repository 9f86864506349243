/** What a command handler sees and returns. Handlers never build sense or status. */
import type { Logger } from 'pino';
import type { ItNexus, ScsiStatus, ScsiTask } from './types';
import type { LogicalUnit } from './logical-unit';
import type { CommandEntry, CommandTable } from './command-table';
import type { CopyManager } from './copy/copy-manager';
import type { RodTokenStore } from './copy/token-store';
import type { Alua } from './alua';

/** Device-level services a handler may need (REPORT LUNS, REQUEST SENSE, RSOC, VPD 83h). */
export interface DeviceServices {
  readonly table: CommandTable;
  /** This node's target port group. */
  readonly targetPortGroup: number;
  /** Relative target port identifiers of every group (PR REGISTER AND MOVE). */
  readonly relativeTargetPorts: readonly number[];
  /** The target port groups and their access states (REPORT TARGET PORT GROUPS, VPD 83h). */
  readonly alua: Alua;
  /** Standard INQUIRY fields for LUNs without a logical unit (PQ 011b). */
  readonly defaultIdentity: { vendor: string; product: string; revision: string };
  /** VERSION DESCRIPTORS of standard INQUIRY data (SPC-5 6.7.2). */
  readonly versionDescriptors: readonly number[];
  lunsFor(nexus: ItNexus): number[];
  /** The device's copy manager (EXTENDED COPY, RECEIVE COPY RESULTS, COPY OPERATION ABORT). */
  readonly copyManager?: CopyManager;
  /** ROD tokens (POPULATE TOKEN, WRITE USING TOKEN); shared by every device of a daemon. */
  readonly rodTokens?: RodTokenStore;
  /**
   * Abort the tasks of `nexusKeys` on `lun` and wait until they have settled
   * (PREEMPT AND ABORT, SPC-5 5.14.12.3). The calling task is never among them.
   */
  abortTasksOf(lun: number, nexusKeys: ReadonlySet<string>): Promise<void>;
}

export interface CommandContext {
  readonly task: ScsiTask;
  /** A private copy of the CDB, exactly entry.cdbLength bytes. */
  readonly cdb: Buffer;
  readonly entry: CommandEntry;
  readonly lun: number;
  /**
   * The addressed logical unit. Always set unless the entry has the
   * OK_WITHOUT_LU flag (INQUIRY, REPORT LUNS, REQUEST SENSE).
   */
  readonly lu: LogicalUnit | undefined;
  readonly device: DeviceServices;
  /** Aborted when the task is aborted (its own signal, or task management). */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /**
   * Fetch Data-Out bytes (<= EDTL). Rejects with an AbortError when the task is
   * aborted, even if the transport never delivers.
   */
  dataOut(length: number): Promise<Buffer>;
  /**
   * The Data-Out length the CDB implies (SPDTL); the transport computes
   * underflow/overflow residuals from it even when the command fails.
   */
  dataOutLength?: number;
}

export interface CommandResult {
  /** GOOD unless the handler succeeded with another status (e.g. CONDITION MET). */
  status?: ScsiStatus;
  dataIn?: Buffer[];
  /** Total Data-In bytes the command produced (defaults to the sum of dataIn). */
  dataInLength?: number;
}

export type CommandHandler = (ctx: CommandContext) => Promise<CommandResult | void>;

/** Return `data` limited by an ALLOCATION LENGTH (SPC-5 4.2.5.6). */
export function allocationLimited(data: Buffer, allocationLength: number): CommandResult {
  const n = Math.min(data.length, allocationLength);
  return { dataIn: n > 0 ? [data.subarray(0, n)] : [], dataInLength: n };
}
