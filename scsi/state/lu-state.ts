/**
 * The state seam (issue 15: several xcopyd nodes serve one LU, their shared
 * state in etcd). What the nodes serving a logical unit must agree on sits
 * behind these interfaces: persistent reservations and unit attentions
 * (LuState, one per LU) and ROD tokens (TokenState, one per daemon).
 * Handlers and the core reach reservations and unit attentions only through
 * `lu.state`; LocalLuState (local-lu-state.ts) keeps them in this process,
 * APTPL reservations in the LU's persist file. A cluster store implements
 * the same interfaces and the composer hands it to each LU
 * (LogicalUnitOptions.state); no handler changes.
 *
 * Contract for an implementation:
 *  - Reads made for every command (`reservations.conflicts`, `takeUa`) are
 *    synchronous: a cluster store answers them from a local replica that a
 *    watch keeps current.
 *  - A PERSISTENT RESERVE OUT is one transaction (`changeReservations`):
 *    `change` runs against the current reservations and either commits
 *    whole - its unit attentions raised, on every node, and APTPL state
 *    durable before the promise resolves - or throws, and nothing changed.
 *    A cluster store runs `change` on a fresh copy of the state it read
 *    (Reservations.restore(snapshot) with a sink that buffers the unit
 *    attentions) and commits with a compare-and-swap on the revision it
 *    read, running `change` again on a conflict: `change` must depend only
 *    on the Reservations it is given. A reservation holder whose node is
 *    gone keeps its reservation (SPC-5: only PR OUT or a power loss without
 *    APTPL end it).
 *  - Unit attentions for every nexus (raiseUaForAll) and for a registration
 *    (raised inside `change` through the Reservations' sink) reach the
 *    nexuses of every node; nexus keys are local to a node, so raiseUa(key)
 *    and the SPC-2 RESERVE(6/10) holder stay on this node.
 */
import type { ItNexus } from '../types';
import type { UnitAttentionReason } from '../sense';
import type { PersistedReservations, Registration, Reservations } from '../reservations';

/** What a reader of the reservations may use: the access check and the PR IN view, no changes. */
export type ReservationsView = Pick<Reservations, 'generation' | 'aptpl' | 'reservation' | 'conflicts' | 'registrationOf' | 'isHolder' | 'snapshot'> & {
  readonly registrations: readonly Readonly<Registration>[];
};

export interface LuState {
  /** The reservations as this node knows them now (SPC-5 5.14, SPC-2 7.21). */
  readonly reservations: ReservationsView;

  /**
   * One PERSISTENT RESERVE OUT (or RESERVE/RELEASE(6/10)) as a transaction:
   * see the header. Resolves with what `change` returned once the change is
   * committed and, when APTPL was or is set, durable.
   */
  changeReservations<T>(change: (r: Reservations) => T): Promise<T>;

  /** A new I_T nexus sees this LU: its unit attention queue starts with `reason` (POWER ON, RESET). */
  attachNexus(nexus: ItNexus, reason: UnitAttentionReason): void;
  /** The I_T nexus is gone: its queue goes, and a RESERVE(6/10) it held is released (SPC-2 5.5.1). */
  detachNexus(nexusKey: string): void;
  /**
   * A logical unit reset (SAM-5 6.3.3): RESERVE(6/10) reservations are
   * released (SPC-2 5.5.1), persistent ones stay (SPC-5 5.14.1), and every
   * nexus gets `reason`.
   */
  reset(reason: UnitAttentionReason): void;

  /** Establish `reason` for one nexus of this node. Reset-class UAs (29h) supersede what is queued. */
  raiseUa(nexusKey: string, reason: UnitAttentionReason): void;
  /** Establish `reason` for every nexus of every node, except `exceptKey` (capacity changed, mode parameters changed). */
  raiseUaForAll(reason: UnitAttentionReason, exceptKey?: string): void;
  /** Take the oldest pending unit attention of a nexus (SAM-5 5.14). */
  takeUa(nexusKey: string): UnitAttentionReason | undefined;
  /** Keys of this node's nexuses that any of `regs` covers (PREEMPT AND ABORT aborts their tasks). */
  nexusKeysCovering(regs: readonly Registration[]): Set<string>;
}

/** What a LU hands to its state when it is made. */
export interface LuStateInit {
  /** The LU's NAA designator (configuration): the same on every node, the key of shared state. */
  naa: Buffer;
  /** Reservations restored from the persist file (APTPL), if any. */
  persisted?: PersistedReservations;
  /** Whether the LU can persist (PTPL_C); APTPL=1 is refused without it. */
  canPersist: boolean;
  /** Write the LU's persistent state (after an APTPL change). */
  persist(): Promise<void>;
}

/** Makes the state of one LU; the composer picks the implementation (local, cluster). */
export type LuStateFactory = (init: LuStateInit) => LuState;

// ---- ROD tokens ----------------------------------------------------------------------------
//
// For the token store (scsi/copy/token-store.ts; wired by the copy engine's owner). Issue 15:
// a token made by POPULATE TOKEN on node A must be accepted by WRITE USING TOKEN on node B, so
// the sealing key (with an id, for rotation) and every token's record and state live behind
// TokenState; the byte-moving parts (side files, in-flight reads, the point-in-time write
// guard) stay in the process that moves bytes. A local TokenState is a Map and the secret from
// the data directory; a cluster one keeps records in etcd, names a storage snapshot taken at
// POPULATE TOKEN as the point in time (deleted with the token), and leaves tombstones so a late
// use anywhere answers EXPIRED / DELETED / CANCELLED rather than UNKNOWN.

/** Why a token stopped being usable (SPC-5 5.17.6.3). */
export type TokenInvalidation = 'expired' | 'deleted' | 'cancelled' | 'revoked';

/** How a token keeps its point in time (token-store.ts header). */
export type TokenPointInTime = 'clone' | 'cow' | 'vulnerable' | 'reference' | 'snapshot';

/** A key ROD tokens are sealed with (HMAC); `id` travels in the token so a rotated key still verifies. */
export interface SealingKey {
  readonly id: number;
  readonly secret: Buffer;
}

/** The shared record of one ROD token: everything another node needs to use it. */
export interface TokenRecord {
  /** Token id, hex: the key of the record. */
  readonly key: string;
  /** The sealed token bytes (512) as handed to the initiator. */
  readonly bytes: Buffer;
  readonly rodType: number;
  readonly pointInTime: TokenPointInTime;
  /** The creator LU by its NAA designator (hex): the same on every node. */
  readonly luNaa: string;
  /** The creator LU's capacity in blocks at creation (a change cancels the token). */
  readonly capacity: bigint;
  /** Source byte ranges in ROD order. */
  readonly ranges: readonly { rod: number; src: number; bytes: number }[];
  readonly bytesRepresented: number;
  readonly inactivityMs: number;
  readonly createdAt: number;
  /** A storage snapshot the token reads from ('snapshot' point in time), named so any node can open it. */
  readonly snapshot?: string;
  state: 'live' | TokenInvalidation;
  /** Last completed use (ms): the inactivity timer restarts after each use. */
  lastUse: number;
}

export interface TokenState {
  /** The key new tokens are sealed with. */
  sealingKey(): SealingKey;
  /** A key by id, for verifying a presented token (rotated keys stay until their tokens are gone). */
  sealingKeyById(id: number): SealingKey | undefined;
  /** The record of a token (live or a tombstone), wherever it was made. */
  get(key: string): TokenRecord | undefined;
  /** Every record (RECEIVE ROD TOKEN INFORMATION / REPORT ALL ROD TOKENS, the live-token cap). */
  list(): readonly TokenRecord[];
  /** Store a new live token; rejects if the key exists. */
  create(record: TokenRecord): Promise<void>;
  /** A use completed: lastUse moves on. */
  touch(key: string, at: number): Promise<void>;
  /** Invalidate as one transaction (a second invalidation keeps the first reason); the record stays until `tombstoneUntil`. */
  invalidate(key: string, why: TokenInvalidation, tombstoneUntil: number): Promise<void>;
}
