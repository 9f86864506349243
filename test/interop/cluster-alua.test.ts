/**
 * ALUA across real xcopyd nodes (issue 15): a one-member etcd
 * (engines/etcd.ts) and two xcopyd processes from one YAML
 * (engines/cluster.ts, file-backed shared LUs). Through each node REPORT
 * TARGET PORT GROUPS shows its own group active/optimized and the other
 * active/non-optimized; SendTargets on either node names both portals with
 * their portal group tags; data written through one node reads back through
 * the other. SIGKILL node n1: node n0 reports n1's group unavailable once
 * the lease TTL has passed, with ASYMMETRIC ACCESS STATE CHANGED seen
 * exactly once per LU; restarted, n1 is active/non-optimized again.
 */
import path from 'node:path';
import { REPO_ROOT, describeIf, requireFile, sleep } from './harness';
import { requireEtcd, startEtcd, type EtcdCluster } from './engines/etcd';
import { startXcopydCluster, type ClusterNodeProcess, type XcopydCluster } from './engines/cluster';
import { openSession, cdb, type TestInitiator } from '../support/initiator';
import { decodeRtpg, portDesignators, rtpgCdb, type RtpgGroup } from '../support/alua';
import { AccessState } from '../../scsi/alua';

const TTL = 2;
const AO = AccessState.ACTIVE_OPTIMIZED;
const ANO = AccessState.ACTIVE_NON_OPTIMIZED;
const UNAVAILABLE = AccessState.UNAVAILABLE;

interface Seen {
  groups: RtpgGroup[];
  /** [key, asc, ascq] of every CHECK CONDITION met on the way. */
  checks: Array<[number, number, number]>;
}

/** RTPG through `s` on `lun`, repeated until `ok` holds (bounded); every CHECK CONDITION met is kept. */
async function rtpgUntil(s: TestInitiator, ok: (g: RtpgGroup[]) => boolean, ms: number, lun = 0): Promise<Seen> {
  const checks: Seen['checks'] = [];
  const deadline = Date.now() + ms;
  let groups: RtpgGroup[] = [];
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    const r = await s.command(lun, rtpgCdb(), { read: 1024 });
    if (r.status === 2 && r.sense) checks.push([r.sense[2] & 0x0f, r.sense[12], r.sense[13]]);
    else if (r.status === 0) {
      groups = decodeRtpg(r.data, true);
      if (ok(groups)) return { groups, checks };
    }
    await sleep(100);
  }
  throw new Error(`RTPG never showed the expected states within ${ms} ms; last ${JSON.stringify(groups)}, checks ${JSON.stringify(checks)}`);
}

const stateOf = (groups: RtpgGroup[], id: number) => groups.find((g) => g.id === id)?.state;

// The daemon's etcd composition (openEtcdCluster) is written alongside, as requireTarget does for the daemon.
const ready = requireEtcd() && requireFile(path.join(REPO_ROOT, 'src', 'cluster', 'etcd-cluster.ts'), 'the etcd cluster composition (openEtcdCluster, issue 15)');

describeIf(ready)('ALUA across two xcopyd nodes (real etcd)', () => {
  let etcd: EtcdCluster;
  let cluster: XcopydCluster;
  let n0: ClusterNodeProcess;
  let n1: ClusterNodeProcess;
  const sessions: TestInitiator[] = [];

  async function session(node: ClusterNodeProcess): Promise<TestInitiator> {
    const s = await openSession(node.port, { targetName: cluster.iqn, initiatorName: `iqn.2026-11.org.xcopyd:alua-${node.id}-${sessions.length}` });
    sessions.push(s);
    for (const lun of [0, 1]) {
      for (let i = 0; i < 4; i++) if ((await s.command(lun, cdb.testUnitReady())).status === 0) break;
    }
    return s;
  }

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'cluster-alua-etcd' });
    cluster = await startXcopydCluster({ name: 'cluster-alua', etcdEndpoints: etcd.endpoints, leaseTtlSeconds: TTL });
    [n0, n1] = cluster.nodes;
  }, 120_000);

  afterAll(async () => {
    for (const s of sessions) s.close();
    await cluster?.stop();
    await etcd?.stop();
  }, 60_000);

  it('through each node: its own group active/optimized, the other active/non-optimized; VPD 83h names the node\'s port and group', async () => {
    for (const [self, other] of [[n0, n1], [n1, n0]]) {
      const s = await session(self);
      const { groups } = await rtpgUntil(s, (g) => stateOf(g, self.targetPortGroup) === AO && stateOf(g, other.targetPortGroup) === ANO, 10_000);
      expect(groups.map((g) => [g.id, g.ports])).toEqual([[1, [1]], [2, [17]]]);
      const v = await s.command(0, cdb.inquiry(255, true, 0x83), { read: 255 });
      expect(portDesignators(v.data)).toEqual({ rtp: self.relativeTargetPort, tpg: self.targetPortGroup });
      const inq = await s.command(0, cdb.inquiry(36), { read: 36 });
      expect(inq.data[5] & 0x30).toBe(0x10); // TPGS=01b
    }
  }, 60_000);

  it('SendTargets on either node names both portals, each with its portal group tag', async () => {
    for (const node of [n0, n1]) {
      const d = await openSession(node.port, { sessionType: 'Discovery' });
      sessions.push(d);
      const r = await d.text([['SendTargets', 'All']]);
      expect(r.TargetName).toEqual([cluster.iqn]);
      expect(r.TargetAddress).toEqual([`${n0.portal},1`, `${n1.portal},2`]);
    }
  }, 30_000);

  it('the LUs are shared: written through n0, read back through n1', async () => {
    const a = await session(n0);
    const b = await session(n1);
    const data = Buffer.alloc(4096);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    const w = await a.command(1, cdb.write10(100, 8, true), { dataOut: data });
    expect(w.status).toBe(0);
    const r = await b.command(1, cdb.read10(100, 8), { read: 4096 });
    expect(r.status).toBe(0);
    expect(r.data.equals(data)).toBe(true);
  }, 30_000);

  it('SIGKILL n1: n0 reports n1\'s group unavailable after the lease TTL, 6/2A/06 once per LU; n1 restarted is active/non-optimized again', async () => {
    const s = await session(n0);
    await rtpgUntil(s, (g) => stateOf(g, 2) === ANO, 10_000);
    const t0 = Date.now();
    await n1.kill('SIGKILL');
    const gone = await rtpgUntil(s, (g) => stateOf(g, 2) === UNAVAILABLE, (TTL + 15) * 1000);
    const ms = Date.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(1000); // the lease expires: never at once (a SIGKILLed node revokes nothing)
    expect(stateOf(gone.groups, 1)).toBe(AO);
    expect(gone.groups.find((g) => g.id === 2)?.status).toBe(2); // STATUS CODE: implicit transition
    // LUN 0: the UA was met by the RTPG poll, once; LUN 1: the first command sees it, the next does not.
    expect(gone.checks).toEqual([[6, 0x2a, 0x06]]);
    const first = await s.command(1, cdb.testUnitReady());
    expect([first.status, first.sense?.[12], first.sense?.[13]]).toEqual([2, 0x2a, 0x06]);
    expect((await s.command(1, cdb.testUnitReady())).status).toBe(0);
    expect((await s.command(0, cdb.testUnitReady())).status).toBe(0);
    // The path comes back.
    await n1.start();
    const back = await rtpgUntil(s, (g) => stateOf(g, 2) === ANO, 20_000);
    expect(back.checks).toEqual([[6, 0x2a, 0x06]]);
    const b = await session(n1);
    const again = await rtpgUntil(b, (g) => stateOf(g, 2) === AO && stateOf(g, 1) === ANO, 10_000);
    expect(again.groups.length).toBe(2);
  }, 90_000);
});
