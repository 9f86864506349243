/**
 * Cluster membership in a real etcd (issue 15): a key per node bound to a lease, states from a
 * watch. Two memberships see each other; one that closes is 'gone' at once (its lease
 * revoked); a node process that stops keeping its lease alive (SIGSTOP) is 'gone' after the
 * TTL, and alive again once it runs again (SIGCONT). Also: the three-member etcd starts and a
 * membership survives the loss of one member.
 */
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { EtcdMembership } from '../../src/cluster/etcd-membership';
import type { NodeState } from '../../src/cluster/membership';
import { describeIf } from './harness';
import { requireEtcd, startEtcd, type EtcdCluster } from './engines/etcd';
import { startEtcdNode, type EtcdNodeProcess } from './engines/etcd-node-process';

const log = pino({ level: 'silent' });
const TTL = 2;

/** Resolves once `m.states().get(id)` is `want`, waiting on onChange (bounded). */
function stateBecomes(m: EtcdMembership, id: string, want: NodeState, ms: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (m.states().get(id) === want) return resolve(0);
    const timer = setTimeout(() => {
      off();
      reject(new Error(`${id} not ${want} within ${ms} ms (states ${JSON.stringify([...m.states()])})`));
    }, ms);
    const off = m.onChange(() => {
      if (m.states().get(id) !== want) return;
      clearTimeout(timer);
      off();
      resolve(Date.now() - t0);
    });
  });
}

describeIf(requireEtcd())('cluster membership in etcd (one member)', () => {
  let etcd: EtcdCluster;
  const clients: Etcd3[] = [];
  const client = () => {
    const c = new Etcd3({ hosts: etcd.endpoints });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'etcd-membership' });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await etcd?.stop();
  }, 30_000);

  it('two nodes see each other; the unconfigured-but-absent third is gone; a closed node is gone at once', async () => {
    const o = { cluster: 'm1', nodeIds: ['a', 'b', 'c'], leaseTtlSeconds: 30, log };
    const a = await EtcdMembership.open(client(), { ...o, nodeId: 'a' });
    const b = await EtcdMembership.open(client(), { ...o, nodeId: 'b' });
    await stateBecomes(a, 'b', 'alive', 5_000);
    expect([...a.states()]).toEqual([['a', 'alive'], ['b', 'alive'], ['c', 'gone']]);
    expect([...b.states()]).toEqual([['a', 'alive'], ['b', 'alive'], ['c', 'gone']]);
    await b.close();
    // TTL is 30 s: gone well before it means the lease was revoked, not expired.
    const ms = await stateBecomes(a, 'b', 'gone', 10_000);
    expect(ms).toBeLessThan(10_000);
    await a.close();
  }, 30_000);

  it('a node that stops keeping its lease alive (SIGSTOP) is gone after the TTL, alive after SIGCONT', async () => {
    const o = { cluster: 'm2', nodeIds: ['a', 'b'], leaseTtlSeconds: TTL };
    const a = await EtcdMembership.open(client(), { ...o, nodeId: 'a', log });
    let b: EtcdNodeProcess | undefined;
    try {
      b = await startEtcdNode({ mode: 'member', endpoints: etcd.endpoints, nodeId: 'b', ...o });
      await stateBecomes(a, 'b', 'alive', 5_000);
      b.stop();
      await stateBecomes(a, 'b', 'gone', (TTL + 10) * 1000);
      // Keepalives start again: the lost lease is replaced and the key put again.
      b.cont();
      await stateBecomes(a, 'b', 'alive', 20_000);
    } finally {
      await b?.kill();
      await a.close();
    }
  }, 120_000);

  it('a SIGKILLed node is gone after the TTL', async () => {
    const o = { cluster: 'm3', nodeIds: ['a', 'b'], leaseTtlSeconds: TTL };
    const a = await EtcdMembership.open(client(), { ...o, nodeId: 'a', log });
    try {
      const b = await startEtcdNode({ mode: 'member', endpoints: etcd.endpoints, nodeId: 'b', ...o });
      await stateBecomes(a, 'b', 'alive', 5_000);
      await b.kill();
      await stateBecomes(a, 'b', 'gone', (TTL + 10) * 1000);
    } finally {
      await a.close();
    }
  }, 120_000);
});

describeIf(requireEtcd())('cluster membership in etcd (three members)', () => {
  let etcd: EtcdCluster;
  const clients: Etcd3[] = [];

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'etcd-membership-3', members: 3 });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await etcd?.stop();
  }, 30_000);

  it('membership keeps working with one of three etcd members killed', async () => {
    const c = (hosts: string[]) => {
      const x = new Etcd3({ hosts });
      clients.push(x);
      return x;
    };
    const o = { cluster: 'm3x', nodeIds: ['a', 'b'], leaseTtlSeconds: TTL, log };
    const a = await EtcdMembership.open(c(etcd.endpoints), { ...o, nodeId: 'a' });
    const b = await EtcdMembership.open(c(etcd.endpoints), { ...o, nodeId: 'b' });
    await stateBecomes(a, 'b', 'alive', 5_000);
    await etcd.members[0].kill();
    // Over several TTLs both stay alive (keepalives reach the two members left).
    const flips: string[] = [];
    const off = a.onChange(() => flips.push(JSON.stringify([...a.states()])));
    await new Promise((r) => setTimeout(r, (TTL * 2 + 1) * 1000));
    off();
    expect(a.states().get('b')).toBe('alive');
    expect(flips).toEqual([]);
    await b.close();
    await stateBecomes(a, 'b', 'gone', 10_000);
    await a.close();
    await etcd.members[0].restart();
  }, 90_000);
});
