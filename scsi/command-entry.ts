/**
 * What one row of the command table is, and the constants its rows are made
 * of: command flags, CDB usage-mask bytes, timeouts and opcodes. A module of
 * its own, without handlers, so the files that build rows (command-table.ts,
 * copy/copy-entries.ts) and the copy engine's internal port import these
 * instead of re-declaring them: command-table.ts spreads copy-entries.ts into
 * its table, so importing them from there would read them before they exist.
 */
import type { DataDirection } from './types';
import type { CommandHandler } from './command-context';
import type { LogicalUnit } from './logical-unit';

export { Opcode, ServiceActionIn16, MaintenanceIn } from './opcodes';

/** Command flags. */
export const CommandFlag = {
  /** Runs on a LUN without a logical unit (SPC-5 4.6.2: INQUIRY, REPORT LUNS, REQUEST SENSE). */
  OK_WITHOUT_LU: 1 << 0,
  /** Neither reports nor clears a unit attention (SAM-5 5.14). */
  NO_UNIT_ATTENTION: 1 << 1,
  /** Modifies the medium: write protection applies (SBC-4 4.11). */
  WRITES_MEDIUM: 1 << 2,
  /**
   * Never conflicts with a persistent reservation (SPC-5 5.14.2 table 63,
   * "Allowed" in every column). Without PR_ALLOWED or PR_READ a command from
   * an I_T nexus without access conflicts (RESERVATION CONFLICT).
   */
  PR_ALLOWED: 1 << 3,
  /** A read: allowed through the Write Exclusive types (SPC-5 table 63, SBC-4 table 12). */
  PR_READ: 1 << 4,
  /** Allowed while another I_T nexus holds a RESERVE(6/10) reservation (SPC-2 7.21.1; CTL ALLOW_ON_RESV). */
  SPC2_ALLOWED: 1 << 5,
} as const;

export interface CommandTimeouts {
  /** Seconds; 0 = not specified. */
  nominal: number;
  recommended: number;
}

/** RSOC command timeouts descriptors (SPC-5 6.35.4) of the table's rows. */
export const Timeouts = {
  FAST: { nominal: 0, recommended: 10 },
  IO: { nominal: 0, recommended: 60 },
  /** A foreground copy may move gigabytes. */
  COPY: { nominal: 0, recommended: 600 },
} as const satisfies Record<string, CommandTimeouts>;

/** Usage-mask byte: every bit of this CDB byte is examined (SPC-5 6.35.3). */
export const USAGE_ALL = 0xff;
/** Usage-mask byte of the CONTROL byte: NACA and LINK are not supported (SAM-5 5.3). */
export const USAGE_CONTROL = 0x00;

export interface CommandEntry {
  readonly opcode: number;
  /** Set for commands that have service actions (byte 1 bits 4:0). */
  readonly serviceAction?: number;
  readonly name: string;
  readonly cdbLength: number;
  readonly usage: readonly number[];
  /** Data transfer direction; checked against the transport's at dispatch (scsi-device.ts). */
  readonly direction: DataDirection;
  readonly flags: number;
  readonly handler: CommandHandler;
  /** Whether the LU enables the command (from its store's declared capabilities). Default: always. */
  readonly enabled?: (lu: LogicalUnit) => boolean;
  readonly timeouts: CommandTimeouts;
}
