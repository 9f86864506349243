/**
 * PERSISTENT RESERVE IN (5Eh), SPC-5 6.16; reference 4.12: READ KEYS,
 * READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS. The state is
 * the LU's reservations (lu.state); this file only encodes them.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import type { Registration } from '../reservations';
import type { ReservationsView } from '../state/lu-state';
import { isAllRegistrants, PrType } from '../reservations';

/** PERSISTENT RESERVE IN service actions. */
export const PrInAction = { READ_KEYS: 0x00, READ_RESERVATION: 0x01, REPORT_CAPABILITIES: 0x02, READ_FULL_STATUS: 0x03 } as const;

/** iSCSI protocol identifier (SPC-5 table 444). */
const PROTOCOL_ISCSI = 0x5;

function allocationLength(ctx: CommandContext): number {
  return ctx.cdb.readUInt16BE(7);
}

function header(generation: number, additionalLength: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(generation, 0); // PRGENERATION
  b.writeUInt32BE(additionalLength, 4); // ADDITIONAL LENGTH: not cut by the allocation length (SPC-5 6.16.2)
  return b;
}

/** READ KEYS (SPC-5 6.16.2): every registered key, one per registration. */
export async function executeReadKeys(ctx: CommandContext): Promise<CommandResult> {
  const pr = ctx.lu!.state.reservations;
  const keys = Buffer.alloc(8 * pr.registrations.length);
  pr.registrations.forEach((r, i) => keys.writeBigUInt64BE(r.key, 8 * i));
  return allocationLimited(Buffer.concat([header(pr.generation, keys.length), keys]), allocationLength(ctx));
}

/** READ RESERVATION (SPC-5 6.16.3): key 0 for all-registrants types (5.14.5.4). */
export async function executeReadReservation(ctx: CommandContext): Promise<CommandResult> {
  const pr = ctx.lu!.state.reservations;
  const res = pr.reservation;
  if (!res) return allocationLimited(header(pr.generation, 0), allocationLength(ctx));
  const body = Buffer.alloc(16);
  body.writeBigUInt64BE(res.holder && !isAllRegistrants(res.type) ? res.holder.key : 0n, 0);
  body[13] = res.type & 0x0f; // SCOPE 0h (LU), TYPE
  return allocationLimited(Buffer.concat([header(pr.generation, body.length), body]), allocationLength(ctx));
}

/** REPORT CAPABILITIES (SPC-5 6.16.4), 8 bytes. */
export async function executeReportCapabilities(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const b = Buffer.alloc(8);
  b.writeUInt16BE(8, 0); // LENGTH
  // CRH=1 (RESERVE/RELEASE per SPC-5 5.14.3), SIP_C=0, ATP_C=1, PTPL_C when the LU can persist.
  b[2] = 0x10 | 0x04 | (lu.persistPath ? 0x01 : 0x00);
  // TMV=1, ALLOW COMMANDS 001b (TEST UNIT READY allowed through WE/EA), PTPL_A.
  b[3] = 0x80 | (0x1 << 4) | (lu.state.reservations.aptpl ? 0x01 : 0x00);
  // PERSISTENT RESERVATION TYPE MASK: every type.
  b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
  b[5] = 0x01; // EX_AC_AR
  return allocationLimited(b, allocationLength(ctx));
}

/**
 * An iSCSI TransportID (SPC-5 7.6.4.6): format 01b for an initiator port
 * name `iqn…,i,0x<ISID>`, 00b for a bare name; NUL-terminated, padded to a
 * multiple of 4, at least 20 bytes of name.
 */
export function encodeIscsiTransportId(initiatorPortName: string): Buffer {
  const withIsid = /,i,0x[0-9a-f]+$/i.test(initiatorPortName);
  const name = Buffer.from(initiatorPortName, 'utf8');
  const length = Math.max(20, Math.ceil((name.length + 1) / 4) * 4);
  const b = Buffer.alloc(4 + length);
  b[0] = (withIsid ? 0x40 : 0x00) | PROTOCOL_ISCSI;
  b.writeUInt16BE(length, 2); // ADDITIONAL LENGTH
  name.copy(b, 4);
  return b;
}

function fullStatusDescriptor(pr: ReservationsView, r: Readonly<Registration>): Buffer {
  const res = pr.reservation;
  const holder = res !== undefined && (isAllRegistrants(res.type) || res.holder === r);
  const tid = encodeIscsiTransportId(r.initiatorPortName);
  const d = Buffer.alloc(24 + tid.length);
  d.writeBigUInt64BE(r.key, 0);
  d[12] = (r.allTgPt ? 0x02 : 0) | (holder ? 0x01 : 0); // ALL_TG_PT, R_HOLDER
  d[13] = holder ? res!.type & 0x0f : 0; // SCOPE/TYPE, only for the holder
  d.writeUInt16BE(r.allTgPt ? 0 : r.relativeTargetPort, 18);
  d.writeUInt32BE(tid.length, 20); // ADDITIONAL DESCRIPTOR LENGTH
  tid.copy(d, 24);
  return d;
}

/** READ FULL STATUS (SPC-5 6.16.5): one descriptor per registration. */
export async function executeReadFullStatus(ctx: CommandContext): Promise<CommandResult> {
  const pr = ctx.lu!.state.reservations;
  const descriptors = Buffer.concat(pr.registrations.map((r) => fullStatusDescriptor(pr, r)));
  return allocationLimited(Buffer.concat([header(pr.generation, descriptors.length), descriptors]), allocationLength(ctx));
}

export { PrType };
