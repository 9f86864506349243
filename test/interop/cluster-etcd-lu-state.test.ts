/**
 * LuState in a real etcd (issue 15; contract in scsi/state/lu-state.ts): two EtcdLuState
 * instances for one NAA stand for two nodes. Reads come from each node's replica, so every
 * check on B first waits until B's watch has delivered A's commit (waitForRevision), never a
 * blind sleep.
 */
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import fc from 'fast-check';
import pino from 'pino';
import { EtcdLuState } from '../../src/cluster/etcd-lu-state';
import { EtcdMembership } from '../../src/cluster/etcd-membership';
import { PrType, Reservations, ReservationConflict, type PersistedReservations } from '../../scsi/reservations';
import { CommandFlag } from '../../scsi/command-entry';
import type { ItNexus } from '../../scsi/types';
import { SenseError, type UnitAttentionReason } from '../../scsi/sense';
import { describeIf } from './harness';
import { requireEtcd, startEtcd, type EtcdCluster } from './engines/etcd';
import { childNexus, startEtcdNode } from './engines/etcd-node-process';

const log = pino({ level: 'silent' });
const WRITE = 0; // a command with no PR_* flag: a write under every type

function nexus(initiator: string, relativeTargetPort: number, isid = 1): ItNexus {
  const initiatorName = `iqn.2026-12.test:${initiator}`;
  const initiatorPortName = `${initiatorName},i,0x${isid}`;
  return { key: `${initiatorPortName},${relativeTargetPort}`, initiatorName, initiatorPortName, relativeTargetPort, targetPortName: `iqn.2026-12.test:t,t,0x${relativeTargetPort}` };
}

const reg = (n: ItNexus, key: bigint) => (r: Reservations) => r.register(n, { reservationKey: 0n, serviceActionKey: key, ignoreExistingKey: false, aptpl: false, allTgPt: false });

function drain(lu: EtcdLuState, key: string): UnitAttentionReason[] {
  const out: UnitAttentionReason[] = [];
  for (let u = lu.takeUa(key); u !== undefined; u = lu.takeUa(key)) out.push(u);
  return out;
}

describeIf(requireEtcd())('EtcdLuState against a real etcd', () => {
  let etcd: EtcdCluster;
  const clients: Etcd3[] = [];
  const states: EtcdLuState[] = [];
  const client = () => {
    const c = new Etcd3({ hosts: etcd.endpoints });
    clients.push(c);
    return c;
  };
  /** Two nodes' LuState for one fresh NAA (each with its own etcd client). */
  async function pair(cluster = 'lu', persisted?: PersistedReservations): Promise<[EtcdLuState, EtcdLuState, Buffer]> {
    const naa = randomBytes(16);
    const make = (nodeId: string, commitBoundMs?: number) => {
      const s = new EtcdLuState({ naa, persisted, canPersist: true, persist: () => Promise.resolve() }, { client: client(), cluster, nodeId, log });
      states.push(s);
      return s;
    };
    const a = make('a');
    const b = make('b');
    await Promise.all([a.ready, b.ready]);
    return [a, b, naa];
  }

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'etcd-lu-state' });
  }, 60_000);
  afterAll(async () => {
    for (const s of states) await s.close();
    for (const c of clients) c.close();
    await etcd?.stop();
  }, 30_000);

  it('REGISTER and RESERVE on A: a write from B conflicts once B has caught up; the holder on A has access', async () => {
    const [a, b] = await pair();
    const na = nexus('host1', 1);
    const nb = nexus('host2', 2);
    a.attachNexus(na, 'UA_POWER_ON_RESET');
    b.attachNexus(nb, 'UA_POWER_ON_RESET');
    await a.changeReservations(reg(na, 0xa1n));
    await a.changeReservations((r) => r.reserve(na, 0xa1n, PrType.EXCLUSIVE_ACCESS));
    await b.waitForRevision(a.committedRevision);
    expect(b.reservations.conflicts(nb, WRITE)).toMatch(/persistent reservation type 3/);
    expect(b.reservations.conflicts(nb, CommandFlag.PR_ALLOWED)).toBeUndefined();
    expect(a.reservations.conflicts(na, WRITE)).toBeUndefined();
    expect(b.reservations.generation).toBe(1);
    expect(b.reservations.registrations.map((r) => r.key)).toEqual([0xa1n]);
    // B's PR IN view names A's nexus the holder.
    expect(b.reservations.isHolder(na)).toBe(true);
  });

  it('PREEMPT from B: A\'s preempted nexus gets REGISTRATIONS PREEMPTED, the other registrant RESERVATIONS RELEASED (type changed); CLEAR: RESERVATIONS PREEMPTED', async () => {
    const [a, b] = await pair();
    const a1 = nexus('host1', 1);
    const a2 = nexus('host3', 1);
    const b1 = nexus('host2', 2);
    const bIdle = nexus('host4', 2);
    a.attachNexus(a1, 'UA_POWER_ON_RESET');
    a.attachNexus(a2, 'UA_POWER_ON_RESET');
    b.attachNexus(b1, 'UA_POWER_ON_RESET');
    b.attachNexus(bIdle, 'UA_POWER_ON_RESET');
    for (const n of [a1, a2]) drain(a, n.key);
    for (const n of [b1, bIdle]) drain(b, n.key);
    await a.changeReservations(reg(a1, 0xa1n));
    await a.changeReservations(reg(a2, 0xc3n));
    await a.changeReservations((r) => r.reserve(a1, 0xa1n, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY));
    await b.waitForRevision(a.committedRevision);
    await b.changeReservations(reg(b1, 0xb2n));
    const removed = await b.changeReservations((r) => r.preempt(b1, 0xb2n, 0xa1n, PrType.EXCLUSIVE_ACCESS));
    expect(removed.map((r) => r.key)).toEqual([0xa1n]);
    await a.waitForRevision(b.committedRevision);
    expect(drain(a, a1.key)).toEqual(['UA_REGISTRATIONS_PREEMPTED']);
    expect(drain(a, a2.key)).toEqual(['UA_RESERVATIONS_RELEASED']);
    expect(drain(b, bIdle.key)).toEqual([]);
    expect(drain(b, b1.key)).toEqual([]);
    expect(a.reservations.isHolder(b1)).toBe(true);
    expect(a.reservations.conflicts(a1, WRITE)).toMatch(/type 3/);
    await b.changeReservations((r) => r.clear(b1, 0xb2n));
    await a.waitForRevision(b.committedRevision);
    expect(drain(a, a2.key)).toEqual(['UA_RESERVATIONS_PREEMPTED']);
    expect(a.reservations.registrations).toEqual([]);
    expect(a.reservations.reservation).toBeUndefined();
  });

  it('raiseUaForAll on A reaches every nexus on B, once on A, and the except key stays clear', async () => {
    const [a, b] = await pair();
    const a1 = nexus('host1', 1);
    const a2 = nexus('host2', 1);
    const b1 = nexus('host1', 2);
    a.attachNexus(a1, 'UA_POWER_ON_RESET');
    a.attachNexus(a2, 'UA_POWER_ON_RESET');
    b.attachNexus(b1, 'UA_POWER_ON_RESET');
    drain(a, a1.key);
    drain(a, a2.key);
    drain(b, b1.key);
    a.raiseUaForAll('UA_CAPACITY_DATA_HAS_CHANGED', a2.key);
    // A marker commit after the event: once B has it, B has the event too (etcd orders both).
    await a.changeReservations(reg(a1, 1n));
    await b.waitForRevision(a.committedRevision);
    expect(drain(b, b1.key)).toEqual(['UA_CAPACITY_DATA_HAS_CHANGED']);
    expect(drain(a, a1.key)).toEqual(['UA_CAPACITY_DATA_HAS_CHANGED']);
    expect(drain(a, a2.key)).toEqual([]);
  });

  it('a conflict from B\'s replica is checked against etcd: a stale B still sees A\'s registration', async () => {
    const [a, b] = await pair();
    const n = nexus('host1', 1);
    const nb = nexus('host2', 2);
    await a.changeReservations(reg(n, 5n));
    // No wait: B may not have A's commit; its REGISTER of the same I_T nexus (same port) must see it.
    await expect(b.changeReservations(reg(n, 6n))).rejects.toBeInstanceOf(ReservationConflict);
    await b.changeReservations(reg(nb, 7n));
    expect(b.reservations.registrations.map((r) => r.key)).toEqual([5n, 7n]);
  });

  it('concurrent PR OUTs from both nodes serialize: replayed in revision order they give each outcome and the final state', async () => {
    const initiators = ['h0', 'h1', 'h2'];
    const op = fc.record({
      node: fc.integer({ min: 0, max: 1 }),
      who: fc.integer({ min: 0, max: 2 }),
      kind: fc.constantFrom('register', 'registerIgnore', 'unregister', 'reserve', 'release', 'preempt', 'clear'),
      key: fc.integer({ min: 1, max: 4 }),
      type: fc.constantFrom(PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS),
    });
    type Op = { node: number; who: number; kind: string; key: number; type: number };
    const nexusOf = (o: Op) => nexus(initiators[o.who], o.node + 1);
    // What the op does to a Reservations: deterministic in the op and the Reservations only.
    const apply = (o: Op) => (r: Reservations): void => {
      const n = nexusOf(o);
      const mine = r.registrationOf(n)?.key ?? 0n;
      const k = BigInt(o.key);
      switch (o.kind) {
        case 'register': return r.register(n, { reservationKey: mine, serviceActionKey: k, ignoreExistingKey: false, aptpl: false, allTgPt: false });
        case 'registerIgnore': return r.register(n, { reservationKey: 0n, serviceActionKey: k, ignoreExistingKey: true, aptpl: false, allTgPt: false });
        case 'unregister': return r.register(n, { reservationKey: mine, serviceActionKey: 0n, ignoreExistingKey: false, aptpl: false, allTgPt: false });
        case 'reserve': return r.reserve(n, mine, o.type);
        case 'release': return r.release(n, mine, r.reservation?.type ?? o.type);
        case 'preempt': return void r.preempt(n, mine, k, o.type);
        case 'clear': return r.clear(n, mine);
      }
    };
    let runs = 0;
    let retries = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 4, maxLength: 24 }), async (ops) => {
        runs++;
        const [a, b] = await pair('prop');
        const nodes = [a, b];
        const before = a.retries + b.retries;
        // Both nodes issue their ops at once; each node's own are queued in order.
        const outcomes = await Promise.all(
          ops.map((o) =>
            nodes[o.node].changeReservationsAt(apply(o)).then(
              (x) => ({ o, revision: x.revision, wrote: x.wrote, err: undefined as string | undefined }),
              (e: Error & { revision?: number }) => ({ o, revision: e.revision ?? -1, wrote: false, err: e.constructor.name }),
            ),
          ),
        );
        retries += a.retries + b.retries - before;
        expect(outcomes.every((x) => x.revision > 0)).toBe(true);
        // Writes at revision R come before reads (no-write transactions) at R.
        const order = [...outcomes].sort((x, y) => x.revision - y.revision || Number(y.wrote) - Number(x.wrote));
        expect(new Set(outcomes.filter((x) => x.wrote).map((x) => x.revision)).size).toBe(outcomes.filter((x) => x.wrote).length);
        const model = new Reservations({ toRegistration: () => undefined });
        for (const x of order) {
          let err: string | undefined;
          try {
            apply(x.o)(model);
          } catch (e) {
            err = (e as Error).constructor.name;
          }
          expect({ op: x.o, err }).toEqual({ op: x.o, err: x.err });
        }
        const last = Math.max(a.committedRevision, b.committedRevision);
        await Promise.all([a.waitForRevision(last), b.waitForRevision(last)]);
        expect(a.reservations.snapshot()).toEqual(model.snapshot());
        expect(b.reservations.snapshot()).toEqual(model.snapshot());
        await a.close();
        await b.close();
      }),
      { numRuns: 12, interruptAfterTimeLimit: 60_000 },
    );
    expect(runs).toBeGreaterThan(0);
    // eslint-disable-next-line no-console
    console.log(`concurrent PR OUT property: ${runs} runs, ${retries} conflicting commits retried`);
  }, 120_000);

  it('a holder whose node process is SIGKILLed keeps its reservation; PREEMPT from B then takes it', async () => {
    const naa = randomBytes(16).toString('hex');
    const o = { cluster: 'dead', nodeIds: ['a', 'b'], leaseTtlSeconds: 2 };
    const m = await EtcdMembership.open(client(), { ...o, nodeId: 'b', log });
    const b = new EtcdLuState({ naa: Buffer.from(naa, 'hex'), canPersist: true, persist: () => Promise.resolve() }, { client: client(), cluster: 'dead', nodeId: 'b', log });
    states.push(b);
    try {
      await b.ready;
      const child = await startEtcdNode({ mode: 'reserve', endpoints: etcd.endpoints, nodeId: 'a', ...o, naa, key: 'a1' });
      const na = childNexus('a');
      await child.kill();
      // Membership says A is gone (its lease expired) ...
      for (let i = 0; i < 100 && m.states().get('a') !== 'gone'; i++) await new Promise((r) => setTimeout(r, 100));
      expect(m.states().get('a')).toBe('gone');
      // ... and its reservation holds.
      await b.sync();
      const nb = nexus('host2', 2);
      expect(b.reservations.isHolder(na)).toBe(true);
      expect(b.reservations.conflicts(nb, WRITE)).toMatch(/type 3/);
      await b.changeReservations(reg(nb, 0xb2n));
      await b.changeReservations((r) => r.preempt(nb, 0xb2n, 0xa1n, PrType.EXCLUSIVE_ACCESS));
      expect(b.reservations.isHolder(nb)).toBe(true);
      expect(b.reservations.conflicts(nb, WRITE)).toBeUndefined();
    } finally {
      await m.close();
    }
  }, 90_000);

  it('APTPL reservations from a persist file seed etcd once; a new instance reads etcd\'s state; before its first read it fails closed', async () => {
    const n = nexus('host1', 1);
    const seed = new Reservations({ toRegistration: () => undefined });
    seed.register(n, { reservationKey: 0n, serviceActionKey: 9n, ignoreExistingKey: false, aptpl: true, allTgPt: false });
    seed.reserve(n, 9n, PrType.WRITE_EXCLUSIVE);
    const [a, , naa] = await pair('seed', seed.snapshot());
    expect(a.reservations.isHolder(n)).toBe(true);
    expect(a.reservations.aptpl).toBe(true);
    await a.changeReservations((r) => r.release(n, 9n, PrType.WRITE_EXCLUSIVE));
    // A stale file does not override etcd: a new node with the same seed sees the release.
    const c = new EtcdLuState({ naa, persisted: seed.snapshot(), canPersist: true, persist: () => Promise.resolve() }, { client: client(), cluster: 'seed', nodeId: 'c', log });
    states.push(c);
    expect(c.isLoaded).toBe(false);
    expect(c.reservations.conflicts(n, WRITE)).toMatch(/not loaded/);
    expect(c.reservations.conflicts(n, CommandFlag.PR_ALLOWED)).toBeUndefined();
    await c.ready;
    expect(c.reservations.reservation).toBeUndefined();
    expect(c.reservations.registrations.map((r) => r.key)).toEqual([9n]);
    expect(c.reservations.conflicts(nexus('host2', 1), WRITE)).toBeUndefined();
  });

  it('RESERVE(6/10) stays on its node', async () => {
    const [a, b] = await pair();
    const n = nexus('host1', 1);
    const other = nexus('host2', 1);
    await a.changeReservations((r) => r.reserveSpc2(n));
    expect(a.reservations.conflicts(other, WRITE)).toMatch(/RESERVE\(6\/10\)/);
    await a.changeReservations(reg(n, 3n));
    await b.waitForRevision(a.committedRevision);
    expect(a.reservations.conflicts(other, WRITE)).toMatch(/RESERVE\(6\/10\)/);
    expect(b.reservations.conflicts(other, WRITE)).toBeUndefined();
    a.detachNexus(n.key);
    expect(a.reservations.conflicts(other, WRITE)).toBeUndefined();
  });
});

describeIf(requireEtcd())('EtcdLuState with a three-member etcd losing members', () => {
  let etcd: EtcdCluster;
  const clients: Etcd3[] = [];
  const states: EtcdLuState[] = [];

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'etcd-lu-state-3', members: 3 });
  }, 60_000);
  afterAll(async () => {
    for (const s of states) await s.close();
    for (const c of clients) c.close();
    await etcd?.stop();
  }, 30_000);

  it('one member killed: PR OUTs go on; quorum lost briefly: the PR OUT waits and lands once; lost past the bound: NOT READY, reads answer, the nodes agree after', async () => {
    const naa = randomBytes(16);
    const make = (nodeId: string, commitBoundMs?: number) => {
      const client = new Etcd3({ hosts: etcd.endpoints });
      clients.push(client);
      const s = new EtcdLuState({ naa, canPersist: true, persist: () => Promise.resolve() }, { client, cluster: 'q', nodeId, log, commitBoundMs });
      states.push(s);
      return s;
    };
    const a = make('a');
    const b = make('b');
    await Promise.all([a.ready, b.ready]);
    const na = nexus('host1', 1);
    const nb = nexus('host2', 2);
    await a.changeReservations(reg(na, 1n));
    await etcd.members[0].kill();
    await a.changeReservations((r) => r.reserve(na, 1n, PrType.EXCLUSIVE_ACCESS));
    await b.waitForRevision(a.committedRevision);
    expect(b.reservations.conflicts(nb, WRITE)).toMatch(/type 3/);
    await b.changeReservations(reg(nb, 2n));
    await a.waitForRevision(b.committedRevision);
    expect(a.reservations.registrations.map((r) => r.key)).toEqual([1n, 2n]);

    // Quorum lost for less than the bound: the PR OUT waits it out and lands exactly once.
    await etcd.members[1].kill();
    const gen = b.reservations.generation;
    const preempt = b.changeReservations((r) => r.preempt(nb, 2n, 1n, PrType.EXCLUSIVE_ACCESS));
    await new Promise((r) => setTimeout(r, 1_500));
    expect(b.reservations.isHolder(na)).toBe(true); // not answered yet; reads from the replica
    await Promise.all([etcd.members[0].restart(), etcd.members[1].restart()]);
    const removed = await preempt;
    expect(removed.map((r) => r.key)).toEqual([1n]);
    await a.waitForRevision(b.committedRevision, 20_000);
    for (const s of [a, b]) {
      expect(s.reservations.generation).toBe(gen + 1);
      expect(s.reservations.registrations.map((r) => r.key)).toEqual([2n]);
      expect(s.reservations.isHolder(nb)).toBe(true);
    }

    // Quorum lost for longer than the bound: NOT READY (initiators retry it), reads still answer.
    await a.changeReservations(reg(na, 3n));
    const c = make('c', 4_000); // node c: host2 through another port of B's node, a short bound
    await c.ready;
    await c.waitForRevision(a.committedRevision);
    await etcd.members[0].kill();
    await etcd.members[1].kill();
    const t0 = Date.now();
    const err = await c.changeReservations((r) => r.preempt(nb, 2n, 3n, PrType.EXCLUSIVE_ACCESS)).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SenseError);
    expect((err as SenseError).reason).toBe('LU_NOT_ACCESSIBLE_TRANSITIONING');
    expect(Date.now() - t0).toBeLessThan(30_000); // generous safety bound: commitBoundMs is 4 s
    expect(c.reservations.conflicts(na, WRITE)).toMatch(/type 3/);
    expect(a.reservations.isHolder(nb)).toBe(true);
    // Quorum back: whatever etcd decided about the unanswered attempt, both nodes agree on it,
    // and the initiator's retry then finds host1's key 3 gone (no registration: RESERVATION CONFLICT) or removes it.
    await Promise.all([etcd.members[0].restart(), etcd.members[1].restart()]);
    await Promise.all([a.sync(20_000), b.sync(20_000), c.sync(20_000)]);
    expect(a.reservations.snapshot()).toEqual(b.reservations.snapshot());
    expect(c.reservations.snapshot()).toEqual(b.reservations.snapshot());
    const landed = !a.reservations.registrations.some((r) => r.key === 3n);
    const retry = await b.changeReservations((r) => r.preempt(nb, 2n, 3n, PrType.EXCLUSIVE_ACCESS)).then(() => 'good', (e: Error) => e.constructor.name);
    expect(retry).toBe(landed ? 'ReservationConflict' : 'good');
    await a.waitForRevision(b.committedRevision);
    expect(a.reservations.registrations.map((r) => r.key)).toEqual([2n]);
  }, 120_000);
});
