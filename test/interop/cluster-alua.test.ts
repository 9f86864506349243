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
 * Also libiscsi's SCSI.MultipathIO.* with one URL per node, and persistent
 * reservations across nodes (made through n0, enforced on n1, kept when the
 * holder's node is killed, preempted through n1).
 */
import path from 'node:path';
import { describeIf, findInPath, missingPrerequisite, run, sleep } from './harness';
import { parseCUnit } from './cunit';
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

const RESERVATION_CONFLICT = 0x18;
const WRITE_EXCLUSIVE = 1;

/** PERSISTENT RESERVE OUT (SPC-5 6.16): service action, type, reservation key, service action reservation key. */
function prOut(sa: number, type: number, key: bigint, saKey = 0n): { cdb: Buffer; data: Buffer } {
  const c = Buffer.alloc(10);
  c[0] = 0x5f;
  c[1] = sa;
  c[2] = type;
  c.writeUInt32BE(24, 5);
  const d = Buffer.alloc(24);
  d.writeBigUInt64BE(key, 0);
  d.writeBigUInt64BE(saKey, 8);
  return { cdb: c, data: d };
}
const PR = { REGISTER: 0, RESERVE: 1, CLEAR: 3, PREEMPT: 4 } as const;

/** PERSISTENT RESERVE IN, READ RESERVATION -> the holder's key and type, or undefined. */
async function readReservation(s: TestInitiator, lun = 0): Promise<{ key: bigint; type: number } | undefined> {
  const c = Buffer.alloc(10);
  c[0] = 0x5e;
  c[1] = 0x01;
  c.writeUInt16BE(64, 7);
  const r = await s.command(lun, c, { read: 64 });
  if (r.status !== 0) throw new Error(`READ RESERVATION: status ${r.status}`);
  if (r.data.readUInt32BE(4) === 0) return undefined;
  return { key: r.data.readBigUInt64BE(8), type: r.data[21] & 0x0f };
}

describeIf(requireEtcd())('ALUA across two xcopyd nodes (real etcd)', () => {
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

  it('libiscsi SCSI.MultipathIO.{Simple,CompareAndWrite,CompareAndWriteAsync} with one URL per node', async () => {
    if (!findInPath('iscsi-test-cu')) {
      missingPrerequisite("'iscsi-test-cu' not found on PATH", 'apt-get install -y libiscsi-bin');
      return;
    }
    for (const t of ['SCSI.MultipathIO.Simple', 'SCSI.MultipathIO.CompareAndWrite', 'SCSI.MultipathIO.CompareAndWriteAsync']) {
      const logFile = path.join(cluster.dir, `${t}.log`);
      const res = await run('iscsi-test-cu', ['-d', `--test=${t}`, n0.url(0), n1.url(0)], { timeoutMs: 120_000, logFile });
      const r = parseCUnit(res.stdout, 'SCSI');
      expect({ t, passed: r.passed, failed: r.failed, skipped: r.skipped, log: r.failed ? logFile : '' }).toEqual({ t, passed: 1, failed: 0, skipped: 0, log: '' });
    }
  }, 300_000);

  // SCSI.MultipathIO.Reset expects the LOGICAL UNIT RESET sent through one path to show as 6/29/03
  // on the other at its next command; across nodes the reset's unit attention travels through etcd
  // after the TMF has answered, so the other node's next command can come first (LuState.reset is
  // synchronous). Kept failing until cross-node reset UAs are in place before the TMF response.
  it.failing('libiscsi SCSI.MultipathIO.Reset with one URL per node (the reset UA on the other node)', async () => {
    if (!findInPath('iscsi-test-cu')) throw new Error('iscsi-test-cu missing');
    const logFile = path.join(cluster.dir, 'SCSI.MultipathIO.Reset.log');
    const res = await run('iscsi-test-cu', ['-d', '--test=SCSI.MultipathIO.Reset', n0.url(1), n1.url(1)], { timeoutMs: 120_000, logFile });
    const r = parseCUnit(res.stdout, 'SCSI');
    // Its late UA must not leak into the next test: take it on both nodes.
    for (const node of [n0, n1]) await session(node);
    expect([r.passed, r.failed]).toEqual([1, 0]);
  }, 300_000);

  it('persistent reservations across nodes: made through n0, enforced on n1, kept when the holder\'s node is killed, preempted through n1', async () => {
    const x = await session(n0);
    const y = await session(n1);
    const block = Buffer.alloc(512, 0x5a);
    const send = async (s: TestInitiator, o: { cdb: Buffer; data: Buffer }) => (await s.command(0, o.cdb, { dataOut: o.data })).status;
    expect(await send(x, prOut(PR.REGISTER, 0, 0n, 0xaan))).toBe(0);
    expect(await send(x, prOut(PR.RESERVE, WRITE_EXCLUSIVE, 0xaan))).toBe(0);
    // The PR OUT has answered GOOD: the next command through the other node sees the reservation.
    expect((await y.command(0, cdb.write10(8, 1), { dataOut: block })).status).toBe(RESERVATION_CONFLICT);
    expect((await y.command(0, cdb.read10(8, 1), { read: 512 })).status).toBe(0); // Write Exclusive lets others read
    expect(await readReservation(y)).toEqual({ key: 0xaan, type: WRITE_EXCLUSIVE });
    // The holder's node dies: SPC-5 keeps the reservation (only PR OUT or a power loss without APTPL ends it).
    await n0.kill('SIGKILL');
    await rtpgUntil(y, (g) => stateOf(g, 1) === UNAVAILABLE, (TTL + 15) * 1000);
    expect(await readReservation(y)).toEqual({ key: 0xaan, type: WRITE_EXCLUSIVE });
    expect((await y.command(0, cdb.write10(8, 1), { dataOut: block })).status).toBe(RESERVATION_CONFLICT);
    // Another initiator preempts it through n1.
    expect(await send(y, prOut(PR.REGISTER, 0, 0n, 0xbbn))).toBe(0);
    expect(await send(y, prOut(PR.PREEMPT, WRITE_EXCLUSIVE, 0xbbn, 0xaan))).toBe(0);
    expect(await readReservation(y)).toEqual({ key: 0xbbn, type: WRITE_EXCLUSIVE });
    expect((await y.command(0, cdb.write10(8, 1), { dataOut: block })).status).toBe(0);
    // n0 back: the preempted initiator, no longer registered, conflicts there.
    await n0.start();
    const x2 = await session(n0);
    expect((await x2.command(0, cdb.write10(8, 1), { dataOut: block })).status).toBe(RESERVATION_CONFLICT);
    await rtpgUntil(y, (g) => stateOf(g, 1) === ANO, 20_000); // n0's return (and its 6/2A/06) seen on n1
    expect(await send(y, prOut(PR.CLEAR, 0, 0xbbn))).toBe(0);
    expect(await readReservation(x2)).toBeUndefined();
  }, 120_000);

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

describeIf(requireEtcd())('ALUA across two xcopyd nodes with a three-member etcd, one member killed', () => {
  let etcd: EtcdCluster;
  let cluster: XcopydCluster;
  const sessions: TestInitiator[] = [];

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'cluster-alua-etcd3', members: 3 });
    cluster = await startXcopydCluster({ name: 'cluster-alua-3', etcdEndpoints: etcd.endpoints, leaseTtlSeconds: TTL });
  }, 120_000);

  afterAll(async () => {
    for (const s of sessions) s.close();
    await cluster?.stop();
    await etcd?.stop();
  }, 60_000);

  it('no node is declared gone and I/O goes on through both nodes while one etcd member is dead', async () => {
    const [n0, n1] = cluster.nodes;
    const s: TestInitiator[] = [];
    for (const node of [n0, n1]) {
      const x = await openSession(node.port, { targetName: cluster.iqn, initiatorName: `iqn.2026-11.org.xcopyd:etcd3-${node.id}` });
      sessions.push(x);
      s.push(x);
      await rtpgUntil(x, (g) => stateOf(g, node.targetPortGroup) === AO && stateOf(g, 3 - node.targetPortGroup) === ANO, 10_000);
    }
    await etcd.members[0].kill();
    // Four lease TTLs: long enough for a lost keepalive to have made a node gone.
    const until = Date.now() + 4 * TTL * 1000;
    const block = Buffer.alloc(512);
    let rounds = 0;
    for (let i = 0; Date.now() < until && i < 400; i++, rounds++) {
      for (const [j, x] of s.entries()) {
        block.fill(i & 0xff);
        const w = await x.command(0, cdb.write10(64 + j, 1), { dataOut: block });
        expect(w.status).toBe(0);
        const r = await x.command(0, rtpgCdb(), { read: 1024 });
        expect(r.status).toBe(0); // no 6/2A/06: nothing changed
        expect(decodeRtpg(r.data, true).map((g) => g.state).sort()).toEqual([AO, ANO]);
      }
      await sleep(100);
    }
    expect(rounds).toBeGreaterThan(5);
    await etcd.members[0].restart();
  }, 120_000);
});
