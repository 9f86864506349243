/**
 * A node whose watch comes back at a compacted revision (issue 15): its etcd member was down
 * while another node changed the reservations, a token and the membership, and the history was
 * compacted meanwhile. etcd cancels such a watch; the replicas must read everything again
 * rather than stay stale for good. Three etcd members; the reader's client knows only member 0.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { newEtcdClient } from '../../src/cluster/etcd-cluster';
import { EtcdLuState } from '../../src/cluster/etcd-lu-state';
import { EtcdMembership } from '../../src/cluster/etcd-membership';
import { EtcdTokenState } from '../../src/cluster/etcd-token-state';
import { PrType } from '../../scsi/reservations';
import type { ItNexus } from '../../scsi/types';
import { describeIf, pollUntil } from './harness';
import { requireEtcd, startEtcd, type EtcdCluster } from './engines/etcd';

const log = pino({ level: 'silent' });

function nexus(host: string, port: number): ItNexus {
  const initiatorName = `iqn.2026-12.test:${host}`;
  return { key: `${initiatorName},i,0x1,${port}`, initiatorName, initiatorPortName: `${initiatorName},i,0x1`, relativeTargetPort: port, targetPortName: `t,${port}` };
}

describeIf(requireEtcd())('replicas after a watch canceled by compaction', () => {
  let etcd: EtcdCluster;
  const closers: Array<() => Promise<void> | void> = [];

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'etcd-compaction', members: 3 });
  }, 60_000);
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    await etcd?.stop();
  }, 30_000);

  it('reservations, tokens and membership are read again and catch up', async () => {
    const [m0, m1, m2] = etcd.members;
    const readerClient = newEtcdClient([m0.clientUrl]);
    const writerClient = newEtcdClient([m1.clientUrl, m2.clientUrl]);
    closers.push(() => readerClient.close(), () => writerClient.close());
    const naa = randomBytes(16);
    const init = { naa, canPersist: true, persist: () => Promise.resolve() };
    const reader = new EtcdLuState(init, { client: readerClient, cluster: 'cmp', nodeId: 'r', log });
    const writer = new EtcdLuState(init, { client: writerClient, cluster: 'cmp', nodeId: 'w', log });
    closers.push(() => reader.close(), () => writer.close());
    const rTokens = await EtcdTokenState.open({ client: readerClient, cluster: 'cmp', nodeId: 'r', log });
    const wTokens = await EtcdTokenState.open({ client: writerClient, cluster: 'cmp', nodeId: 'w', log });
    closers.push(() => rTokens.close(), () => wTokens.close());
    const rm = await EtcdMembership.open(readerClient, { cluster: 'cmp', nodeId: 'r', nodeIds: ['r', 'w', 'x'], leaseTtlSeconds: 30, log });
    closers.push(() => rm.close());
    await Promise.all([reader.ready, writer.ready]);
    const nw = nexus('host1', 2);
    await writer.changeReservations((r) => r.register(nw, { reservationKey: 0n, serviceActionKey: 7n, ignoreExistingKey: false, aptpl: false, allTgPt: false }));
    await reader.waitForRevision(writer.committedRevision);
    expect(reader.reservations.registrations.map((r) => r.key)).toEqual([7n]);

    await m0.kill();
    await writer.changeReservations((r) => r.reserve(nw, 7n, PrType.EXCLUSIVE_ACCESS));
    const rec = { key: 'ab12', bytes: randomBytes(512), rodType: 0xffff0001, pointInTime: 'snapshot' as const, luNaa: naa.toString('hex'), capacity: 1n, ranges: [], bytesRepresented: 0, inactivityMs: 1000, createdAt: 0, state: 'live' as const, lastUse: 0 };
    await wTokens.create(rec);
    const wm = await EtcdMembership.open(writerClient, { cluster: 'cmp', nodeId: 'w', nodeIds: ['r', 'w', 'x'], leaseTtlSeconds: 30, log });
    closers.push(() => wm.close());
    const latest = (await writerClient.get('anything').exec()).header.revision;
    await writerClient.kv.compact({ revision: latest, physical: true });

    await m0.restart();
    // The watches reconnect to m0 at revisions compacted away: canceled, then read again.
    await reader.waitForRevision(writer.committedRevision, 30_000);
    expect(reader.reservations.isHolder(nw)).toBe(true);
    expect((await pollUntil(() => rTokens.get('ab12'), (x) => x !== undefined, 30_000))?.bytes.equals(rec.bytes)).toBe(true);
    expect(await pollUntil(() => rm.states().get('w'), (s) => s === 'alive', 30_000)).toBe('alive');
  }, 120_000);
});
