/**
 * TokenState in a real etcd (issue 15): two EtcdTokenState instances stand for two nodes. A
 * token made on A is read on B; one sealing key for the cluster, made once; invalidation keeps
 * the first reason; tombstones go when their lease ends; the secret never reaches a log line.
 * Checks on the other node wait for its replica to reach the writer's revision.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { EtcdTokenState } from '../../src/cluster/etcd-token-state';
import type { TokenRecord } from '../../scsi/state/lu-state';
import { describeIf } from './harness';
import { requireEtcd, startEtcd, type EtcdCluster } from './engines/etcd';

function record(over: Partial<TokenRecord> = {}): TokenRecord {
  return {
    key: randomBytes(8).toString('hex'),
    bytes: randomBytes(512),
    rodType: 0xffff0001,
    pointInTime: 'snapshot',
    luNaa: randomBytes(16).toString('hex'),
    capacity: 123456789012n,
    ranges: [{ rod: 0, src: 4096, bytes: 65536 }],
    bytesRepresented: 65536,
    inactivityMs: 30_000,
    createdAt: Date.now(),
    snapshot: 'xcopyd-token-abc',
    state: 'live',
    lastUse: 0,
    ...over,
  };
}

describeIf(requireEtcd())('EtcdTokenState against a real etcd', () => {
  let etcd: EtcdCluster;
  const clients: Etcd3[] = [];
  const opened: EtcdTokenState[] = [];
  const logged: string[] = [];
  const log = pino({ level: 'trace' }, new Writable({ write: (c: Buffer, _e, cb) => (logged.push(c.toString()), cb()) }));

  async function nodes(cluster: string, n = 2): Promise<EtcdTokenState[]> {
    const out = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const client = new Etcd3({ hosts: etcd.endpoints });
        clients.push(client);
        return EtcdTokenState.open({ client, cluster, nodeId: `n${i}`, log });
      }),
    );
    opened.push(...out);
    return out;
  }

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'etcd-token-state' });
  }, 60_000);
  afterAll(async () => {
    for (const s of opened) await s.close();
    for (const c of clients) c.close();
    await etcd?.stop();
  }, 30_000);

  it('nodes opening at once agree on one sealing key (id 1), made once; its secret is in no log line', async () => {
    const [a, b, c] = await nodes('keys', 3);
    expect(a.sealingKey().id).toBe(1);
    expect(b.sealingKey().secret.equals(a.sealingKey().secret)).toBe(true);
    expect(c.sealingKey().secret.equals(a.sealingKey().secret)).toBe(true);
    expect(a.sealingKey().secret.length).toBe(32);
    expect(logged.filter((l) => /first ROD token sealing key/.test(l) && l.includes('"node"'))).toHaveLength(1);
    const secret = a.sealingKey().secret;
    const all = logged.join('');
    expect(all.includes(secret.toString('base64'))).toBe(false);
    expect(all.includes(secret.toString('hex'))).toBe(false);
  });

  it('a token created on A is read on B, whole; creating it again fails on either node', async () => {
    const [a, b] = await nodes('create');
    const r = record();
    await a.create(r);
    expect(a.get(r.key)).toBe(r);
    await b.progress.waitFor(a.committedRevision);
    const seen = b.get(r.key)!;
    expect(seen).toEqual(r);
    expect(seen.bytes.equals(r.bytes)).toBe(true);
    expect(b.list().map((x) => x.key)).toEqual([r.key]);
    await expect(b.create(record({ key: r.key }))).rejects.toThrow(/exists/);
    await expect(a.create(record({ key: r.key }))).rejects.toThrow(/exists/);
  });

  it('touch on B moves lastUse on A (never backwards)', async () => {
    const [a, b] = await nodes('touch');
    const r = record();
    await a.create(r);
    await b.progress.waitFor(a.committedRevision);
    await b.touch(r.key, 5_000);
    await b.touch(r.key, 4_000);
    await a.progress.waitFor(b.committedRevision);
    expect(a.get(r.key)!.lastUse).toBe(5_000);
    expect(r.lastUse).toBe(5_000); // the object A handed out, updated in place
  });

  it('invalidations from both nodes at once: one reason wins everywhere, later ones keep it; the tombstone drops bytes and goes with its lease', async () => {
    const [a, b] = await nodes('invalidate');
    const r = record();
    await a.create(r);
    await b.progress.waitFor(a.committedRevision);
    const heldOnB = b.get(r.key)!;
    const until = Date.now() + 2_000;
    await Promise.all([a.invalidate(r.key, 'cancelled', until), b.invalidate(r.key, 'deleted', until)]);
    const last = Math.max(a.committedRevision, b.committedRevision);
    await Promise.all([a.progress.waitFor(last), b.progress.waitFor(last)]);
    const why = a.get(r.key)!.state;
    expect(['cancelled', 'deleted']).toContain(why);
    expect(b.get(r.key)!.state).toBe(why);
    expect(heldOnB.state).toBe(why);
    expect(r.state).toBe(why);
    expect(b.get(r.key)!.bytes.length).toBe(0);
    expect(b.get(r.key)!.ranges).toEqual([]);
    await a.invalidate(r.key, 'expired', until);
    await b.invalidate(r.key, 'revoked', until);
    expect(a.get(r.key)!.state).toBe(why);
    // etcd ends the lease (2 s TTL, its expiry checks run every ~500 ms): gone on both nodes.
    const deadline = Date.now() + 15_000;
    while ((a.get(r.key) || b.get(r.key)) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    expect(a.get(r.key)).toBeUndefined();
    expect(b.get(r.key)).toBeUndefined();
  }, 30_000);

  it('a rotated key becomes current on every node; the old one still verifies', async () => {
    const [a, b] = await nodes('rotate');
    const first = a.sealingKey();
    const second = await a.rotateSealingKey();
    expect(second.id).toBe(2);
    await b.progress.waitFor(a.committedRevision);
    expect(b.sealingKey().id).toBe(2);
    expect(b.sealingKey().secret.equals(second.secret)).toBe(true);
    expect(b.sealingKeyById(1)!.secret.equals(first.secret)).toBe(true);
    expect(b.sealingKeyById(3)).toBeUndefined();
  });
});
