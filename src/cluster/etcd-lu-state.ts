/**
 * LuState in etcd (issue 15; scsi/state/lu-state.ts has the contract): the
 * persistent reservations of one LU, shared by every node serving it, under
 * /xcopyd/<cluster>/lu/<NAA hex>/:
 *
 *  - `pr`: the reservations as Reservations.snapshot() JSON (generation,
 *    APTPL, registrations, reservation). Every node keeps a replica of it,
 *    current through a watch started at the revision of its first read, and
 *    answers the per-command reads (conflicts, PR IN) from it, synchronously.
 *  - `ua`: unit attention events. A PR OUT writes its registrations' unit
 *    attentions here in the same transaction as `pr`; raiseUaForAll writes
 *    one too. Every other node's watch applies them to its own nexuses;
 *    the writer applies its own at once. Nexus keys stay local: raiseUa(key),
 *    the queues and the SPC-2 RESERVE(6/10) holder are this node's.
 *
 * A PR OUT (changeReservations) runs `change` on a fresh Reservations
 * restored from the replica, its unit attentions buffered by the sink, and
 * commits with one transaction: if `pr`'s mod revision is still the one the
 * replica was read at, put the new `pr` and `ua`; else read `pr` (the fresh
 * state comes back in the same round trip) and run `change` again, at most
 * MAX_ATTEMPTS times. A `change` that throws, or changes nothing, is still
 * checked against the current revision (a transaction with no writes), so a
 * conflict is never reported from a stale replica. Changes and raiseUaForAll
 * events of one node are queued (one order, seen so by every node), so only
 * other nodes' changes cause retries.
 *
 * etcd not answering (quorum lost, members restarting): each transaction
 * carries a gRPC deadline (TXN_TIMEOUT_MS), so the client never resends it
 * after its deadline, and the PR OUT tries again until COMMIT_BOUND_MS. Each
 * attempt writes its own op id into `pr`: when an attempt that got no answer
 * turns out to have landed (a later compare fails and the fresh `pr` names
 * it), that is the PR OUT's outcome, applied once. Past the bound the command
 * is answered NOT READY, ASYMMETRIC ACCESS STATE TRANSITION (04h/0Ah), which
 * initiators retry; an unanswered attempt may still land afterwards (etcd
 * cannot say a proposal it did not answer failed), as when a target's
 * response is lost: the state stays one and the same on every node, and its
 * unit attentions still reach this node's nexuses through the watch.
 *
 * A committed PR OUT completes once every other node alive in the
 * membership has it in its replica, unit attentions raised (each node puts
 * ack/<node> = the `pr` revision its replica reached), or after ACK_WAIT_MS:
 * a PR IN or a command through another path right after the PR OUT sees it.
 *
 * Durability: etcd is the store. A committed transaction is on a quorum of
 * etcd members' disks before the promise resolves, APTPL or not, so the
 * LU's persist file is not written (a restarted node reads etcd; a persist
 * file's reservations only seed etcd when it has no state for the LU yet).
 * Registrations without APTPL also survive while etcd does: the cluster is
 * one target whose power is lost only when etcd's state is.
 *
 * A holder on a dead node keeps its reservation: nothing here is bound to a
 * node's lease; only a PR OUT changes `pr`.
 *
 * Until the first read has arrived, every command that is not allowed under
 * every reservation type is told RESERVATION CONFLICT (fail closed); the
 * composer awaits `ready` before the node accepts logins.
 */
import { randomUUID } from 'node:crypto';
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { CommandFlag } from '../../scsi/command-entry';
import type { ItNexus } from '../../scsi/types';
import { SenseError, type UnitAttentionReason } from '../../scsi/sense';
import { Reservations, type PersistedReservations, type Registration } from '../../scsi/reservations';
import { LocalLuState } from '../../scsi/state/local-lu-state';
import type { LuState, LuStateInit, ReservationsView } from '../../scsi/state/lu-state';
import { keys } from './membership';
import { WatchProgress, withTimeout } from './etcd-progress';

/** Attempts of one PR OUT against concurrent changes from other nodes. */
export const MAX_ATTEMPTS = 32;
/** Bound on one etcd transaction of a PR OUT (a gRPC deadline: the client sends nothing after it). */
export const TXN_TIMEOUT_MS = 5_000;
/**
 * Bound on a whole PR OUT, below initiators' command timeouts (Linux 30 s): an etcd outage
 * shorter than this only delays it; past it the command is answered NOT READY, which initiators
 * retry.
 */
export const COMMIT_BOUND_MS = 20_000;
/**
 * Bound on waiting for the other alive nodes to have a committed PR OUT in their replicas. A
 * node that has not acknowledged by then (hung, starting, cut off) is logged and not waited
 * for; a hung node is declared gone a lease TTL later.
 */
export const ACK_WAIT_MS = 1_000;

interface WireRegistration {
  key: string;
  initiatorPortName: string;
  relativeTargetPort: number;
  allTgPt: boolean;
}

/** The value of the `pr` key: the reservations, and the id of the PR OUT attempt that wrote them. */
type StoredPr = PersistedReservations & { op?: string };

function storedOp(kv: IKeyValue): string {
  try {
    return (JSON.parse(kv.value.toString()) as StoredPr).op ?? '';
  } catch {
    return '';
  }
}

/** The value of the `ua` key: one batch of unit attentions from one LuState instance. */
export interface UaEvent {
  origin: string;
  /** The PR OUT attempt that raised them (the same id as in `pr`). */
  op?: string;
  /** Unit attentions for the nexuses a registration covers (raised by a PR OUT). */
  regs?: Array<{ reg: WireRegistration; reason: UnitAttentionReason }>;
  /** A unit attention for every nexus (raiseUaForAll). */
  all?: UnitAttentionReason;
}

function wireRegistration(r: Registration): WireRegistration {
  return { key: r.key.toString(16), initiatorPortName: r.initiatorPortName, relativeTargetPort: r.relativeTargetPort, allTgPt: r.allTgPt };
}

function fromWire(r: WireRegistration): Registration {
  return { key: BigInt(`0x${r.key}`), initiatorPortName: r.initiatorPortName, relativeTargetPort: r.relativeTargetPort, allTgPt: r.allTgPt };
}

/** Reservations whose UAs go nowhere: replicas (their changes were delivered where they were made). */
const NO_UAS = { toRegistration: () => undefined };

/** The reservations as read from a `pr` value; spc2Holder (local) carried over. */
function replicaOf(snapshot: PersistedReservations | undefined, spc2Holder: string | undefined): Reservations {
  const r = new Reservations(NO_UAS);
  if (snapshot) r.restore(snapshot);
  r.spc2Holder = spc2Holder;
  return r;
}

/** Before the first read: nothing but what every reservation type allows. */
class NotLoaded extends Reservations {
  constructor() {
    super(NO_UAS);
  }
  override conflicts(_nexus: ItNexus, flags: number): string | undefined {
    return flags & CommandFlag.PR_ALLOWED ? undefined : 'shared reservation state not loaded from etcd yet';
  }
}

export interface EtcdLuStateOptions {
  client: Etcd3;
  cluster: string;
  nodeId: string;
  log: Logger;
  /** Bound on one PR OUT (default COMMIT_BOUND_MS). */
  commitBoundMs?: number;
  /**
   * The other nodes a PR OUT waits for (alive in the membership): it completes once each has
   * applied it to its replica (acknowledged under ack/<node>), or after ackWaitMs.
   */
  peers?: () => readonly string[];
  /** Bound on that wait (default ACK_WAIT_MS). */
  ackWaitMs?: number;
}

function naaHex(naa: Buffer): string {
  return naa.toString('hex');
}

export class EtcdLuState implements LuState {
  /** This instance in `ua` events (its own events are applied at once, not again from the watch). */
  readonly origin: string;
  /** Resolves once the first read is in (the replica is current as of `revision`). */
  readonly ready: Promise<void>;
  /** How far the replica has got (its first read, then the watch). */
  readonly progress = new WatchProgress();
  /** The etcd revision of this instance's last PR OUT transaction. */
  committedRevision = 0;
  /** Commits that had to run `change` again (a conflict with another node). */
  retries = 0;

  private replica: Reservations;
  /** mod revision of `pr` the replica reflects (0: no state yet). */
  private prRev = 0;
  private loaded = false;
  private closed = false;
  private readonly local: LocalLuState;
  private readonly prKey: string;
  private readonly uaKey: string;
  private readonly prefix: string;
  private readonly log: Logger;
  private watcher: Watcher | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** PR OUT attempts of this instance whose unit attentions this node has raised. */
  private readonly uasApplied = new Set<string>();
  private readonly ackPrefix: string;
  /** The `pr` mod revision each node has acknowledged having in its replica. */
  private readonly acks = new Map<string, number>();
  private readonly ackListeners = new Set<() => void>();
  private ackSent = 0;
  private ackChain: Promise<void> = Promise.resolve();

  constructor(
    init: LuStateInit,
    private readonly o: EtcdLuStateOptions,
  ) {
    this.prefix = keys.lu(o.cluster, naaHex(init.naa));
    this.prKey = `${this.prefix}pr`;
    this.uaKey = `${this.prefix}ua`;
    this.ackPrefix = `${this.prefix}ack/`;
    this.origin = `${o.nodeId}/${randomUUID()}`;
    this.log = o.log.child({ component: 'etcd-lu-state', naa: naaHex(init.naa) });
    this.local = new LocalLuState({ naa: init.naa, canPersist: false, persist: () => Promise.resolve() });
    this.replica = new NotLoaded();
    this.ready = this.load(init.persisted);
    this.ready.catch(() => undefined);
  }

  get reservations(): ReservationsView {
    return this.replica;
  }

  /** The etcd revision the replica has caught up to. */
  get revision(): number {
    return this.progress.revision;
  }

  /** Resolves once the replica has caught up to etcd revision `rev` (or rejects after `ms`). */
  waitForRevision(rev: number, ms = 10_000): Promise<void> {
    return this.progress.waitFor(rev, ms);
  }

  /**
   * Resolves once the replica has every change made to this LU's keys before the call (a
   * read of their mod revisions from etcd, then the watch): for a reader that was told
   * nothing of the change, e.g. a node that took over from a dead one.
   */
  async sync(ms = 10_000): Promise<void> {
    await this.ready;
    const res = await withTimeout(this.o.client.getAll().prefix(this.prefix).exec(), ms, 'sync');
    const latest = Math.max(0, ...res.kvs.map((kv) => Number(kv.mod_revision)));
    await this.waitForRevision(latest, ms);
  }

  // ---- the replica ------------------------------------------------------------------------

  private async load(persisted: PersistedReservations | undefined): Promise<void> {
    const { client } = this.o;
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        if (persisted?.aptpl) {
          // A persist file from before the cluster seeds etcd once; etcd's state wins after that.
          const r = await client.if(this.prKey, 'Create', '==', 0).then(client.put(this.prKey).value(JSON.stringify(persisted))).commit();
          if (r.succeeded) this.log.info('APTPL reservations from the persist file seeded into etcd');
        }
        const res = await client.get(this.prKey).exec();
        const rev = Number(res.header.revision);
        this.applyPr(res.kvs[0]);
        this.loaded = true;
        this.progress.advance(rev);
        this.sendAck(this.prRev);
        const w = await client.watch().prefix(this.prefix).startRevision(String(rev + 1)).create();
        if (this.closed) {
          await w.cancel();
          return;
        }
        this.watcher = w;
        w.on('data', (r: IWatchResponse) => this.onWatch(r));
        w.on('error', (err) => this.resync(w, err));
        return;
      } catch (err) {
        if (this.closed) return;
        this.log.warn({ err: String(err), attempt }, 'loading the reservations from etcd failed; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * 2 ** Math.min(attempt, 6))));
      }
    }
  }

  /**
   * etcd canceled the watch (it came back at a revision compacted meanwhile, e.g. after a
   * member it watched through was down): read `pr` again and watch from there. Unit
   * attentions other nodes raised in the gap are not replayed (logged).
   */
  private resync(w: Watcher, err: unknown): void {
    if (this.closed || this.watcher !== w) return;
    this.watcher = undefined;
    this.log.warn({ err: String(err), revision: this.revision }, 'reservations watch canceled; reading them again (unit attentions from other nodes in the gap are lost)');
    void w.cancel().catch(() => undefined);
    void this.load(undefined);
  }

  /** Adopt a `pr` key-value (undefined: absent) unless the replica is already newer. */
  private applyPr(kv: IKeyValue | undefined): void {
    const modRev = kv ? Number(kv.mod_revision) : 0;
    if (this.loaded && kv && modRev <= this.prRev) return;
    const snapshot = kv ? (JSON.parse(kv.value.toString()) as PersistedReservations) : undefined;
    this.replica = replicaOf(snapshot, this.replica.spc2Holder);
    this.prRev = modRev;
  }

  private onWatch(r: IWatchResponse): void {
    let prChanged = false;
    for (const ev of r.events) {
      const key = ev.kv.key.toString();
      if (key.startsWith(this.ackPrefix)) {
        if (ev.type !== 'Put') continue;
        const node = key.slice(this.ackPrefix.length);
        this.acks.set(node, Math.max(this.acks.get(node) ?? 0, Number(ev.kv.value.toString()) || 0));
        for (const l of [...this.ackListeners]) l();
      } else if (key === this.prKey) {
        prChanged = true;
        if (ev.type === 'Put') this.applyPr(ev.kv);
        else {
          this.replica = replicaOf(undefined, this.replica.spc2Holder);
          this.prRev = 0; // an absent key compares as mod revision 0
        }
      } else if (key === this.uaKey && ev.type === 'Put') {
        let e: UaEvent;
        try {
          e = JSON.parse(ev.kv.value.toString()) as UaEvent;
        } catch {
          this.log.warn('unreadable unit attention event ignored');
          continue;
        }
        if (e.origin !== this.origin) this.applyUas(e);
        else if (e.op && !this.uasApplied.has(e.op)) {
          // Ours, from an attempt answered before its outcome was known (or seen here first).
          this.uasApplied.add(e.op);
          this.applyUas(e);
        }
      }
    }
    this.progress.advance(Number(r.header.revision));
    if (prChanged) this.sendAck(this.prRev);
  }

  /** Tell the node that made a PR OUT this replica has it (and its unit attentions): ack/<node> = pr's mod revision. */
  private sendAck(rev: number): void {
    if (rev <= this.ackSent || this.closed || !this.o.peers) return;
    this.ackSent = rev;
    const put = () =>
      this.o.client
        .put(`${this.ackPrefix}${this.o.nodeId}`)
        .value(String(rev))
        .options({ deadline: Date.now() + TXN_TIMEOUT_MS })
        .exec()
        .then(
          () => undefined,
          (err: unknown) => this.log.debug({ err: String(err), rev }, 'acknowledging a PR OUT failed'),
        );
    this.ackChain = this.ackChain.then(put, put);
  }

  /** Wait (bounded) until every other alive node has acknowledged `revision`. */
  private async awaitAcks(revision: number): Promise<void> {
    const peers = (this.o.peers?.() ?? []).filter((p) => p !== this.o.nodeId);
    const missing = () => peers.filter((p) => (this.acks.get(p) ?? 0) < revision);
    if (missing().length === 0) return;
    const ms = this.o.ackWaitMs ?? ACK_WAIT_MS;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.ackListeners.delete(check);
        resolve();
      };
      const check = () => {
        if (missing().length === 0) done();
      };
      const timer = setTimeout(() => {
        this.log.warn({ revision, nodes: missing() }, 'PR OUT completes without these alive nodes acknowledging it');
        done();
      }, ms);
      this.ackListeners.add(check);
    });
  }

  private applyUas(e: UaEvent): void {
    for (const x of e.regs ?? []) this.local.raiseUaForRegistration(fromWire(x.reg), x.reason);
    if (e.all) this.local.raiseUaForAll(e.all);
  }

  // ---- PR OUT -----------------------------------------------------------------------------

  changeReservations<T>(change: (r: Reservations) => T): Promise<T> {
    return this.changeReservationsAt(change).then((x) => x.out);
  }

  /**
   * changeReservations, also giving the etcd revision the change committed at (or, when it
   * threw or changed nothing, the revision whose state it ran against): PR OUTs from every
   * node, ordered by it, replay to the same state (the linearizability test).
   */
  changeReservationsAt<T>(change: (r: Reservations) => T): Promise<{ out: T; revision: number; wrote: boolean }> {
    const run = () => this.commit(change);
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async commit<T>(change: (r: Reservations) => T): Promise<{ out: T; revision: number; wrote: boolean }> {
    const { client } = this.o;
    const deadline = Date.now() + (this.o.commitBoundMs ?? COMMIT_BOUND_MS);
    /** Attempts whose transaction got no answer: they may have landed (found by their op id in `pr`). */
    const unsure = new Map<string, { copy: Reservations; out: T; uas: UaEvent['regs'] }>();
    for (let attempt = 0; attempt < MAX_ATTEMPTS && Date.now() < deadline; attempt++) {
      if (this.closed) break;
      const base = this.replica;
      const baseRev = this.prRev;
      const uas: NonNullable<UaEvent['regs']> = [];
      const copy = new Reservations({ toRegistration: (reg, reason) => uas.push({ reg: wireRegistration(reg), reason }) });
      copy.restore(base.snapshot());
      copy.spc2Holder = base.spc2Holder;
      let out: T | undefined;
      let threw: { err: unknown } | undefined;
      try {
        out = change(copy);
      } catch (err) {
        threw = { err };
      }
      const snap = JSON.stringify(copy.snapshot());
      const writes = !threw && (snap !== JSON.stringify(base.snapshot()) || uas.length > 0);
      const op = randomUUID();
      const ops = writes ? [client.put(this.prKey).value(JSON.stringify({ ...copy.snapshot(), op } satisfies StoredPr))] : [];
      if (writes && uas.length > 0) ops.push(client.put(this.uaKey).value(JSON.stringify({ origin: this.origin, op, regs: uas } satisfies UaEvent)));
      let res;
      try {
        // The deadline also stops the client's own retries: nothing is sent after it.
        const txnDeadline = Math.min(deadline, Date.now() + TXN_TIMEOUT_MS);
        res = await client.if(this.prKey, 'Mod', '==', baseRev).then(...ops).else(client.get(this.prKey)).options({ deadline: txnDeadline }).commit();
      } catch (err) {
        this.log.warn({ err: String(err), attempt, writes }, 'PR OUT transaction got no answer; trying again');
        if (writes) unsure.set(op, { copy, out: out as T, uas });
        await new Promise((r) => setTimeout(r, Math.min(500, 50 * 2 ** Math.min(attempt, 4))));
        continue;
      }
      if (res.succeeded) {
        const revision = Number(res.header.revision);
        this.committedRevision = revision;
        if (threw) throw Object.assign(threw.err as object, { revision });
        if (writes) {
          this.landed(copy, revision, op, uas);
          await this.awaitAcks(revision);
          return { out: out as T, revision, wrote: true };
        }
        this.replica.spc2Holder = copy.spc2Holder; // RESERVE/RELEASE(6/10): local
        return { out: out as T, revision, wrote: false };
      }
      const fresh = res.responses[0]?.response_range?.kvs[0];
      // An earlier attempt that got no answer did land: that is this PR OUT's outcome.
      const mine = fresh ? unsure.get(storedOp(fresh)) : undefined;
      if (fresh && mine) {
        const revision = Number(fresh.mod_revision);
        this.committedRevision = revision;
        this.log.info({ revision }, 'PR OUT without an answer had landed');
        this.landed(mine.copy, revision, storedOp(fresh), mine.uas ?? []);
        await this.awaitAcks(revision);
        return { out: mine.out, revision, wrote: true };
      }
      // Another node changed `pr` since the replica was read: take the fresh state, run again.
      this.retries++;
      if (fresh) this.applyPr(fresh);
      else {
        this.replica = replicaOf(undefined, this.replica.spc2Holder);
        this.prRev = 0;
      }
      if (attempt >= 2) await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
    }
    if (unsure.size > 0) this.log.error({ attempts: unsure.size }, 'PR OUT answered NOT READY with its outcome unknown (etcd gave no answer): it may still take effect');
    else this.log.error('PR OUT answered NOT READY: no attempt committed');
    throw new SenseError('LU_NOT_ACCESSIBLE_TRANSITIONING');
  }

  /** A PR OUT committed at `revision`: the replica takes its state, this node's nexuses its unit attentions. */
  private landed(copy: Reservations, revision: number, op: string, uas: NonNullable<UaEvent['regs']>): void {
    if (revision > this.prRev) {
      copy.spc2Holder = this.replica.spc2Holder;
      this.replica = copy;
      this.prRev = revision;
    }
    if (!this.uasApplied.has(op)) {
      this.uasApplied.add(op);
      if (this.uasApplied.size > 1024) this.uasApplied.delete(this.uasApplied.values().next().value as string);
      this.applyUas({ origin: this.origin, regs: uas });
    }
  }

  // ---- nexuses and unit attentions (local queues) -----------------------------------------

  attachNexus(nexus: ItNexus, reason: UnitAttentionReason): void {
    this.local.attachNexus(nexus, reason);
  }

  detachNexus(nexusKey: string): void {
    this.local.detachNexus(nexusKey);
    this.replica.dropSpc2(nexusKey);
  }

  reset(reason: UnitAttentionReason): void {
    this.replica.dropSpc2();
    this.raiseUaForAll(reason);
  }

  raiseUa(nexusKey: string, reason: UnitAttentionReason): void {
    this.local.raiseUa(nexusKey, reason);
  }

  raiseUaForAll(reason: UnitAttentionReason, exceptKey?: string): void {
    this.local.raiseUaForAll(reason, exceptKey);
    if (this.closed) return;
    const e: UaEvent = { origin: this.origin, all: reason };
    // In the queue of this node's PR OUTs: every node sees this and them in the order made here.
    const send = () =>
      withTimeout(this.o.client.put(this.uaKey).value(JSON.stringify(e)).exec(), TXN_TIMEOUT_MS, 'unit attention').then(
        () => undefined,
        (err: unknown) => this.log.error({ err: String(err), reason }, 'unit attention for every node not sent to etcd'),
      );
    this.queue = this.queue.then(send, send);
  }

  /** Resolves once every unit attention and PR OUT this node made so far has been sent to etcd. */
  flush(): Promise<void> {
    return this.queue.then(() => undefined);
  }

  takeUa(nexusKey: string): UnitAttentionReason | undefined {
    return this.local.takeUa(nexusKey);
  }

  nexusKeysCovering(regs: readonly Registration[]): Set<string> {
    return this.local.nexusKeysCovering(regs);
  }

  /** Whether the first read is in. */
  get isLoaded(): boolean {
    return this.loaded;
  }

  /** Stop the watch (the LU goes away, or the cluster closes). */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.watcher;
    this.watcher = undefined;
    await w?.cancel().catch(() => undefined);
  }
}
