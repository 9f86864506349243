/**
 * The SCSI target device: the command pipeline and task management.
 * Implements the transport contract `ScsiDevice` of scsi/types.ts. Its parts:
 * lun-map.ts (which LU a nexus reaches under which LUN), task-set.ts (the
 * running commands, aborted by TMFs and resets), admission.ts (the checks
 * before a handler, shared with the copy engine's internal port), and each
 * LU's state (reservations, unit attentions: scsi/state/).
 *
 * Pipeline for one command (execute):
 *   LUN map -> command table lookup -> CDB usage-mask validation ->
 *   data direction (the table's against the transport's) -> unit attention ->
 *   ALUA access state of the arrival port (alua.ts) -> reservations -> write protect -> handler -> backing store ->
 *   data mover (task.dataOut / result.dataIn) -> ScsiResult.
 * Only `run`'s catch builds CHECK CONDITION; anything that is not a
 * SenseError becomes INTERNAL TARGET FAILURE (4/44/00), logged with its stack.
 *
 * Composer usage (src/):
 *
 *   const device = new ScsiDevice({
 *     logger,                                   // pino Logger
 *     luns: [{ lun: 0, store,                   // a BackingStore (src/backing/file-store.ts)
 *              identity: { vendor: 'XCOPYD', product: 'xcopyd disk', revision: '0001',
 *                          serial: 'from-config', naa: naa6Buffer16 },
 *              limits: {...}, writeCacheEnabled: true }],
 *     targetPortGroup: 1,                       // VPD 83h TPG designator, RTPG
 *     relativeTargetPorts: [1],                 // one per iSCSI portal group (RTPG)
 *     versionDescriptors: [0x00a0, 0x0460, 0x04c0, 0x0960], // SAM-5, SPC-4, SBC-3, iSCSI
 *   });
 *
 * Relative target port numbers come from each task's nexus.
 */
import type { Logger } from 'pino';
import {
  ScsiStatus,
  TmfFunction,
  type ItNexus,
  type ScsiDevice as ScsiDeviceContract,
  type ScsiResult,
  type ScsiTask,
  type TmfOutcome,
} from './types';
import { COMMAND_TABLE, type CommandTable } from './command-table';
import { CommandFlag } from './command-entry';
import type { CommandContext, DeviceServices } from './command-context';
import type { LogicalUnit, LogicalUnitOptions } from './logical-unit';
import { LunMap } from './lun-map';
import { TaskSet } from './task-set';
import { admitCdb, checkAccess, checkDirection } from './admission';
import { AbortError } from './abort';
import { SenseError, encodeDescriptorSense, encodeSenseError, senseInput, type UnitAttentionReason } from './sense';
import { ReservationConflict } from './reservations';
import { VersionDescriptor } from './commands/inquiry';
import { CopyManager, type CopyManagerOptions } from './copy/copy-manager';
import type { CopyScope } from './copy/cscd';
import type { RodTokenStore } from './copy/token-store';
import { Alua, checkAccessState } from './alua';

export interface ScsiDeviceOptions {
  logger: Logger;
  luns: LogicalUnitOptions[];
  /** Target port group reported in VPD 83h (default 1); ignored with `alua`. */
  targetPortGroup?: number;
  /** Relative target port identifiers of the device's ports (REPORT TARGET PORT GROUPS; default [1]); ignored with `alua`. */
  relativeTargetPorts?: number[];
  /**
   * The target port groups and their states (scsi/alua.ts; a cluster's, shared by every device of the
   * daemon). Default: one group `targetPortGroup` with `relativeTargetPorts`, active/optimized.
   */
  alua?: Alua;
  /** Standard INQUIRY for LUNs without a logical unit (default vendor 'XCOPYD'). */
  defaultIdentity?: { vendor: string; product: string; revision: string };
  /** INQUIRY VERSION DESCRIPTORS (default SAM-5, SPC-4, SBC-3). */
  versionDescriptors?: number[];
  /** Per-initiator LUN masking hook (ACLs), given this device's LUN; default: every LUN for every nexus. */
  lunFilter?: (nexus: ItNexus, lun: number) => boolean;
  /**
   * Per-nexus LUN mapping (ACL entries with LUN maps, LIO's "mapped LUNs"):
   * the LUN the initiator addresses -> the LUN of a logical unit of this
   * device. undefined = identity (every LUN as configured). A LUN absent from
   * a returned map does not exist for that nexus. Read at every command, so
   * the composer can change it at run time (configuration reload).
   * Inside the device (tasks, copies, reservations) LUs are named by their own
   * LUN; only REPORT LUNS and the LUN field of a command use the nexus's numbers.
   * A device with a lunMap needs a copyScope that resolves through unitsFor().
   */
  lunMap?: (nexus: ItNexus) => ReadonlyMap<number, number> | undefined;
  /** Replace the command table (tests). */
  table?: CommandTable;
  /**
   * Where EXTENDED COPY CSCD designators resolve: LUs of every target of the
   * daemon that the issuing I_T nexus may access (composer: src/daemon.ts).
   * Default: the LUs of this device that lunsFor(nexus) lists.
   */
  copyScope?: CopyScope;
  /**
   * The ROD token store (one per daemon, so tokens work across targets
   * within the copy scope; composer: src/daemon.ts with the secret from the
   * data directory). Without one, POPULATE TOKEN and WRITE USING TOKEN are
   * not supported (tests: test/support/rod-tokens.ts).
   */
  rodTokens?: RodTokenStore;
  /** Told when a copy operation (EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN) ends (metrics). */
  onCopyFinished?: CopyManagerOptions['onFinished'];
}

/**
 * Data-Out within EDTL. The task's own abort() rejects a pending dataOut, so
 * an abort releases a command even if the transport never delivers.
 */
function dataOut(task: ScsiTask, length: number): Promise<Buffer> {
  if (task.aborted) return Promise.reject(new AbortError('task aborted'));
  if (length > task.expectedDataTransferLength) {
    return Promise.reject(new Error(`dataOut(${length}) beyond EDTL ${task.expectedDataTransferLength}`));
  }
  // More than the transport buffers for one command, asked for by what the CDB implies (not EDTL, so
  // a legal underflow passes): SBC-4 6.6.4 (a transfer beyond the limit: INVALID FIELD IN CDB), as LIO
  // answers a transfer beyond fabric_max_sectors. Thrown here, so UAs, D_SENSE and metrics apply.
  if (task.maxDataOutLength !== undefined && length > task.maxDataOutLength) {
    return Promise.reject(new SenseError('INVALID_FIELD_IN_CDB'));
  }
  return task.dataOut(length);
}

export type ExecuteResult = ScsiResult & { aborted?: boolean };

const ABORTED: ExecuteResult = Object.freeze({ status: ScsiStatus.TASK_ABORTED, aborted: true }) as ExecuteResult;

export class ScsiDevice implements ScsiDeviceContract, DeviceServices {
  readonly table: CommandTable;
  readonly targetPortGroup: number;
  readonly relativeTargetPorts: readonly number[];
  readonly alua: Alua;
  readonly defaultIdentity: { vendor: string; product: string; revision: string };
  readonly versionDescriptors: readonly number[];
  private readonly logger: Logger;
  private readonly luns: LunMap;
  private readonly nexuses = new Map<string, ItNexus>();
  private readonly tasks = new TaskSet();
  readonly copyManager: CopyManager;
  readonly rodTokens?: RodTokenStore;
  private closed = false;
  private readonly stopAlua: () => void;

  constructor(options: ScsiDeviceOptions) {
    this.logger = options.logger;
    this.table = options.table ?? COMMAND_TABLE;
    this.alua = options.alua ?? Alua.single(options.targetPortGroup ?? 1, options.relativeTargetPorts ?? [1]);
    this.targetPortGroup = this.alua.localGroupId;
    this.relativeTargetPorts = this.alua.relativeTargetPorts();
    // SPC-5 5.16.2.6: an implicit transition raises ASYMMETRIC ACCESS STATE CHANGED on every I_T nexus.
    this.stopAlua = this.alua.onChange(() => {
      for (const n of this.nexuses.values()) for (const lu of this.luns.all()) lu.state.raiseUa(n.key, 'UA_ASYMMETRIC_ACCESS_STATE_CHANGED');
    });
    this.defaultIdentity = options.defaultIdentity ?? { vendor: 'XCOPYD', product: 'xcopyd', revision: '0001' };
    this.versionDescriptors = options.versionDescriptors ?? [VersionDescriptor.SAM5, VersionDescriptor.SPC4, VersionDescriptor.SBC3];
    this.luns = new LunMap(options.lunFilter, options.lunMap);
    for (const o of options.luns) this.luns.add(o);
    this.copyManager = new CopyManager({
      logger: this.logger.child({ component: 'copy-manager' }),
      device: this,
      scope: options.copyScope,
      onFinished: options.onCopyFinished,
    });
    this.rodTokens = options.rodTokens;
  }

  /** The logical unit at `lun`, if any (tests, composer). */
  logicalUnit(lun: number): LogicalUnit | undefined {
    return this.luns.get(lun);
  }

  /** Every logical unit of the device (composer, status). */
  logicalUnits(): LogicalUnit[] {
    return [...this.luns.all()];
  }

  /** The LUNs `nexus` addresses, in its own numbering (REPORT LUNS). */
  lunsFor(nexus: ItNexus): number[] {
    return this.luns.lunsFor(nexus);
  }

  /** The logical units `nexus` may reach under any LUN (copy scopes; each LU's own LUN is lu.lun). */
  unitsFor(nexus: ItNexus): LogicalUnit[] {
    return this.luns.unitsFor(nexus);
  }

  /**
   * Add a logical unit at run time (configuration reload). Every attached
   * nexus gets POWER ON, RESET (SAM-5 6.3.1) on it; call lunInventoryChanged()
   * after the composer's changes so the nexuses that see it learn of it.
   */
  addLogicalUnit(o: LogicalUnitOptions): LogicalUnit {
    if (this.closed) throw new Error('device closed');
    const lu = this.luns.add(o);
    for (const n of this.nexuses.values()) lu.state.attachNexus(n, 'UA_POWER_ON_RESET');
    return lu;
  }

  /**
   * Remove a logical unit at run time: new commands to it fail with LOGICAL
   * UNIT NOT SUPPORTED at once; its tasks and copies are aborted and waited
   * for; then its store is flushed and closed. Returns the LU (the composer
   * cancels its ROD tokens), or undefined if there was none.
   */
  async removeLogicalUnit(lun: number): Promise<LogicalUnit | undefined> {
    const lu = this.luns.remove(lun);
    if (!lu) return undefined;
    await this.tasks.abort((t) => t.lun === lun);
    await this.copyManager.reset(lun);
    this.rodTokens?.cancelFor(lu); // its tokens cannot be used any more (reference 2.12: LU removed)
    try {
      await lu.store.flush();
    } finally {
      await lu.store.close();
    }
    return lu;
  }

  /** The LUN inventory each attached nexus sees, as a comparable string (before/after a change). */
  lunInventory(): Map<string, string> {
    const out = new Map<string, string>();
    for (const n of this.nexuses.values()) out.set(n.key, this.luns.inventory(n));
    return out;
  }

  /**
   * SPC-5 (sense 3F/0Eh): a nexus whose LUN inventory differs from `before`
   * gets REPORTED LUNS DATA HAS CHANGED on every LU it now reaches.
   */
  lunInventoryChanged(before: ReadonlyMap<string, string>): void {
    const after = this.lunInventory();
    for (const n of this.nexuses.values()) {
      if (before.get(n.key) === after.get(n.key)) continue;
      for (const lu of this.luns.unitsFor(n)) lu.state.raiseUa(n.key, 'UA_REPORTED_LUNS_DATA_HAS_CHANGED');
    }
  }

  attachNexus(nexus: ItNexus): void {
    this.nexuses.set(nexus.key, nexus);
    // SAM-5 6.3.1: the first command of a new I_T nexus sees POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    for (const lu of this.luns.all()) lu.state.attachNexus(nexus, 'UA_POWER_ON_RESET');
  }

  detachNexus(nexus: ItNexus): void {
    this.nexuses.delete(nexus.key);
    for (const lu of this.luns.all()) lu.state.detachNexus(nexus.key);
    this.copyManager.nexusLost(nexus.key); // retained copy results go with the nexus (SPC-5 5.17.4.4)
  }

  async execute(task: ScsiTask): Promise<ExecuteResult> {
    if (task.aborted) return ABORTED;
    const lu = this.luns.luFor(task.nexus, task.lun);
    // Internally an LU goes by its own LUN, whatever the nexus calls it: aborts span nexuses.
    const record = this.tasks.enter(task, lu?.lun ?? task.lun);
    try {
      const result = await this.run(task, lu, record.lun);
      return task.aborted ? ABORTED : result;
    } finally {
      this.tasks.leave(record);
    }
  }

  /** The pipeline and the one catch that builds CHECK CONDITION. */
  private async run(task: ScsiTask, lu: LogicalUnit | undefined, lun: number): Promise<ScsiResult> {
    let ctx: CommandContext | undefined;
    try {
      if (this.closed) return { status: ScsiStatus.BUSY };
      const entry = admitCdb(this.table, task.cdb, lu);
      checkDirection(entry, task);
      if (lu) {
        // SAM-5 5.14: report one pending unit attention, except to INQUIRY, REPORT LUNS, REQUEST SENSE.
        if (!(entry.flags & CommandFlag.NO_UNIT_ATTENTION)) {
          const ua = lu.state.takeUa(task.nexus.key);
          if (ua) throw new SenseError(ua);
        }
        checkAccessState(this.alua, task.nexus.relativeTargetPort, task.cdb); // standby/unavailable port (SPC-5 5.16.2.4)
        checkAccess(lu, task.nexus, entry);
      }
      const cdb = task.cdb.subarray(0, entry.cdbLength); // the transport handed these bytes over (ScsiTask.cdb)
      ctx = {
        task, cdb, entry, lun, lu, device: this, logger: this.logger,
        dataOut: (length: number): Promise<Buffer> => dataOut(task, length),
        get signal() {
          return task.signal;
        },
      };
      const r = (await entry.handler(ctx)) ?? {};
      const dataIn = r.dataIn;
      const result: ScsiResult = { status: r.status ?? ScsiStatus.GOOD };
      if (dataIn) {
        result.dataIn = dataIn;
        result.dataInLength = r.dataInLength ?? dataIn.reduce((n, b) => n + b.length, 0);
      } else if (r.dataInLength !== undefined) {
        result.dataInLength = r.dataInLength;
      }
      if (ctx.dataOutLength !== undefined) result.dataOutLength = ctx.dataOutLength;
      return result;
    } catch (err) {
      if (task.aborted) return ABORTED;
      if (err instanceof ReservationConflict) {
        const conflict: ScsiResult = { status: ScsiStatus.RESERVATION_CONFLICT };
        if (ctx?.dataOutLength !== undefined) conflict.dataOutLength = ctx.dataOutLength;
        return conflict;
      }
      const result: ScsiResult = { status: ScsiStatus.CHECK_CONDITION };
      // Control mode page D_SENSE selects the format (SPC-5 4.4.1).
      const descriptor = lu?.mode.descriptorSense ?? false;
      if (err instanceof SenseError) {
        result.sense = descriptor ? encodeDescriptorSense(senseInput(err)) : encodeSenseError(err);
      } else {
        this.logger.error({ err, lun: task.lun, cdb: task.cdb.toString('hex') }, 'internal target failure');
        const failure = new SenseError('INTERNAL_TARGET_FAILURE');
        result.sense = descriptor ? encodeDescriptorSense(senseInput(failure)) : encodeSenseError(failure);
      }
      if (ctx?.dataOutLength !== undefined) result.dataOutLength = ctx.dataOutLength;
      return result;
    }
  }

  /**
   * The copy manager's internal port (CTL's model): admit an internal
   * READ(16)/WRITE(16)/TEST UNIT READY on `lun` as if `nexus` sent it: the LU
   * must be visible to the nexus, the CDB valid, and the LU-state checks of
   * the pipeline pass (reservations, write protect). Unit attentions are
   * neither reported nor cleared. Returns RESERVATION CONFLICT or undefined;
   * throws SenseError.
   */
  admitCopyIo(nexus: ItNexus, lun: number, cdb: Buffer): ScsiStatus | undefined {
    const lu = this.luns.reachable(nexus, lun);
    if (!lu || this.closed) throw new SenseError('LOGICAL_UNIT_NOT_SUPPORTED');
    const entry = admitCdb(this.table, cdb, lu);
    checkAccessState(this.alua, nexus.relativeTargetPort, cdb);
    try {
      checkAccess(lu, nexus, entry);
    } catch (err) {
      if (err instanceof ReservationConflict) return ScsiStatus.RESERVATION_CONFLICT;
      throw err;
    }
    return undefined;
  }

  async abortTasksOf(lun: number, nexusKeys: ReadonlySet<string>): Promise<void> {
    await this.tasks.abort((t) => t.lun === lun && nexusKeys.has(t.nexusKey));
  }

  async taskManagement(fn: TmfFunction, nexus: ItNexus, addressed: number): Promise<TmfOutcome> {
    const lu = this.luns.luFor(nexus, addressed);
    const lun = lu?.lun ?? addressed;
    switch (fn) {
      case TmfFunction.ABORT_TASK_SET: {
        if (!lu) return 'no-such-lun';
        await this.tasks.abort((t) => t.lun === lun && t.nexusKey === nexus.key);
        return 'complete';
      }
      case TmfFunction.CLEAR_TASK_SET: {
        if (!lu) return 'no-such-lun';
        const affected = await this.tasks.abort((t) => t.lun === lun);
        // SAM-5 7.4 with TAS=0: other nexuses whose tasks were cleared get 6/2F/00.
        for (const key of affected) if (key !== nexus.key) lu.state.raiseUa(key, 'UA_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR');
        return 'complete';
      }
      case TmfFunction.CLEAR_ACA:
        // NACA is never accepted, so no ACA condition can exist: nothing to clear.
        return lu ? 'complete' : 'no-such-lun';
      case TmfFunction.LOGICAL_UNIT_RESET: {
        if (!lu) return 'no-such-lun';
        await this.tasks.abort((t) => t.lun === lun);
        await this.copyManager.reset(lun); // SPC-5 5.17.4.5: a reset aborts the LU's copies, I/O stopped first
        lu.state.reset('UA_BUS_DEVICE_RESET_FUNCTION'); // SAM-5 6.3.3; SPC-2 5.5.1
        this.logger.info({ lun, initiator: nexus.initiatorPortName }, 'logical unit reset');
        return 'complete';
      }
      case TmfFunction.TARGET_WARM_RESET:
      case TmfFunction.TARGET_COLD_RESET: {
        await this.tasks.abort(() => true);
        await this.copyManager.reset();
        const reason: UnitAttentionReason = fn === TmfFunction.TARGET_COLD_RESET ? 'UA_POWER_ON_OCCURRED' : 'UA_BUS_DEVICE_RESET_FUNCTION';
        for (const l of this.luns.all()) l.state.reset(reason);
        this.logger.info({ initiator: nexus.initiatorPortName, cold: fn === TmfFunction.TARGET_COLD_RESET }, 'target reset');
        return 'complete';
      }
      default:
        // ABORT TASK is done by the transport on its own task's signal; TASK REASSIGN needs ERL 2.
        return 'not-supported';
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopAlua();
    await this.tasks.settled();
    await this.copyManager.close();
    // Tokens of these LUs cannot be used any more (reference 2.12: LU removed).
    for (const lu of this.luns.all()) this.rodTokens?.cancelFor(lu);
    const errors: unknown[] = [];
    for (const lu of this.luns.all()) {
      try {
        await lu.store.flush();
        await lu.store.close();
      } catch (err) {
        errors.push(err);
        this.logger.error({ err, lun: lu.lun }, 'closing backing store failed');
      }
    }
    if (errors.length) throw errors[0];
  }
}
