/**
 * LuState kept in this process (the single-node default): the LU's
 * Reservations, its unit attention queues per I_T nexus, and the attached
 * nexuses that registrations cover. A change of reservations runs at once on
 * the live state; APTPL state is written to the LU's persist file before the
 * change resolves (SPC-5 5.14.6).
 */
import type { ItNexus } from '../types';
import type { UnitAttentionReason } from '../sense';
import { Reservations, registrationCovers, type Registration } from '../reservations';
import type { LuState, LuStateInit } from './lu-state';

/** A nexus keeps at most this many pending unit attentions (the oldest stay). */
const MAX_QUEUED_UAS = 16;

export class LocalLuState implements LuState {
  readonly reservations: Reservations;
  private readonly uaQueues = new Map<string, UnitAttentionReason[]>();
  /** Attached I_T nexuses (UA delivery to registrations). */
  private readonly nexuses = new Map<string, ItNexus>();
  private readonly persist: () => Promise<void>;

  constructor(init: LuStateInit) {
    this.reservations = new Reservations({ toRegistration: (reg, reason) => this.raiseUaForRegistration(reg, reason) });
    if (init.persisted?.aptpl) this.reservations.restore(init.persisted);
    this.persist = init.persist;
  }

  async changeReservations<T>(change: (r: Reservations) => T): Promise<T> {
    const r = this.reservations;
    const wasAptpl = r.aptpl;
    const out = change(r);
    if (wasAptpl || r.aptpl) await this.persist();
    return out;
  }

  attachNexus(nexus: ItNexus, reason: UnitAttentionReason): void {
    this.nexuses.set(nexus.key, nexus);
    this.uaQueues.set(nexus.key, []);
    this.raiseUa(nexus.key, reason);
  }

  detachNexus(nexusKey: string): void {
    this.nexuses.delete(nexusKey);
    this.uaQueues.delete(nexusKey);
    this.reservations.dropSpc2(nexusKey);
  }

  reset(reason: UnitAttentionReason): void {
    this.reservations.dropSpc2();
    this.raiseUaForAll(reason);
  }

  raiseUa(nexusKey: string, reason: UnitAttentionReason): void {
    let q = this.uaQueues.get(nexusKey);
    if (!q) {
      q = [];
      this.uaQueues.set(nexusKey, q);
    }
    if (isResetUa(reason)) q.length = 0;
    if (q.includes(reason) || q.length >= MAX_QUEUED_UAS) return;
    q.push(reason);
  }

  raiseUaForAll(reason: UnitAttentionReason, exceptKey?: string): void {
    for (const key of this.uaQueues.keys()) if (key !== exceptKey) this.raiseUa(key, reason);
  }

  /**
   * Every attached nexus `reg` covers: the Reservations' sink here, and where
   * a cluster store delivers, on this node, the UAs a change raised anywhere.
   */
  raiseUaForRegistration(reg: Registration, reason: UnitAttentionReason): void {
    for (const n of this.nexuses.values()) if (registrationCovers(reg, n)) this.raiseUa(n.key, reason);
  }

  takeUa(nexusKey: string): UnitAttentionReason | undefined {
    return this.uaQueues.get(nexusKey)?.shift();
  }

  nexusKeysCovering(regs: readonly Registration[]): Set<string> {
    const keys = new Set<string>();
    for (const n of this.nexuses.values()) if (regs.some((r) => registrationCovers(r, n))) keys.add(n.key);
    return keys;
  }
}

/** Reset-class unit attentions (ASC 29h) supersede everything queued. */
function isResetUa(reason: UnitAttentionReason): boolean {
  return reason === 'UA_POWER_ON_RESET' || reason === 'UA_POWER_ON_OCCURRED' ||
    reason === 'UA_BUS_DEVICE_RESET_FUNCTION' || reason === 'UA_I_T_NEXUS_LOSS';
}

/** The default LuStateFactory. */
export function localLuState(init: LuStateInit): LuState {
  return new LocalLuState(init);
}
