/**
 * openEtcdCluster end to end (issue 15): two nodes, each a ScsiDevice whose LU (same NAA) takes
 * its state from its own node's openEtcdCluster, against a real etcd. PERSISTENT RESERVE OUT
 * through node A, a WRITE through node B gets RESERVATION CONFLICT; PREEMPT through B gives A's
 * initiator UNIT ATTENTION, REGISTRATIONS PREEMPTED; both nodes share one sealing key; A closing
 * is seen by B at once.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { openEtcdCluster, type EtcdCluster as Cluster } from '../../src/cluster/etcd-cluster';
import type { EtcdLuState } from '../../src/cluster/etcd-lu-state';
import { ScsiDevice } from '../../scsi/scsi-device';
import { ScsiStatus, type ItNexus } from '../../scsi/types';
import { cdbOf, dataOf, identity, MemoryStore, senseOf, task } from '../scsi/helpers';
import { describeIf, within } from './harness';
import { requireEtcd, startEtcd, type EtcdCluster } from './engines/etcd';

const log = pino({ level: 'silent' });
const BS = 512;
const TUR = [0, 0, 0, 0, 0, 0];
const write10 = cdbOf([0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0], 10);
const read10 = cdbOf([0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0], 10);

function proutCdb(sa: number, type = 0): Buffer {
  const c = cdbOf([0x5f, sa, type & 0x0f], 10);
  c.writeUInt32BE(24, 5);
  return c;
}
function params(rk: bigint, sark: bigint): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64BE(rk, 0);
  b.writeBigUInt64BE(sark, 8);
  return b;
}
function nexusOn(host: string, relativeTargetPort: number): ItNexus {
  const initiatorName = `iqn.2026-12.test:${host}`;
  return { key: `${initiatorName},i,0x1,${relativeTargetPort}`, initiatorName, initiatorPortName: `${initiatorName},i,0x1`, relativeTargetPort, targetPortName: `iqn.2026-12.test:t,t,0x${relativeTargetPort}` };
}

describeIf(requireEtcd())('openEtcdCluster: two nodes serving one LU', () => {
  let etcd: EtcdCluster;
  const opened: Cluster[] = [];

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'etcd-cluster' });
  }, 60_000);
  afterAll(async () => {
    for (const c of opened) await c.close();
    await etcd?.stop();
  }, 30_000);

  it('PR OUT through A, conflict through B; PREEMPT through B reaches A\'s initiator; one sealing key; A closing is seen at once', async () => {
    const o = { endpoints: etcd.endpoints, cluster: 'two', nodeIds: ['a', 'b'], leaseTtlSeconds: 30, log };
    const [ca, cb] = await Promise.all([openEtcdCluster({ ...o, nodeId: 'a' }), openEtcdCluster({ ...o, nodeId: 'b' })]);
    opened.push(ca, cb);
    const id = { ...identity(0), naa: Buffer.concat([Buffer.from([0x60]), randomBytes(15)]) };
    const states: EtcdLuState[] = [];
    const device = (c: Cluster) =>
      new ScsiDevice({ logger: log, luns: [{ lun: 0, store: new MemoryStore(1024 * BS), identity: id, state: (init) => {
        const s = c.luStateFactory(init) as EtcdLuState;
        states.push(s);
        return s;
      } }] });
    const da = device(ca);
    const db = device(cb);
    await Promise.all([ca.luStatesReady(), cb.luStatesReady()]);
    const [sa, sb] = states;
    const na = nexusOn('host1', 1);
    const nb = nexusOn('host2', 2);
    da.attachNexus(na);
    db.attachNexus(nb);
    for (const [d, n] of [[da, na], [db, nb]] as const) {
      expect((await d.execute(task(TUR, { nexus: n }))).status).toBe(ScsiStatus.CHECK_CONDITION); // POWER ON
      expect((await d.execute(task(TUR, { nexus: n }))).status).toBe(ScsiStatus.GOOD);
    }
    const prout = (d: ScsiDevice, n: ItNexus, sa_: number, rk: bigint, sark: bigint, type = 0) => d.execute(task(proutCdb(sa_, type), { nexus: n, dataOut: params(rk, sark) }));
    expect((await prout(da, na, 0, 0n, 0xan)).status).toBe(ScsiStatus.GOOD);
    expect((await prout(da, na, 1, 0xan, 0n, 3)).status).toBe(ScsiStatus.GOOD); // RESERVE, EXCLUSIVE ACCESS
    await sb.waitForRevision(sa.committedRevision);
    expect((await db.execute(task(write10, { nexus: nb, dataOut: Buffer.alloc(BS) }))).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await db.execute(task(read10, { nexus: nb, isWrite: false }))).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await da.execute(task(write10, { nexus: na, dataOut: Buffer.alloc(BS) }))).status).toBe(ScsiStatus.GOOD);
    // PR IN READ RESERVATION through B names A's key.
    const prin = cdbOf([0x5e, 1], 10);
    prin.writeUInt16BE(64, 7);
    const rr = dataOf(await db.execute(task(prin, { nexus: nb, isWrite: false })));
    expect(rr.readBigUInt64BE(8)).toBe(0xan);
    // PREEMPT through B.
    expect((await prout(db, nb, 0, 0n, 0xbn)).status).toBe(ScsiStatus.GOOD);
    expect((await prout(db, nb, 4, 0xbn, 0xan, 3)).status).toBe(ScsiStatus.GOOD);
    await sa.waitForRevision(sb.committedRevision);
    const ua = await da.execute(task(TUR, { nexus: na }));
    expect(ua.status).toBe(ScsiStatus.CHECK_CONDITION);
    expect(senseOf(ua)).toMatchObject({ key: 6, asc: 0x2a, ascq: 0x05 });
    expect((await da.execute(task(write10, { nexus: na, dataOut: Buffer.alloc(BS) }))).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await db.execute(task(write10, { nexus: nb, dataOut: Buffer.alloc(BS) }))).status).toBe(ScsiStatus.GOOD);
    // A PR OUT completes once the other alive node has it: PR IN through B right after a PR OUT
    // through A, with no wait in between, always sees it (READ KEYS, PRGENERATION).
    const readKeys = async (d: ScsiDevice, n: ItNexus) => {
      const c = cdbOf([0x5e, 0], 10);
      c.writeUInt16BE(256, 7);
      const d_ = dataOf(await d.execute(task(c, { nexus: n, isWrite: false })));
      const keys: bigint[] = [];
      for (let off = 8; off < 8 + d_.readUInt32BE(4); off += 8) keys.push(d_.readBigUInt64BE(off));
      return { generation: d_.readUInt32BE(0), keys };
    };
    const nc = nexusOn('host3', 1);
    da.attachNexus(nc);
    await da.execute(task(TUR, { nexus: nc }));
    for (let i = 1; i <= 20; i++) {
      const key = BigInt(0x100 + i);
      expect((await prout(da, nc, 6, 0n, key)).status).toBe(ScsiStatus.GOOD); // REGISTER AND IGNORE EXISTING KEY
      const seen = await readKeys(db, nb);
      expect({ i, generation: seen.generation, keys: seen.keys }).toEqual({ i, generation: sa.reservations.generation, keys: [0xbn, key] });
    }

    // One sealing key for the cluster.
    expect(cb.tokenState.sealingKey().secret.equals(ca.tokenState.sealingKey().secret)).toBe(true);
    // A closes: its lease is revoked, B sees it gone well within the 30 s TTL.
    expect(cb.membership.states().get('a')).toBe('alive');
    const gone = new Promise<void>((resolve) => {
      const off = cb.membership.onChange(() => {
        if (cb.membership.states().get('a') === 'gone') off(), resolve();
      });
    });
    await ca.close();
    expect(await within(gone.then(() => true), 10_000)).toBe(true);
    // B still holds the reservation A's close did not touch.
    expect((await db.execute(task(write10, { nexus: nb, dataOut: Buffer.alloc(BS) }))).status).toBe(ScsiStatus.GOOD);
  }, 60_000);
});
