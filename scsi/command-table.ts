/**
 * THE command table. One entry per opcode (and service action). It drives
 * dispatch, CDB validation against the usage mask, REPORT SUPPORTED OPERATION
 * CODES, and (later) the command list of VPD 8Fh. Nothing else says what is
 * supported.
 *
 * Usage mask (SPC-5 6.35.3 CDB USAGE DATA): one byte per CDB byte; a bit set
 * means the device server examines that bit and it may be set. Byte 0 is the
 * opcode itself. A set CDB bit outside the mask -> INVALID FIELD IN CDB with a
 * field pointer to that byte and its highest offending bit. The CONTROL byte
 * mask is 00h: NACA and LINK are not supported (SAM-5 5.3).
 */
import type { LogicalUnit } from './logical-unit';
import { CommandFlag, Opcode, ServiceActionIn16, MaintenanceIn, Timeouts, USAGE_ALL, USAGE_CONTROL, type CommandEntry } from './command-entry';
import { SenseError, invalidCdbField } from './sense';

export { CommandFlag, type CommandEntry, type CommandTimeouts } from './command-entry';
import { executeTestUnitReady } from './commands/test-unit-ready';
import { executeRequestSense } from './commands/request-sense';
import { executeInquiry } from './commands/inquiry';
import { executeReportLuns } from './commands/report-luns';
import { executeReadCapacity10, executeReadCapacity16 } from './commands/read-capacity';
import { executeRead, executeWrite, executeWriteAndVerify, executeVerify } from './commands/read-write';
import { executeSynchronizeCache, executePreFetch } from './commands/synchronize-cache';
import { executeModeSense } from './commands/mode-sense';
import { executeStartStopUnit, executePreventAllowMediumRemoval } from './commands/start-stop-unit';
import { executeReportSupportedOperationCodes } from './commands/report-supported-operation-codes';
import { executeWriteSame } from './commands/write-same';
import { executeUnmap } from './commands/unmap';
import { executeGetLbaStatus } from './commands/get-lba-status';
import { executeCompareAndWrite } from './commands/compare-and-write';
import { executeReportTargetPortGroups } from './commands/report-target-port-groups';
import { COPY_ENTRIES } from './copy/copy-entries';
import { executeModeSelect } from './commands/mode-select';
import { executeReserve, executeRelease } from './commands/reserve-release';
import { executeReadKeys, executeReadReservation, executeReportCapabilities, executeReadFullStatus, PrInAction } from './commands/persistent-reserve-in';
import {
  executeRegister, executePrReserve, executePrRelease, executeClear, executePreempt, executePreemptAndAbort,
  executeRegisterAndIgnore, executeRegisterAndMove, PrOutAction,
} from './commands/persistent-reserve-out';

const T_FAST = Timeouts.FAST;
const T_IO = Timeouts.IO;
const C = USAGE_CONTROL;
const FF = USAGE_ALL;

/** Byte 1 of READ(10/12/16): DPO 10h, FUA 08h, RARC 04h, FUA_NV 02h (obsolete, accepted). RDPROTECT unsupported. */
const READ_B1 = 0x1e;
/** Byte 1 of WRITE(10/12/16): DPO, FUA, FUA_NV. WRPROTECT unsupported. */
const WRITE_B1 = 0x1a;
/** Byte 1 of VERIFY / WRITE AND VERIFY: DPO 10h, BYTCHK 06h. */
const VERIFY_B1 = 0x16;

/** PERSISTENT RESERVE IN/OUT: never blocked by either kind of reservation (SPC-5 table 63; CTL). */
const PR_FLAGS = CommandFlag.PR_ALLOWED | CommandFlag.SPC2_ALLOWED;
const PRIN_USAGE = [0x5e, 0x1f, 0, 0, 0, 0, 0, FF, FF, C];
/** Byte 2 SCOPE/TYPE, 5-8 PARAMETER LIST LENGTH. */
const PROUT_USAGE = [0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, C];

const ENTRIES: CommandEntry[] = [
  { opcode: Opcode.TEST_UNIT_READY, name: 'TEST UNIT READY', cdbLength: 6, usage: [0x00, 0, 0, 0, 0, C], direction: 'none', flags: CommandFlag.PR_ALLOWED, handler: executeTestUnitReady, timeouts: T_FAST },
  { opcode: Opcode.REQUEST_SENSE, name: 'REQUEST SENSE', cdbLength: 6, usage: [0x03, 0x01, 0, 0, FF, C], direction: 'in', flags: CommandFlag.OK_WITHOUT_LU | CommandFlag.NO_UNIT_ATTENTION | CommandFlag.PR_ALLOWED | CommandFlag.SPC2_ALLOWED, handler: executeRequestSense, timeouts: T_FAST },
  { opcode: Opcode.READ_6, name: 'READ(6)', cdbLength: 6, usage: [0x08, 0x1f, FF, FF, FF, C], direction: 'in', flags: CommandFlag.PR_READ, handler: executeRead, timeouts: T_IO },
  { opcode: Opcode.WRITE_6, name: 'WRITE(6)', cdbLength: 6, usage: [0x0a, 0x1f, FF, FF, FF, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWrite, timeouts: T_IO },
  { opcode: Opcode.INQUIRY, name: 'INQUIRY', cdbLength: 6, usage: [0x12, 0x01, FF, FF, FF, C], direction: 'in', flags: CommandFlag.OK_WITHOUT_LU | CommandFlag.NO_UNIT_ATTENTION | CommandFlag.PR_ALLOWED | CommandFlag.SPC2_ALLOWED, handler: executeInquiry, timeouts: T_FAST },
  { opcode: Opcode.MODE_SELECT_6, name: 'MODE SELECT(6)', cdbLength: 6, usage: [0x15, 0x11, 0, 0, FF, C], direction: 'out', flags: 0, handler: executeModeSelect, timeouts: T_FAST },
  { opcode: Opcode.RESERVE_6, name: 'RESERVE(6)', cdbLength: 6, usage: [0x16, 0, 0, 0, 0, C], direction: 'none', flags: CommandFlag.SPC2_ALLOWED, handler: executeReserve, timeouts: T_FAST },
  { opcode: Opcode.RELEASE_6, name: 'RELEASE(6)', cdbLength: 6, usage: [0x17, 0, 0, 0, 0, C], direction: 'none', flags: CommandFlag.SPC2_ALLOWED, handler: executeRelease, timeouts: T_FAST },
  { opcode: Opcode.MODE_SENSE_6, name: 'MODE SENSE(6)', cdbLength: 6, usage: [0x1a, 0x08, FF, FF, FF, C], direction: 'in', flags: CommandFlag.PR_READ, handler: executeModeSense, timeouts: T_FAST },
  { opcode: Opcode.START_STOP_UNIT, name: 'START STOP UNIT', cdbLength: 6, usage: [0x1b, 0x01, 0, 0x0f, 0xf7, C], direction: 'none', flags: CommandFlag.PR_ALLOWED, handler: executeStartStopUnit, timeouts: T_IO },
  { opcode: Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, name: 'PREVENT ALLOW MEDIUM REMOVAL', cdbLength: 6, usage: [0x1e, 0, 0, 0, 0x03, C], direction: 'none', flags: 0, handler: executePreventAllowMediumRemoval, timeouts: T_FAST },
  { opcode: Opcode.READ_CAPACITY_10, name: 'READ CAPACITY(10)', cdbLength: 10, usage: [0x25, 0, FF, FF, FF, FF, 0, 0, 0x01, C], direction: 'in', flags: CommandFlag.PR_ALLOWED, handler: executeReadCapacity10, timeouts: T_FAST },
  { opcode: Opcode.READ_10, name: 'READ(10)', cdbLength: 10, usage: [0x28, READ_B1, FF, FF, FF, FF, 0x1f, FF, FF, C], direction: 'in', flags: CommandFlag.PR_READ, handler: executeRead, timeouts: T_IO },
  { opcode: Opcode.WRITE_10, name: 'WRITE(10)', cdbLength: 10, usage: [0x2a, WRITE_B1, FF, FF, FF, FF, 0x1f, FF, FF, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWrite, timeouts: T_IO },
  { opcode: Opcode.WRITE_AND_VERIFY_10, name: 'WRITE AND VERIFY(10)', cdbLength: 10, usage: [0x2e, VERIFY_B1, FF, FF, FF, FF, 0x1f, FF, FF, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWriteAndVerify, timeouts: T_IO },
  { opcode: Opcode.VERIFY_10, name: 'VERIFY(10)', cdbLength: 10, usage: [0x2f, VERIFY_B1, FF, FF, FF, FF, 0x1f, FF, FF, C], direction: 'out', flags: CommandFlag.PR_READ, handler: executeVerify, timeouts: T_IO },
  { opcode: Opcode.PRE_FETCH_10, name: 'PRE-FETCH(10)', cdbLength: 10, usage: [0x34, 0x02, FF, FF, FF, FF, 0x1f, FF, FF, C], direction: 'none', flags: CommandFlag.PR_READ, handler: executePreFetch, timeouts: T_IO },
  { opcode: Opcode.SYNCHRONIZE_CACHE_10, name: 'SYNCHRONIZE CACHE(10)', cdbLength: 10, usage: [0x35, 0x06, FF, FF, FF, FF, 0x1f, FF, FF, C], direction: 'none', flags: 0, handler: executeSynchronizeCache, timeouts: T_IO },
  { opcode: Opcode.WRITE_SAME_10, name: 'WRITE SAME(10)', cdbLength: 10, usage: [0x41, 0x08, FF, FF, FF, FF, 0x1f, FF, FF, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWriteSame, timeouts: T_IO },
  { opcode: Opcode.UNMAP, name: 'UNMAP', cdbLength: 10, usage: [0x42, 0, 0, 0, 0, 0, 0x1f, FF, FF, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeUnmap, enabled: (lu) => lu.store.canPunchHole, timeouts: T_IO },
  { opcode: Opcode.MODE_SELECT_10, name: 'MODE SELECT(10)', cdbLength: 10, usage: [0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, C], direction: 'out', flags: 0, handler: executeModeSelect, timeouts: T_FAST },
  { opcode: Opcode.RESERVE_10, name: 'RESERVE(10)', cdbLength: 10, usage: [0x56, 0, 0, 0, 0, 0, 0, 0, 0, C], direction: 'none', flags: CommandFlag.SPC2_ALLOWED, handler: executeReserve, timeouts: T_FAST },
  { opcode: Opcode.RELEASE_10, name: 'RELEASE(10)', cdbLength: 10, usage: [0x57, 0, 0, 0, 0, 0, 0, 0, 0, C], direction: 'none', flags: CommandFlag.SPC2_ALLOWED, handler: executeRelease, timeouts: T_FAST },
  { opcode: Opcode.MODE_SENSE_10, name: 'MODE SENSE(10)', cdbLength: 10, usage: [0x5a, 0x18, FF, FF, 0, 0, 0, FF, FF, C], direction: 'in', flags: CommandFlag.PR_READ, handler: executeModeSense, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_IN, serviceAction: PrInAction.READ_KEYS, name: 'PERSISTENT RESERVE IN READ KEYS', cdbLength: 10, usage: PRIN_USAGE, direction: 'in', flags: PR_FLAGS, handler: executeReadKeys, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_IN, serviceAction: PrInAction.READ_RESERVATION, name: 'PERSISTENT RESERVE IN READ RESERVATION', cdbLength: 10, usage: PRIN_USAGE, direction: 'in', flags: PR_FLAGS, handler: executeReadReservation, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_IN, serviceAction: PrInAction.REPORT_CAPABILITIES, name: 'PERSISTENT RESERVE IN REPORT CAPABILITIES', cdbLength: 10, usage: PRIN_USAGE, direction: 'in', flags: PR_FLAGS, handler: executeReportCapabilities, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_IN, serviceAction: PrInAction.READ_FULL_STATUS, name: 'PERSISTENT RESERVE IN READ FULL STATUS', cdbLength: 10, usage: PRIN_USAGE, direction: 'in', flags: PR_FLAGS, handler: executeReadFullStatus, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.REGISTER, name: 'PERSISTENT RESERVE OUT REGISTER', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executeRegister, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.RESERVE, name: 'PERSISTENT RESERVE OUT RESERVE', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executePrReserve, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.RELEASE, name: 'PERSISTENT RESERVE OUT RELEASE', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executePrRelease, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.CLEAR, name: 'PERSISTENT RESERVE OUT CLEAR', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executeClear, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.PREEMPT, name: 'PERSISTENT RESERVE OUT PREEMPT', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executePreempt, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.PREEMPT_AND_ABORT, name: 'PERSISTENT RESERVE OUT PREEMPT AND ABORT', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executePreemptAndAbort, timeouts: T_IO },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, name: 'PERSISTENT RESERVE OUT REGISTER AND IGNORE EXISTING KEY', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executeRegisterAndIgnore, timeouts: T_FAST },
  { opcode: Opcode.PERSISTENT_RESERVE_OUT, serviceAction: PrOutAction.REGISTER_AND_MOVE, name: 'PERSISTENT RESERVE OUT REGISTER AND MOVE', cdbLength: 10, usage: PROUT_USAGE, direction: 'out', flags: PR_FLAGS, handler: executeRegisterAndMove, timeouts: T_FAST },
  { opcode: Opcode.READ_16, name: 'READ(16)', cdbLength: 16, usage: [0x88, READ_B1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'in', flags: CommandFlag.PR_READ, handler: executeRead, timeouts: T_IO },
  { opcode: Opcode.COMPARE_AND_WRITE, name: 'COMPARE AND WRITE', cdbLength: 16, usage: [0x89, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, 0x1f, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeCompareAndWrite, timeouts: T_IO },
  { opcode: Opcode.WRITE_16, name: 'WRITE(16)', cdbLength: 16, usage: [0x8a, WRITE_B1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWrite, timeouts: T_IO },
  { opcode: Opcode.WRITE_AND_VERIFY_16, name: 'WRITE AND VERIFY(16)', cdbLength: 16, usage: [0x8e, VERIFY_B1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWriteAndVerify, timeouts: T_IO },
  { opcode: Opcode.VERIFY_16, name: 'VERIFY(16)', cdbLength: 16, usage: [0x8f, VERIFY_B1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'out', flags: CommandFlag.PR_READ, handler: executeVerify, timeouts: T_IO },
  { opcode: Opcode.PRE_FETCH_16, name: 'PRE-FETCH(16)', cdbLength: 16, usage: [0x90, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'none', flags: CommandFlag.PR_READ, handler: executePreFetch, timeouts: T_IO },
  { opcode: Opcode.SYNCHRONIZE_CACHE_16, name: 'SYNCHRONIZE CACHE(16)', cdbLength: 16, usage: [0x91, 0x06, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'none', flags: 0, handler: executeSynchronizeCache, timeouts: T_IO },
  { opcode: Opcode.WRITE_SAME_16, name: 'WRITE SAME(16)', cdbLength: 16, usage: [0x93, 0x09, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWriteSame, timeouts: T_IO },
  { opcode: Opcode.SERVICE_ACTION_IN_16, serviceAction: ServiceActionIn16.GET_LBA_STATUS, name: 'GET LBA STATUS', cdbLength: 16, usage: [0x9e, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x03, C], direction: 'in', flags: CommandFlag.PR_READ, handler: executeGetLbaStatus, enabled: (lu) => lu.store.canSeekData, timeouts: T_IO },
  { opcode: Opcode.SERVICE_ACTION_IN_16, serviceAction: ServiceActionIn16.READ_CAPACITY_16, name: 'READ CAPACITY(16)', cdbLength: 16, usage: [0x9e, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, C], direction: 'in', flags: CommandFlag.PR_ALLOWED, handler: executeReadCapacity16, timeouts: T_FAST },
  { opcode: Opcode.REPORT_LUNS, name: 'REPORT LUNS', cdbLength: 12, usage: [0xa0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, C], direction: 'in', flags: CommandFlag.OK_WITHOUT_LU | CommandFlag.NO_UNIT_ATTENTION | CommandFlag.PR_ALLOWED | CommandFlag.SPC2_ALLOWED, handler: executeReportLuns, timeouts: T_FAST },
  { opcode: Opcode.MAINTENANCE_IN, serviceAction: MaintenanceIn.REPORT_TARGET_PORT_GROUPS, name: 'REPORT TARGET PORT GROUPS', cdbLength: 12, usage: [0xa3, 0x3f, 0, 0, 0, 0, FF, FF, FF, FF, 0, C], direction: 'in', flags: CommandFlag.PR_ALLOWED, handler: executeReportTargetPortGroups, timeouts: T_FAST },
  { opcode: Opcode.MAINTENANCE_IN, serviceAction: MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES, name: 'REPORT SUPPORTED OPERATION CODES', cdbLength: 12, usage: [0xa3, 0x1f, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, C], direction: 'in', flags: CommandFlag.PR_ALLOWED, handler: executeReportSupportedOperationCodes, timeouts: T_FAST },
  { opcode: Opcode.READ_12, name: 'READ(12)', cdbLength: 12, usage: [0xa8, READ_B1, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'in', flags: CommandFlag.PR_READ, handler: executeRead, timeouts: T_IO },
  { opcode: Opcode.WRITE_12, name: 'WRITE(12)', cdbLength: 12, usage: [0xaa, WRITE_B1, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWrite, timeouts: T_IO },
  { opcode: Opcode.WRITE_AND_VERIFY_12, name: 'WRITE AND VERIFY(12)', cdbLength: 12, usage: [0xae, VERIFY_B1, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'out', flags: CommandFlag.WRITES_MEDIUM, handler: executeWriteAndVerify, timeouts: T_IO },
  { opcode: Opcode.VERIFY_12, name: 'VERIFY(12)', cdbLength: 12, usage: [0xaf, VERIFY_B1, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, C], direction: 'out', flags: CommandFlag.PR_READ, handler: executeVerify, timeouts: T_IO },
  ...COPY_ENTRIES,
];

/** Where the service action lives for opcodes that have them (byte 1 bits 4:0). */
const SERVICE_ACTION_MASK = 0x1f;

/** Lookup outcome: an entry, or the sense the core must return. */
export type Lookup = { entry: CommandEntry } | { error: SenseError };

export class CommandTable {
  /** opcode -> entry (no SA) or SA -> entry. */
  private readonly byOpcode = new Map<number, CommandEntry | Map<number, CommandEntry>>();
  readonly entries: readonly CommandEntry[];

  constructor(entries: readonly CommandEntry[]) {
    const sorted = [...entries].sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0));
    for (const e of sorted) {
      if (e.usage.length !== e.cdbLength || e.usage[0] !== e.opcode) {
        throw new Error(`command table: ${e.name} usage mask does not match its CDB`);
      }
      const slot = this.byOpcode.get(e.opcode);
      if (e.serviceAction === undefined) {
        if (slot) throw new Error(`command table: duplicate opcode ${e.opcode}`);
        this.byOpcode.set(e.opcode, e);
      } else {
        if (slot && !(slot instanceof Map)) throw new Error(`command table: opcode ${e.opcode} mixes SA and non-SA`);
        const m = slot ?? new Map<number, CommandEntry>();
        if (m.has(e.serviceAction)) throw new Error(`command table: duplicate SA ${e.opcode}/${e.serviceAction}`);
        m.set(e.serviceAction, e);
        this.byOpcode.set(e.opcode, m);
      }
    }
    this.entries = sorted;
  }

  /** True if the opcode is defined with service actions here. */
  hasServiceActions(opcode: number): boolean {
    return this.byOpcode.get(opcode) instanceof Map;
  }

  /** Entry for opcode (+SA), or undefined. Does not consider LU enablement. */
  find(opcode: number, serviceAction?: number): CommandEntry | undefined {
    const slot = this.byOpcode.get(opcode);
    if (!slot) return undefined;
    if (slot instanceof Map) return serviceAction === undefined ? undefined : slot.get(serviceAction);
    return slot;
  }

  /** Whether `lu` supports the entry (table + store capabilities). */
  isEnabled(entry: CommandEntry, lu: LogicalUnit | undefined): boolean {
    if (!entry.enabled) return true;
    return lu !== undefined && entry.enabled(lu);
  }

  /** Supported entries for `lu`, in opcode/SA order (RSOC, VPD). */
  supported(lu: LogicalUnit | undefined): CommandEntry[] {
    return this.entries.filter((e) => this.isEnabled(e, lu));
  }

  /**
   * Logical block provisioning as the table and the LU's store allow it
   * (VPD B2h LBPU/LBPWS/LBPWS10, READ CAPACITY(16) LBPME): a bit is set only
   * if the command that uses it is enabled for this LU.
   */
  provisioning(lu: LogicalUnit): { lbpu: boolean; lbpws: boolean; lbpws10: boolean } {
    const on = (opcode: number): boolean => {
      const e = this.find(opcode);
      return e !== undefined && this.isEnabled(e, lu) && lu.lbpme;
    };
    return { lbpu: on(Opcode.UNMAP), lbpws: on(Opcode.WRITE_SAME_16), lbpws10: on(Opcode.WRITE_SAME_10) };
  }

  /** LBPME: some command can deallocate blocks on this LU. */
  provisioningCommandsEnabled(lu: LogicalUnit): boolean {
    const p = this.provisioning(lu);
    return p.lbpu || p.lbpws || p.lbpws10;
  }

  /**
   * Find the entry for a CDB: unknown opcode -> 5/20/00 (SPC-5 4.4);
   * unknown service action -> 5/24/00 pointing at the SERVICE ACTION field.
   */
  lookup(cdb: Buffer, lu: LogicalUnit | undefined): Lookup {
    const slot = this.byOpcode.get(cdb[0]);
    if (!slot) return { error: new SenseError('INVALID_COMMAND_OPERATION_CODE') };
    let entry: CommandEntry | undefined;
    if (slot instanceof Map) {
      entry = cdb.length > 1 ? slot.get(cdb[1] & SERVICE_ACTION_MASK) : undefined;
      if (!entry) return { error: invalidCdbField(1, 4) };
    } else {
      entry = slot;
    }
    if (!this.isEnabled(entry, lu)) {
      return { error: entry.serviceAction === undefined ? new SenseError('INVALID_COMMAND_OPERATION_CODE') : invalidCdbField(1, 4) };
    }
    return { entry };
  }
}

/**
 * CDB validation against the usage mask (SPC-5 4.2.1 reserved fields;
 * CTL-style). Returns the first offending byte with its highest bit.
 */
export function validateCdb(entry: CommandEntry, cdb: Buffer): SenseError | undefined {
  if (cdb.length < entry.cdbLength) return invalidCdbField(cdb.length);
  for (let i = 1; i < entry.cdbLength; i++) {
    const bad = cdb[i] & ~entry.usage[i] & 0xff;
    if (bad !== 0) return invalidCdbField(i, 31 - Math.clz32(bad));
  }
  return undefined;
}

export const COMMAND_TABLE = new CommandTable(ENTRIES);
