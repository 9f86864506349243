/**
 * A node's view of its cluster in etcd (issue 15): membership (a lease key
 * per node), the shared state of every LU it serves (reservations and unit
 * attentions, keyed by the LU's NAA) and of ROD tokens. One etcd client per
 * node; every part watches its own key prefix under /xcopyd/<cluster>/.
 *
 * The composer (src/daemon.ts, cluster mode) opens it before building the
 * LUs, hands `luStateFactory` to each LU (LogicalUnitOptions.state), awaits
 * `luStatesReady()` before it accepts logins (a LU's reservations are read
 * from etcd once, then kept by a watch; until then it fails closed), and
 * closes it on shutdown (the lease is revoked: the others see this node gone
 * at once). A config without a cluster section never loads this module.
 */
import { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { LuState, LuStateFactory, LuStateInit, TokenState } from '../../scsi/state/lu-state';
import { EtcdLuState } from './etcd-lu-state';
import { EtcdMembership } from './etcd-membership';
import { withTimeout } from './etcd-progress';
import { EtcdTokenState } from './etcd-token-state';
import { checkKeySegment, type ClusterMembership } from './membership';

export interface EtcdCluster {
  /** A lease key per node (TTL leaseTtlSeconds). */
  readonly membership: ClusterMembership;
  /** scsi/state/lu-state.ts, keyed by the LU's NAA: one EtcdLuState per LU made. */
  readonly luStateFactory: LuStateFactory;
  /** scsi/state/lu-state.ts (not wired into token-store this session). */
  readonly tokenState: TokenState;
  /** Resolves once every LuState made so far has read its state from etcd (bounded by `ms`). */
  luStatesReady(ms?: number): Promise<void>;
  /** Revoke the lease, stop the watches, close the client. */
  close(): Promise<void>;
}

export interface OpenEtcdClusterOptions {
  endpoints: string[];
  cluster: string;
  nodeId: string;
  nodeIds: string[];
  leaseTtlSeconds: number;
  log: Logger;
  /** Bound on reaching etcd at open (default 15 s). */
  openTimeoutMs?: number;
}

/** The checks made before anything connects (a configuration error, not an etcd one). */
export function checkEtcdClusterOptions(o: OpenEtcdClusterOptions): void {
  if (o.endpoints.length === 0) throw new Error('cluster.etcd.endpoints: at least one endpoint');
  for (const e of o.endpoints) if (!/^https?:\/\/[^/\s]+\/?$/.test(e)) throw new Error(`cluster.etcd.endpoints: '${e}' is not http(s)://host:port`);
  checkKeySegment('cluster name', o.cluster);
  for (const id of o.nodeIds) checkKeySegment('node id', id);
  if (new Set(o.nodeIds).size !== o.nodeIds.length) throw new Error('cluster.nodes: node ids must be distinct');
  if (!o.nodeIds.includes(o.nodeId)) throw new Error(`node '${o.nodeId}' is not one of the cluster's nodes (${o.nodeIds.join(', ')})`);
  if (!Number.isInteger(o.leaseTtlSeconds) || o.leaseTtlSeconds < 1) throw new Error(`cluster.etcd.leaseTtlSeconds must be an integer >= 1, got ${o.leaseTtlSeconds}`);
}

/** Reconnect delays of a broken watch stream: 100 ms doubling up to WATCH_BACKOFF_MAX_MS, jittered. */
export const WATCH_BACKOFF_MAX_MS = 2_000;

interface Backoff {
  readonly duration: number;
  next(context: unknown): Backoff;
}

function watchBackoff(attempt = 0): Backoff {
  const base = Math.min(WATCH_BACKOFF_MAX_MS, 100 * 2 ** Math.min(attempt, 5));
  return { duration: Math.round(base * (0.5 + Math.random() / 2)), next: () => watchBackoff(attempt + 1) };
}

/**
 * An etcd client for the cluster state. Its watch streams reconnect within WATCH_BACKOFF_MAX_MS
 * (the client's default backs off up to 30 s, a replica stale that long after a member came
 * back, and its pending reconnect timers outlive close()).
 */
export function newEtcdClient(endpoints: string[]): Etcd3 {
  return new Etcd3({ hosts: endpoints, faultHandling: { watchBackoff: watchBackoff() } });
}

export async function openEtcdCluster(o: OpenEtcdClusterOptions): Promise<EtcdCluster> {
  checkEtcdClusterOptions(o);
  const log = o.log.child({ component: 'etcd-cluster', cluster: o.cluster, node: o.nodeId });
  const client = newEtcdClient(o.endpoints);
  const luStates = new Set<EtcdLuState>();
  let membership: EtcdMembership | undefined;
  let tokenState: EtcdTokenState | undefined;
  const closeAll = async () => {
    for (const s of luStates) await s.close();
    await tokenState?.close();
    await membership?.close();
    client.close();
  };
  try {
    const timeout = o.openTimeoutMs ?? 15_000;
    const parts = { cluster: o.cluster, nodeId: o.nodeId, log: o.log };
    membership = await withTimeout(EtcdMembership.open(client, { ...parts, nodeIds: o.nodeIds, leaseTtlSeconds: o.leaseTtlSeconds }), timeout, `joining cluster '${o.cluster}' at ${o.endpoints.join(',')}`);
    tokenState = await withTimeout(EtcdTokenState.open({ ...parts, client }), timeout, 'loading the token state');
  } catch (err) {
    await closeAll().catch(() => undefined);
    throw new Error(`cluster '${o.cluster}', node '${o.nodeId}': etcd at ${o.endpoints.join(',')}: ${err instanceof Error ? err.message : String(err)}`);
  }
  log.info({ endpoints: o.endpoints, nodes: o.nodeIds, leaseTtlSeconds: o.leaseTtlSeconds }, 'cluster state in etcd opened');
  const m = membership;
  const t = tokenState;
  let closed = false;
  /** The other alive nodes: a PR OUT completes once they have it in their replicas. */
  const peers = () => [...m.states()].filter(([id, st]) => st === 'alive' && id !== o.nodeId).map(([id]) => id);
  return {
    membership: m,
    tokenState: t,
    luStateFactory: (init: LuStateInit): LuState => {
      if (closed) throw new Error('etcd cluster closed');
      const s = new EtcdLuState(init, { client, cluster: o.cluster, nodeId: o.nodeId, log: o.log, peers });
      luStates.add(s);
      return s;
    },
    luStatesReady: (ms = 15_000) => withTimeout(Promise.all([...luStates].map((s) => s.ready)).then(() => undefined), ms, 'reading the LUs\' reservations'),
    close: async () => {
      if (closed) return;
      closed = true;
      await closeAll();
      log.info('cluster state in etcd closed');
    },
  };
}
