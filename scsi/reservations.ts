/**
 * Reservations of one logical unit: persistent reservations (SPC-5 5.14,
 * PERSISTENT RESERVE IN/OUT) and the older RESERVE(6/10)/RELEASE(6/10)
 * reservations (SPC-2 7.21, 7.23). The state and its rules live here; the
 * handlers in commands/persistent-reserve-*.ts and commands/reserve-release.ts
 * decode CDBs and parameter lists and call these methods; the core
 * (admission.ts) asks `conflicts()` before every handler, driven by the
 * command table's PR_* / SPC2_* flags.
 *
 * Registrations belong to an I_T nexus, identified by the initiator port name
 * (`iqn…,i,0x<ISID>`, or a bare initiator name for a TransportID of format
 * 00b) and the relative target port, or to every target port with ALL_TG_PT.
 */
import type { ItNexus } from './types';
import { CommandFlag } from './command-entry';
import { SenseError, invalidCdbField, invalidParameterField, type UnitAttentionReason } from './sense';

/** PERSISTENT RESERVE OUT TYPE codes (SPC-5 table 169). */
export const PrType = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const;

export const PR_TYPES: readonly number[] = Object.values(PrType);

/** Write Exclusive family: reads stay allowed for everybody (SPC-5 5.14.2.4). */
export function isWriteExclusive(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE || type === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS;
}

/** All-registrants types: every registered I_T nexus is a reservation holder (SPC-5 5.14.5.4). */
export function isAllRegistrants(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

/** Registrants-only and all-registrants types: registered I_T nexuses have access. */
function registrantsHaveAccess(type: number): boolean {
  return type >= PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
}

/** Thrown by the core and by PR handlers; the core answers with status RESERVATION CONFLICT (18h), no sense. */
export class ReservationConflict extends Error {
  constructor(why: string) {
    super(`reservation conflict: ${why}`);
    this.name = 'ReservationConflict';
  }
}


export interface Registration {
  key: bigint;
  /** `iqn…,i,0x<ISID>` (or a bare initiator name: every ISID). */
  initiatorPortName: string;
  relativeTargetPort: number;
  /** ALL_TG_PT: the registration applies through every target port. */
  allTgPt: boolean;
}

export interface PersistentReservation {
  type: number;
  /** The holding registration; undefined for all-registrants types (every registrant holds it). */
  holder?: Registration;
}

/** What APTPL keeps across a power loss (SPC-5 5.14.6). */
export interface PersistedReservations {
  generation: number;
  aptpl: boolean;
  registrations: Array<{ key: string; initiatorPortName: string; relativeTargetPort: number; allTgPt: boolean }>;
  reservation?: { type: number; holder?: number };
}

/** Unit attentions to establish, per registration or per nexus; the LU delivers them. */
export interface UaSink {
  /** Every attached I_T nexus that `reg` covers. */
  toRegistration(reg: Registration, reason: UnitAttentionReason): void;
}

const MAX_REGISTRATIONS = 256;

export function registrationCovers(reg: Registration, nexus: ItNexus): boolean {
  const port = reg.initiatorPortName === nexus.initiatorPortName || reg.initiatorPortName === nexus.initiatorName;
  return port && (reg.allTgPt || reg.relativeTargetPort === nexus.relativeTargetPort);
}

export interface RegisterInput {
  reservationKey: bigint;
  serviceActionKey: bigint;
  ignoreExistingKey: boolean;
  aptpl: boolean;
  allTgPt: boolean;
}

export class Reservations {
  /** PRGENERATION (SPC-5 6.16.2), 32-bit, wraps. */
  generation = 0;
  /** APTPL as last set by a REGISTER (PTPL_A in REPORT CAPABILITIES). */
  aptpl = false;
  readonly registrations: Registration[] = [];
  reservation: PersistentReservation | undefined;
  /** Nexus key of the RESERVE(6/10) holder. */
  spc2Holder: string | undefined;

  constructor(private readonly ua: UaSink) {}

  registrationOf(nexus: ItNexus): Registration | undefined {
    // Prefer the exact port registration over an ALL_TG_PT or bare-name one.
    return (
      this.registrations.find((r) => r.initiatorPortName === nexus.initiatorPortName && r.relativeTargetPort === nexus.relativeTargetPort && !r.allTgPt) ??
      this.registrations.find((r) => registrationCovers(r, nexus))
    );
  }

  /** SPC-5 5.14.5: the nexus holds the persistent reservation. */
  isHolder(nexus: ItNexus): boolean {
    const res = this.reservation;
    if (!res) return false;
    const reg = this.registrationOf(nexus);
    if (!reg) return false;
    return isAllRegistrants(res.type) || res.holder === reg;
  }

  /**
   * The access check of the core (SPC-5 5.14.2 and table 63; SPC-2 7.21.1):
   * a conflict for `nexus` running a command with the command table's
   * `flags` (PR_ALLOWED: allowed under every type; PR_READ: a read, allowed
   * under the Write Exclusive types; SPC2_ALLOWED: allowed while another
   * nexus holds RESERVE(6/10)), or undefined.
   */
  conflicts(nexus: ItNexus, flags: number): string | undefined {
    if (this.spc2Holder !== undefined && this.spc2Holder !== nexus.key && !(flags & CommandFlag.SPC2_ALLOWED)) return 'RESERVE(6/10) held by another I_T nexus';
    const res = this.reservation;
    if (!res || flags & CommandFlag.PR_ALLOWED) return undefined;
    if (this.isHolder(nexus)) return undefined;
    if (registrantsHaveAccess(res.type) && this.registrationOf(nexus)) return undefined;
    if (isWriteExclusive(res.type) && flags & CommandFlag.PR_READ) return undefined;
    return `persistent reservation type ${res.type}`;
  }

  private bump(): void {
    this.generation = (this.generation + 1) >>> 0;
  }

  private remove(reg: Registration): void {
    const i = this.registrations.indexOf(reg);
    if (i >= 0) this.registrations.splice(i, 1);
  }

  /**
   * The registration is gone: what happens to the reservation it held
   * (SPC-5 5.14.11.2.3). All-registrants: only when the last one leaves.
   * Registrants-only: released, RESERVATIONS RELEASED to the other registrants.
   */
  private afterUnregister(reg: Registration): void {
    const res = this.reservation;
    if (!res) return;
    if (isAllRegistrants(res.type)) {
      if (this.registrations.length === 0) this.reservation = undefined;
      return;
    }
    if (res.holder !== reg) return;
    this.reservation = undefined;
    if (registrantsHaveAccess(res.type)) {
      for (const r of this.registrations) this.ua.toRegistration(r, 'UA_RESERVATIONS_RELEASED');
    }
  }

  /** REGISTER (00h) and REGISTER AND IGNORE EXISTING KEY (06h), SPC-5 5.14.7. */
  register(nexus: ItNexus, p: RegisterInput): void {
    const reg = this.registrationOf(nexus);
    if (!reg) {
      // An unregistered nexus must send RESERVATION KEY 0 (REGISTER) — SPC-5 table 170.
      if (!p.ignoreExistingKey && p.reservationKey !== 0n) throw new ReservationConflict('REGISTER: not registered, key not 0');
      if (p.serviceActionKey === 0n) return; // nothing to register, nothing changes
      if (this.registrations.length >= MAX_REGISTRATIONS) throw new SenseError('INSUFFICIENT_REGISTRATION_RESOURCES');
      this.registrations.push({
        key: p.serviceActionKey,
        initiatorPortName: nexus.initiatorPortName,
        relativeTargetPort: nexus.relativeTargetPort,
        allTgPt: p.allTgPt,
      });
      this.aptpl = p.aptpl;
      this.bump();
      return;
    }
    if (!p.ignoreExistingKey && p.reservationKey !== reg.key) throw new ReservationConflict('REGISTER: reservation key mismatch');
    if (p.serviceActionKey === 0n) {
      this.remove(reg);
      this.afterUnregister(reg);
    } else {
      reg.key = p.serviceActionKey;
    }
    this.aptpl = p.aptpl;
    this.bump();
  }

  /** The nexus's registration whose key is `key`, or RESERVATION CONFLICT (SPC-5 table 170). */
  private checkedRegistration(nexus: ItNexus, key: bigint, what: string): Registration {
    const reg = this.registrationOf(nexus);
    if (!reg) throw new ReservationConflict(`${what}: I_T nexus not registered`);
    if (reg.key !== key) throw new ReservationConflict(`${what}: reservation key mismatch`);
    return reg;
  }

  /** RESERVE (01h), SPC-5 5.14.9. */
  reserve(nexus: ItNexus, key: bigint, type: number): void {
    const reg = this.checkedRegistration(nexus, key, 'RESERVE');
    const res = this.reservation;
    if (res) {
      if (!this.isHolder(nexus)) throw new ReservationConflict('RESERVE: held by another I_T nexus');
      if (res.type !== type) throw new ReservationConflict('RESERVE: holder asked for another type');
      return;
    }
    this.reservation = { type, holder: isAllRegistrants(type) ? undefined : reg };
  }

  /** RELEASE (02h), SPC-5 5.14.11.2.2. */
  release(nexus: ItNexus, key: bigint, type: number): void {
    this.checkedRegistration(nexus, key, 'RELEASE');
    const res = this.reservation;
    if (!res || !this.isHolder(nexus)) return; // GOOD, no effect
    if (res.type !== type) throw new SenseError('INVALID_RELEASE_OF_PERSISTENT_RESERVATION');
    this.reservation = undefined;
    if (registrantsHaveAccess(res.type)) {
      const own = this.registrationOf(nexus);
      for (const r of this.registrations) if (r !== own) this.ua.toRegistration(r, 'UA_RESERVATIONS_RELEASED');
    }
  }

  /** CLEAR (03h), SPC-5 5.14.11.2.6: everything goes; RESERVATIONS PREEMPTED to every other registrant. */
  clear(nexus: ItNexus, key: bigint): void {
    const own = this.checkedRegistration(nexus, key, 'CLEAR');
    for (const r of this.registrations) if (r !== own) this.ua.toRegistration(r, 'UA_RESERVATIONS_PREEMPTED');
    this.registrations.length = 0;
    this.reservation = undefined;
    this.bump();
  }

  /**
   * PREEMPT (04h) / PREEMPT AND ABORT (05h), SPC-5 5.14.12. Returns the
   * registrations removed (their tasks are aborted for PREEMPT AND ABORT).
   */
  preempt(nexus: ItNexus, key: bigint, saKey: bigint, type: number): Registration[] {
    const own = this.checkedRegistration(nexus, key, 'PREEMPT');
    const res = this.reservation;
    const removeWithKey = (k: bigint): Registration[] => {
      const gone = this.registrations.filter((r) => r.key === k && r !== own);
      // The preempting nexus may name its own key: its registration stays (SPC-5 5.14.12.2.1 note).
      if (gone.length === 0 && !(own.key === k)) throw new ReservationConflict('PREEMPT: no registration with that key');
      for (const r of gone) this.remove(r);
      return gone;
    };
    let removed: Registration[];
    if (res && isAllRegistrants(res.type) && saKey === 0n) {
      // All-registrants, SA key 0: everybody else goes, the preempting nexus takes the new type.
      removed = this.registrations.filter((r) => r !== own);
      for (const r of removed) this.remove(r);
      this.reservation = { type, holder: isAllRegistrants(type) ? undefined : own };
    } else if (res && !isAllRegistrants(res.type) && res.holder && res.holder.key === saKey) {
      // Preempting the holder: its registrations go and the reservation moves here (5.14.12.2.2).
      removed = removeWithKey(saKey);
      const changed = res.type !== type;
      this.reservation = { type, holder: isAllRegistrants(type) ? undefined : own };
      if (changed) {
        for (const r of this.registrations) if (r !== own) this.ua.toRegistration(r, 'UA_RESERVATIONS_RELEASED');
      }
    } else {
      // No reservation, or not the holder's key: only registrations go (5.14.12.2.3).
      if (saKey === 0n) throw invalidParameterField(8);
      removed = removeWithKey(saKey);
      if (res && isAllRegistrants(res.type) && this.registrations.length === 0) this.reservation = undefined;
    }
    for (const r of removed) this.ua.toRegistration(r, 'UA_REGISTRATIONS_PREEMPTED');
    this.bump();
    return removed;
  }

  /**
   * REGISTER AND MOVE (07h), SPC-5 5.14.8: register the destination nexus
   * with the SA key and hand it the reservation; UNREG drops the source.
   */
  registerAndMove(nexus: ItNexus, key: bigint, saKey: bigint, dest: { initiatorPortName: string; relativeTargetPort: number }, unreg: boolean, aptpl: boolean): void {
    const own = this.registrationOf(nexus);
    if (!own) throw new ReservationConflict('REGISTER AND MOVE: not registered');
    if (own.key !== key) throw new ReservationConflict('REGISTER AND MOVE: reservation key mismatch');
    const res = this.reservation;
    if (!res || isAllRegistrants(res.type) || res.holder !== own) throw new ReservationConflict('REGISTER AND MOVE: not the reservation holder');
    if (saKey === 0n) throw invalidParameterField(8);
    if (dest.initiatorPortName === own.initiatorPortName && dest.relativeTargetPort === own.relativeTargetPort) throw invalidParameterField(24);
    let target = this.registrations.find((r) => r.initiatorPortName === dest.initiatorPortName && r.relativeTargetPort === dest.relativeTargetPort);
    if (!target) {
      if (this.registrations.length >= MAX_REGISTRATIONS) throw new SenseError('INSUFFICIENT_REGISTRATION_RESOURCES');
      target = { key: saKey, initiatorPortName: dest.initiatorPortName, relativeTargetPort: dest.relativeTargetPort, allTgPt: false };
      this.registrations.push(target);
    }
    this.reservation = { type: res.type, holder: target };
    if (unreg) this.remove(own);
    this.aptpl = aptpl;
    this.bump();
  }

  /** RESERVE(6/10): SPC-2 7.21; a persistent reservation excludes it (SPC-5 5.14.3, CRH=1). */
  reserveSpc2(nexus: ItNexus): void {
    if (this.reservation) throw new ReservationConflict('RESERVE(6/10) under a persistent reservation');
    if (this.spc2Holder !== undefined && this.spc2Holder !== nexus.key) throw new ReservationConflict('RESERVE(6/10) held by another I_T nexus');
    this.spc2Holder = nexus.key;
  }

  /** RELEASE(6/10): only the holder's releases it; anyone else's is GOOD and does nothing (SPC-2 7.23). */
  releaseSpc2(nexus: ItNexus): void {
    if (this.spc2Holder === nexus.key) this.spc2Holder = undefined;
  }

  /** LU reset, target reset, or the holder's I_T nexus went away (SPC-2 5.5.1; SAM-5 6.3). */
  dropSpc2(nexusKey?: string): void {
    if (nexusKey === undefined || this.spc2Holder === nexusKey) this.spc2Holder = undefined;
  }

  snapshot(): PersistedReservations {
    const res = this.reservation;
    return {
      generation: this.generation,
      aptpl: this.aptpl,
      registrations: this.registrations.map((r) => ({ key: r.key.toString(16), initiatorPortName: r.initiatorPortName, relativeTargetPort: r.relativeTargetPort, allTgPt: r.allTgPt })),
      reservation: res ? { type: res.type, holder: res.holder ? this.registrations.indexOf(res.holder) : undefined } : undefined,
    };
  }

  restore(p: PersistedReservations): void {
    this.generation = p.generation >>> 0;
    this.aptpl = p.aptpl;
    this.registrations.length = 0;
    for (const r of p.registrations) {
      this.registrations.push({ key: BigInt(`0x${r.key}`), initiatorPortName: r.initiatorPortName, relativeTargetPort: r.relativeTargetPort, allTgPt: r.allTgPt });
    }
    const res = p.reservation;
    if (res && PR_TYPES.includes(res.type)) {
      const holder = res.holder === undefined ? undefined : this.registrations[res.holder];
      if (isAllRegistrants(res.type) || holder) this.reservation = { type: res.type, holder };
    }
  }
}

/** PR OUT CDB byte 2: SCOPE (7:4) must be LU_SCOPE 0; TYPE (3:0) one of PR_TYPES (SPC-5 6.17.3). */
export function checkScopeAndType(cdb: Buffer, typeMatters: boolean): number {
  if (cdb[2] >> 4 !== 0) throw invalidCdbField(2, 7);
  const type = cdb[2] & 0x0f;
  if (typeMatters && !PR_TYPES.includes(type)) throw invalidCdbField(2, 3);
  return type;
}
