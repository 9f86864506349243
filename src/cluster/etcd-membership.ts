/**
 * ClusterMembership in etcd (membership.ts has the contract). Each node puts
 * /xcopyd/<cluster>/nodes/<id> bound to a lease of leaseTtlSeconds that the
 * client keeps alive (a keepalive every TTL/3); states() come from a watch on
 * the nodes/ prefix, started at the revision of the initial read, so no
 * change between the read and the watch is missed. A node whose key vanished
 * is 'gone': at once when it closed (its lease revoked), after the TTL when
 * it stopped keeping the lease alive (killed, stopped, cut off). When this
 * node's own lease is lost (etcd said it expired, e.g. after a partition), a
 * new lease is granted and the key put again: a node that comes back is
 * alive again.
 */
import type { Etcd3, Lease, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { checkKeySegment, keys, nodeStates, statesDiffer, type ClusterMembership, type NodeState } from './membership';

export interface EtcdMembershipOptions {
  cluster: string;
  nodeId: string;
  nodeIds: readonly string[];
  leaseTtlSeconds: number;
  log: Logger;
}

export class EtcdMembership implements ClusterMembership {
  readonly self: string;
  private readonly prefix: string;
  private readonly present = new Set<string>();
  private current: Map<string, NodeState>;
  private readonly listeners = new Set<() => void>();
  private lease: Lease | undefined;
  private watcher: Watcher | undefined;
  private closed = false;
  private readonly log: Logger;
  /** The etcd revision the states reflect (watch progress). */
  revision = 0;

  private constructor(
    private readonly client: Etcd3,
    private readonly o: EtcdMembershipOptions,
  ) {
    this.self = checkKeySegment('node id', o.nodeId);
    checkKeySegment('cluster name', o.cluster);
    for (const id of o.nodeIds) checkKeySegment('node id', id);
    if (!Number.isInteger(o.leaseTtlSeconds) || o.leaseTtlSeconds < 1) throw new Error(`leaseTtlSeconds must be an integer >= 1, got ${o.leaseTtlSeconds}`);
    this.prefix = keys.nodes(o.cluster);
    this.current = nodeStates(o.nodeIds, this.present);
    this.log = o.log.child({ component: 'cluster-membership', node: o.nodeId });
  }

  /** Put this node's key under a fresh lease, read every node's key and watch for changes. */
  static async open(client: Etcd3, o: EtcdMembershipOptions): Promise<EtcdMembership> {
    const m = new EtcdMembership(client, o);
    try {
      await m.join();
      await m.startWatch();
    } catch (e) {
      await m.close().catch(() => undefined);
      throw e;
    }
    return m;
  }

  states(): ReadonlyMap<string, NodeState> {
    return this.current;
  }

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** The lease id of this node's key (hex), for diagnostics. */
  async leaseId(): Promise<string | undefined> {
    return this.lease?.grant();
  }

  private async join(): Promise<void> {
    const lease = this.client.lease(this.o.leaseTtlSeconds);
    this.lease = lease;
    lease.on('lost', (err) => {
      if (this.closed || this.lease !== lease) return;
      this.log.warn({ err: err.message }, 'membership lease lost; joining again with a new lease');
      this.rejoin();
    });
    lease.on('keepaliveFailed', (err) => this.log.debug({ err: String(err) }, 'membership keepalive failed'));
    await lease.put(keys.node(this.o.cluster, this.self)).value(JSON.stringify({ id: this.self, pid: process.pid, since: Date.now() }));
    this.log.info({ ttlSeconds: this.o.leaseTtlSeconds }, 'joined the cluster');
  }

  private rejoin(attempt = 0): void {
    if (this.closed) return;
    this.join().catch((err: unknown) => {
      this.log.warn({ err: String(err), attempt }, 'joining again failed; retrying');
      const t = setTimeout(() => this.rejoin(attempt + 1), Math.min(5_000, 200 * 2 ** Math.min(attempt, 5)));
      t.unref();
    });
  }

  private async startWatch(): Promise<void> {
    const res = await this.client.getAll().prefix(this.prefix).exec();
    this.present.clear();
    for (const kv of res.kvs) this.present.add(kv.key.toString().slice(this.prefix.length));
    const rev = Number(res.header.revision);
    this.revision = Math.max(this.revision, rev);
    this.update();
    const w = await this.client.watch().prefix(this.prefix).startRevision(String(rev + 1)).create();
    if (this.closed) {
      await w.cancel();
      return;
    }
    this.watcher = w;
    w.on('put', (kv) => this.present.add(kv.key.toString().slice(this.prefix.length)));
    w.on('delete', (kv) => this.present.delete(kv.key.toString().slice(this.prefix.length)));
    w.on('data', (r) => {
      this.revision = Math.max(this.revision, Number(r.header.revision));
      this.update();
    });
    // etcd canceled the watch (compacted past it after a reconnect): read the nodes again.
    w.on('error', (err) => {
      if (this.closed || this.watcher !== w) return;
      this.watcher = undefined;
      this.log.warn({ err: String(err) }, 'membership watch canceled; reading the nodes again');
      void w.cancel().catch(() => undefined);
      this.rewatch();
    });
  }

  private rewatch(attempt = 0): void {
    if (this.closed) return;
    this.startWatch().catch((err: unknown) => {
      this.log.warn({ err: String(err), attempt }, 'reading the nodes again failed; retrying');
      const t = setTimeout(() => this.rewatch(attempt + 1), Math.min(5_000, 200 * 2 ** Math.min(attempt, 5)));
      t.unref();
    });
  }

  private update(): void {
    const next = nodeStates(this.o.nodeIds, this.present);
    if (!statesDiffer(next, this.current)) return;
    const before = this.current;
    this.current = next;
    const changed = [...next].filter(([id, s]) => before.get(id) !== s).map(([id, s]) => `${id}=${s}`);
    this.log.info({ changed }, 'cluster membership changed');
    for (const cb of [...this.listeners]) {
      try {
        cb();
      } catch (err) {
        this.log.error({ err: String(err) }, 'membership listener threw');
      }
    }
  }

  /** Leave: stop the watch and revoke the lease (every other node sees this one gone at once). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.watcher?.cancel().catch(() => undefined);
    const lease = this.lease;
    this.lease = undefined;
    if (lease) {
      try {
        await lease.revoke();
      } catch (err) {
        lease.release();
        this.log.warn({ err: String(err) }, 'revoking the membership lease failed; it expires after its TTL');
      }
    }
    this.listeners.clear();
    this.log.info('left the cluster');
  }
}
