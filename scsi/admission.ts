/**
 * Admission: the checks between the command table and a handler, in the
 * pipeline's order, shared by host commands (ScsiDevice.run) and the copy
 * engine's internal port (ScsiDevice.admitCopyIo), so copy I/O obeys the same
 * rules as host I/O (CTL's model):
 *
 *   command table lookup -> CDB usage mask -> data direction ->
 *   (unit attention, host commands only) -> reservations -> write protect.
 *
 * Each check throws what the core answers with: SenseError, or
 * ReservationConflict (status RESERVATION CONFLICT, no sense).
 */
import type { ItNexus, ScsiTask } from './types';
import { CommandFlag, type CommandEntry } from './command-entry';
import { validateCdb, type CommandTable } from './command-table';
import type { LogicalUnit } from './logical-unit';
import { ReservationConflict } from './reservations';
import { SenseError } from './sense';

/**
 * The table's entry for `cdb`, its usage mask checked. Unknown opcode 5/20/00,
 * unknown service action 5/24/00 (SPC-5 4.4); to a LUN without a logical unit
 * only INQUIRY, REPORT LUNS and REQUEST SENSE run (SPC-5 4.6.2), anything else
 * is LOGICAL UNIT NOT SUPPORTED.
 */
export function admitCdb(table: CommandTable, cdb: Buffer, lu: LogicalUnit | undefined): CommandEntry {
  const found = table.lookup(cdb, lu);
  if ('error' in found) {
    if (!lu) throw new SenseError('LOGICAL_UNIT_NOT_SUPPORTED');
    throw found.error;
  }
  const entry = found.entry;
  if (!lu && !(entry.flags & CommandFlag.OK_WITHOUT_LU)) throw new SenseError('LOGICAL_UNIT_NOT_SUPPORTED');
  const invalid = validateCdb(entry, cdb);
  if (invalid) throw invalid;
  return entry;
}

/**
 * The table's direction against the command IU: a Data-Out command (WRITE,
 * MODE SELECT, PR OUT, ...) with EDTL > 0 but no Data-Out declared (iSCSI
 * W=0, RFC 7143 11.3.1) cannot get its data. LIO answers a WRITE whose
 * command IU disagrees with its CDB with INVALID FIELD IN COMMAND INFORMATION
 * UNIT (FCP-4 uses it for such IU fields); so do we. EDTL 0 stays the
 * overflow case (libiscsi's residual tests), and Data-Out declared for a
 * Data-In command is ignored (libiscsi Read10Invalid expects GOOD).
 */
export function checkDirection(entry: CommandEntry, task: ScsiTask): void {
  if (entry.direction === 'out' && !task.isWrite && task.expectedDataTransferLength > 0) {
    throw new SenseError('INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');
  }
}

/**
 * Access to the LU's medium: reservations (SPC-5 5.14.2 / SPC-2 7.21, from
 * the table's flags) -> RESERVATION CONFLICT; then write protection for a
 * command that writes the medium (SBC-4 4.11) -> 7/27/00.
 */
export function checkAccess(lu: LogicalUnit, nexus: ItNexus, entry: CommandEntry): void {
  const why = lu.state.reservations.conflicts(nexus, entry.flags);
  if (why) throw new ReservationConflict(why);
  if (entry.flags & CommandFlag.WRITES_MEDIUM) lu.checkWritable();
}
