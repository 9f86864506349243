/**
 * Which nodes of a cluster are alive (issue 15). The contract the ALUA code
 * (target port group states) and fencing (rbd lock break) read: every
 * configured node id maps to 'alive' or 'gone'. The etcd implementation
 * (etcd-membership.ts) keeps a key per node bound to a lease, and reads the
 * states from a watch: a node whose key vanished (lease revoked on a clean
 * close, or expired after its TTL without a keepalive) is 'gone'.
 */
export type NodeState = 'alive' | 'gone';

export interface ClusterMembership {
  /** This node's id. */
  readonly self: string;
  /** Every configured node id (and any other node seen alive). */
  states(): ReadonlyMap<string, NodeState>;
  /** `cb` runs after a change of states(); returns the unsubscribe. */
  onChange(cb: () => void): () => void;
}

/** The states of `configured` ids given the ids whose key is present now (ids present but not configured are listed alive after them). */
export function nodeStates(configured: readonly string[], present: ReadonlySet<string>): Map<string, NodeState> {
  const out = new Map<string, NodeState>();
  for (const id of configured) out.set(id, present.has(id) ? 'alive' : 'gone');
  for (const id of [...present].sort()) if (!out.has(id)) out.set(id, 'alive');
  return out;
}

/** Whether two state maps differ (the onChange trigger). */
export function statesDiffer(a: ReadonlyMap<string, NodeState>, b: ReadonlyMap<string, NodeState>): boolean {
  if (a.size !== b.size) return true;
  for (const [k, v] of a) if (b.get(k) !== v) return true;
  return false;
}

/** etcd key layout under /xcopyd/<cluster>/ (one place, so every part agrees). */
export const keys = {
  root: (cluster: string) => `/xcopyd/${cluster}/`,
  nodes: (cluster: string) => `/xcopyd/${cluster}/nodes/`,
  node: (cluster: string, id: string) => `/xcopyd/${cluster}/nodes/${id}`,
  lu: (cluster: string, naaHex: string) => `/xcopyd/${cluster}/lu/${naaHex}/`,
  tokens: (cluster: string) => `/xcopyd/${cluster}/tokens/`,
};

/** Ids and cluster names become key segments: no '/', nothing empty. */
export function checkKeySegment(what: string, s: string): string {
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(s)) throw new Error(`${what} '${s}' must be 1-128 of [A-Za-z0-9._:-] (it names an etcd key)`);
  return s;
}
