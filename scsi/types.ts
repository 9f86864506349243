/**
 * The contract between a transport (iscsi/, or the copy engine's internal
 * initiator) and the SCSI core. scsi/ never imports from iscsi/ or src/.
 *
 * Pipeline: transport builds a ScsiTask -> ScsiTarget.execute(task) ->
 * command table -> CDB validation -> LU state checks -> handler ->
 * BackingStore -> data mover (task.dataIn / task.dataOut) -> ScsiResult.
 */

/** SAM status codes. */
export enum ScsiStatus {
  GOOD = 0x00,
  CHECK_CONDITION = 0x02,
  CONDITION_MET = 0x04,
  BUSY = 0x08,
  RESERVATION_CONFLICT = 0x18,
  TASK_SET_FULL = 0x28,
  ACA_ACTIVE = 0x30,
  TASK_ABORTED = 0x40,
}

/** Direction of data for a command, from the initiator's point of view. */
export type DataDirection = 'none' | 'in' | 'out' | 'bidi';

/**
 * The identity of the initiator side of an I_T nexus. Unit attentions,
 * reservations and ACL checks key on `key`.
 */
export interface ItNexus {
  /** Unique per I_T nexus, e.g. `${initiatorName},i,0x${isid}`. */
  readonly key: string;
  readonly initiatorName: string;
  /** iSCSI initiator port name: `${initiatorName},i,0x${isid}` (SPC TransportID format 01b). */
  readonly initiatorPortName: string;
  /** Relative target port identifier (1-based) through which the nexus exists. */
  readonly relativeTargetPort: number;
  readonly targetPortName: string;
}

/**
 * The data-mover port. The transport fulfils it: iSCSI with immediate data,
 * unsolicited Data-Out and R2T (dataOut), and Data-In PDUs (dataIn); the copy
 * engine's internal initiator from memory. The core never sees an R2T.
 */
export interface ScsiTask {
  /** LUN as decoded from the transport (SAM flat/peripheral addressing already decoded to a number). */
  readonly lun: number;
  /**
   * The CDB. Handed over with the task: the transport must not reuse or change
   * these bytes afterwards (iSCSI copies the CDB out of its receive buffer when
   * the command arrives, since a command may wait for its CmdSN), so the core
   * keeps a view, not another copy.
   */
  readonly cdb: Buffer;
  readonly nexus: ItNexus;
  /** Expected data transfer length the initiator declared for its buffer (bytes). */
  readonly expectedDataTransferLength: number;
  /** Task attribute: 0 untagged, 1 simple, 2 ordered, 3 head of queue, 4 ACA. */
  readonly attribute: number;
  /**
   * The initiator declared Data-Out for this task (iSCSI W bit, RFC 7143
   * 11.3.1; FCP WRDATA). Without it dataOut yields nothing, so the core
   * refuses a Data-Out command that wants data (EDTL > 0) at dispatch.
   */
  readonly isWrite: boolean;
  /**
   * The most Data-Out the transport buffers for one command (bytes), if it has
   * a limit (iSCSI: config limits.maxWriteBuffer). The core refuses a command
   * that asks for more with INVALID FIELD IN CDB before any data moves.
   */
  readonly maxDataOutLength?: number;
  /**
   * Fires when the task is aborted (TMF, LU reset, connection loss). Read only
   * by the commands that watch it (copies, WRITE SAME), so a transport may
   * make it on first use.
   */
  readonly signal: AbortSignal;
  /** The task was aborted (signal.aborted, without making the signal). */
  readonly aborted: boolean;
  /**
   * Abort the task: its signal fires and a pending dataOut rejects with
   * `reason`. The core aborts tasks through it (LU reset, CLEAR TASK SET from
   * another nexus, PREEMPT AND ABORT).
   */
  abort(reason?: Error): void;
  /**
   * Fetch `length` bytes of write data starting at buffer offset 0 (the transport
   * collects immediate, unsolicited and solicited data). Never more than
   * expectedDataTransferLength; the core clamps and reports residuals.
   */
  dataOut(length: number): Promise<Buffer>;
}

/** Sense data in a form transports can encode. Built only by the core. */
export interface SenseData {
  key: number;
  asc: number;
  ascq: number;
  /** 3 bytes of sense-key-specific information (SKSV set by the builder), or undefined. */
  senseKeySpecific?: Buffer;
  /** INFORMATION field (fixed format 4 bytes) if valid. */
  information?: bigint;
  /** COMMAND-SPECIFIC INFORMATION field. */
  commandSpecific?: number;
}

export interface ScsiResult {
  status: ScsiStatus;
  /** Encoded sense buffer (fixed format 70h), present with CHECK CONDITION. */
  sense?: Buffer;
  /**
   * Data-In for the initiator, in order. The transport sends at most
   * expectedDataTransferLength bytes and computes underflow/overflow residuals
   * against `dataInLength` (the length the command wanted to return).
   */
  dataIn?: Buffer[];
  /** Total bytes the command produced for Data-In (may exceed EDTL -> overflow). */
  dataInLength?: number;
  /** Bytes of Data-Out the command consumed (for write residual computation). */
  dataOutLength?: number;
}

/** Task management functions the transport forwards to the core. */
export enum TmfFunction {
  ABORT_TASK = 1,
  ABORT_TASK_SET = 2,
  CLEAR_ACA = 3,
  CLEAR_TASK_SET = 4,
  LOGICAL_UNIT_RESET = 5,
  TARGET_WARM_RESET = 6,
  TARGET_COLD_RESET = 7,
  TASK_REASSIGN = 8,
}

/** Outcome of a task management function, in SAM terms (the transport maps it to its own codes). */
export type TmfOutcome = 'complete' | 'no-such-task' | 'no-such-lun' | 'not-supported' | 'rejected';

/**
 * A SCSI target device as a transport sees it: its logical units, the I_T
 * nexuses it knows, command execution and task management. Implemented in
 * scsi/scsi-device.ts; composed with backing stores in src/.
 */
export interface ScsiDevice {
  /** LUNs that `nexus` may access, ascending (REPORT LUNS and LUN checks use the same list). */
  lunsFor(nexus: ItNexus): number[];
  /** An I_T nexus came into existence (login): queue POWER ON/RESET unit attention for it on every LU. */
  attachNexus(nexus: ItNexus): void;
  /** The I_T nexus is gone (session ended): release RESERVE(6/10) reservations it held, drop its UA queues. */
  detachNexus(nexus: ItNexus): void;
  /**
   * Execute one command. Never throws: every failure becomes a ScsiResult.
   * A task aborted by task management (its own signal, or a reset/clear from
   * any nexus) resolves with status TASK_ABORTED and `aborted: true`; the
   * transport then sends no response for it.
   */
  execute(task: ScsiTask): Promise<ScsiResult & { aborted?: boolean }>;
  /**
   * Task management that spans more than the transport's own tasks:
   * CLEAR TASK SET, LOGICAL UNIT RESET, TARGET WARM/COLD RESET (and CLEAR ACA).
   * Aborts the affected tasks of every nexus, waits until they have settled,
   * and establishes the unit attentions SAM names. ABORT TASK / ABORT TASK SET
   * are done by the transport by aborting its own tasks' signals.
   */
  taskManagement(fn: TmfFunction, nexus: ItNexus, lun: number): Promise<TmfOutcome>;
  /** Sync every backing store and stop accepting commands (daemon shutdown). */
  close(): Promise<void>;
}
