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
import { EtcdLuState } from '../../../src/cluster/etcd-lu-state';
import { EtcdMembership } from '../../../src/cluster/etcd-membership';
import { PrType } from '../../../scsi/reservations';
import { childNexus } from './etcd-node-process';

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
  if (a.mode === 'reserve') {
    const lu = new EtcdLuState({ naa: Buffer.from(a.naa!, 'hex'), canPersist: true, persist: () => Promise.resolve() }, { client, cluster: a.cluster, nodeId: a.nodeId, log });
    await lu.ready;
    const nexus = childNexus(a.nodeId);
    lu.attachNexus(nexus, 'UA_POWER_ON_RESET');
    const key = BigInt(`0x${a.key}`);
    await lu.changeReservations((r) => r.register(nexus, { reservationKey: 0n, serviceActionKey: key, ignoreExistingKey: false, aptpl: false, allTgPt: false }));
    await lu.changeReservations((r) => r.reserve(nexus, key, PrType.EXCLUSIVE_ACCESS));
  }
  process.stdout.write('ready\n');
  setInterval(() => undefined, 60_000);
}

main().catch((e: unknown) => {
  process.stderr.write(`etcd-node failed: ${String(e)}\n`);
  process.exit(1);
});

