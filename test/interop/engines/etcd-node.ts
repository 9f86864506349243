/**
 * A cluster node in its own process, for the etcd failure tests: the test SIGSTOPs it (a hung
 * node: its lease keepalives stop) or SIGKILLs it (a dead node). Started by startEtcdNode()
 * (etcd-node-process.ts) with one JSON argument; prints 'ready' on stdout once its part is
 * done, then lives until killed.
 *
 * Modes: 'member' joins the membership; 'reserve' also registers an I_T nexus on the LU
 * `naa` with `key` and takes a WRITE EXCLUSIVE persistent reservation.
 */
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { EtcdMembership } from '../../../src/cluster/etcd-membership';

export interface EtcdNodeArgs {
  mode: 'member' | 'reserve';
  endpoints: string[];
  cluster: string;
  nodeId: string;
  nodeIds: string[];
  leaseTtlSeconds: number;
  naa?: string;
  key?: string;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as EtcdNodeArgs;
  const log = pino({ level: 'warn' }, pino.destination(2));
  const client = new Etcd3({ hosts: a.endpoints });
  await EtcdMembership.open(client, { cluster: a.cluster, nodeId: a.nodeId, nodeIds: a.nodeIds, leaseTtlSeconds: a.leaseTtlSeconds, log });
  process.stdout.write('ready\n');
  setInterval(() => undefined, 60_000);
}

main().catch((e: unknown) => {
  process.stderr.write(`etcd-node failed: ${String(e)}\n`);
  process.exit(1);
});
