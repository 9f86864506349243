/**
 * Cluster mode composed by the daemon (issue 15), against fakes of the
 * cluster engines (the plan's contracts: src/cluster/etcd-cluster.ts
 * openEtcdCluster, src/backing/rbd-store.ts openRbdStore): one YAML, the node
 * named, it listens on its own portal, SendTargets names every node's portal
 * with that node's portal group tag, RTPG and VPD 83h describe every node's
 * group, the membership drives the states, every LU gets the cluster's
 * LuState, rbd: LUNs open through openRbdStore, and stop() closes the cluster.
 * The real engines run in test/interop/cluster-alua.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Daemon, type ClusterDeps, type ClusterHandle } from '../src/daemon';
import { validateConfig } from '../src/config';
import { localLuState } from '../scsi/state/local-lu-state';
import type { LuStateInit } from '../scsi/state/lu-state';
import { AccessState } from '../scsi/alua';
import type { NodeState } from '../src/cluster/membership';
import { freePort } from './interop/harness';
import { openSession, cdb, type TestInitiator } from './support/initiator';
import { MemoryStore } from './scsi/helpers';
import { decodeRtpg, portDesignators, rtpgCdb } from './support/alua';

// A configuration without `cluster` must never load etcd3: the mock records it if anything does.
let etcd3Loaded = false;
jest.mock('etcd3', () => {
  etcd3Loaded = true;
  return {};
}, { virtual: true });

const IQN = 'iqn.2026-11.org.xcopyd:cluster';

class FakeMembership {
  private readonly map: Map<string, NodeState>;
  private readonly cbs = new Set<() => void>();
  constructor(readonly self: string, ids: string[]) {
    this.map = new Map(ids.map((id) => [id, 'alive' as NodeState]));
  }
  states(): ReadonlyMap<string, NodeState> {
    return this.map;
  }
  onChange(cb: () => void): () => void {
    this.cbs.add(cb);
    return () => this.cbs.delete(cb);
  }
  set(id: string, s: NodeState): void {
    this.map.set(id, s);
    for (const cb of [...this.cbs]) cb();
  }
}

interface Fakes {
  deps: Partial<ClusterDeps>;
  opened: Array<Parameters<ClusterDeps['openEtcdCluster']>[0]>;
  rbd: Array<Parameters<ClusterDeps['openRbdStore']>>;
  luStates: LuStateInit[];
  membership?: FakeMembership;
  closed: number;
}

function fakes(): Fakes {
  const f: Fakes = { deps: {}, opened: [], rbd: [], luStates: [], closed: 0 };
  f.deps.openEtcdCluster = async (o) => {
    f.opened.push(o);
    f.membership = new FakeMembership(o.nodeId, o.nodeIds);
    const handle: ClusterHandle = {
      membership: f.membership,
      luStateFactory: (init) => {
        f.luStates.push(init);
        return localLuState(init);
      },
      close: async () => {
        f.closed++;
      },
    };
    return handle;
  };
  f.deps.openRbdStore = async (...args) => {
    f.rbd.push(args);
    return new MemoryStore(args[2].createSizeBytes ?? 1024 * 1024, args[2].blockSize);
  };
  return f;
}

describe('cluster mode in the daemon (fake engines)', () => {
  let dir: string;
  let ports: number[];
  let daemon: Daemon | undefined;
  let f: Fakes;
  const sessions: TestInitiator[] = [];

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-cluster-'));
    ports = [await freePort(), await freePort()];
    f = fakes();
  });
  afterEach(async () => {
    for (const s of sessions.splice(0)) s.close();
    await daemon?.stop();
    daemon = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function config(node: string) {
    return validateConfig(
      {
        dataDir: dir,
        logLevel: 'silent',
        cluster: {
          name: 'c1',
          nodes: [
            { id: 'a', portal: `127.0.0.1:${ports[0]}` },
            { id: 'b', portal: `127.0.0.1:${ports[1]}` },
          ],
          etcd: { endpoints: ['http://127.0.0.1:1'], leaseTtlSeconds: 3 },
        },
        targets: [
          {
            iqn: IQN,
            luns: [
              { lun: 0, path: path.join(dir, 'shared0.img'), size: '1MiB', naa: '600a0de0000000000000000000000011', serial: 'C0' },
              { lun: 1, path: 'rbd:xcopyd/lun1', size: '2MiB', naa: '600a0de0000000000000000000000012', serial: 'C1' },
            ],
          },
        ],
      },
      'cluster.yaml',
      { node, requireNode: true },
    );
  }

  async function start(node: string): Promise<Daemon> {
    daemon = new Daemon(config(node), pino({ level: 'silent' }), f.deps);
    await daemon.start();
    return daemon;
  }

  async function session(port: number): Promise<TestInitiator> {
    const s = await openSession(port, { targetName: IQN });
    sessions.push(s);
    for (const lun of [0, 1]) await s.command(lun, cdb.testUnitReady()); // POWER ON UA
    return s;
  }

  it('node b: opens etcd with every node, listens on its own portal, gives each LU the cluster LuState, opens rbd: LUNs through openRbdStore', async () => {
    const d = await start('b');
    expect(d.ports).toEqual([ports[1]]);
    expect(f.opened).toEqual([
      expect.objectContaining({ endpoints: ['http://127.0.0.1:1'], cluster: 'c1', nodeId: 'b', nodeIds: ['a', 'b'], leaseTtlSeconds: 3 }),
    ]);
    expect(f.luStates.map((s) => s.naa.toString('hex'))).toEqual(['600a0de0000000000000000000000011', '600a0de0000000000000000000000012']);
    expect(f.rbd.map(([where, ceph, o]) => [where, ceph, o.blockSize, o.createSizeBytes, o.nodeId, o.readOnly])).toEqual([
      [{ pool: 'xcopyd', image: 'lun1' }, { clientId: 'admin' }, 512, 2 * 1024 * 1024, 'b', false],
    ]);
    await d.stop();
    daemon = undefined;
    expect(f.closed).toBe(1);
  });

  it('accepts no login before every LU state has read its state from etcd (luStatesReady)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let asked = 0;
    const open = f.deps.openEtcdCluster!;
    f.deps.openEtcdCluster = async (o) => {
      const h = await open(o);
      return { ...h, luStatesReady: () => ((asked = f.luStates.length), gate) };
    };
    daemon = new Daemon(config('a'), pino({ level: 'silent' }), f.deps);
    let started = false;
    const starting = daemon.start().then(() => (started = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(started).toBe(false);
    expect(daemon.server).toBeNull();
    expect(asked).toBe(2); // asked after both LUs were made
    release();
    await starting;
    expect(daemon.ports).toEqual([ports[0]]);
  });

  it('SendTargets on node b announces both nodes\' portals, each with its portal group tag', async () => {
    await start('b');
    const s = await openSession(ports[1], { sessionType: 'Discovery' });
    sessions.push(s);
    const r = await s.text([['SendTargets', 'All']]);
    expect(r.TargetName).toEqual([IQN]);
    expect(r.TargetAddress).toEqual([`127.0.0.1:${ports[0]},1`, `127.0.0.1:${ports[1]},2`]);
  });

  it('node b: login answers its portal group tag; RTPG shows a ANO and b AO; VPD 83h port 17 group 2', async () => {
    await start('b');
    const s = await openSession(ports[1], { targetName: IQN });
    sessions.push(s);
    expect(s.keys.TargetPortalGroupTag).toBe('2');
    for (const lun of [0, 1]) await s.command(lun, cdb.testUnitReady());
    const r = await s.command(0, rtpgCdb(), { read: 1024 });
    expect(r.status).toBe(0);
    expect(decodeRtpg(r.data, true).map((g) => [g.id, g.state, g.ports])).toEqual([
      [1, AccessState.ACTIVE_NON_OPTIMIZED, [1]],
      [2, AccessState.ACTIVE_OPTIMIZED, [17]],
    ]);
    const v = await s.command(0, cdb.inquiry(255, true, 0x83), { read: 255 });
    expect(portDesignators(v.data)).toEqual({ rtp: 17, tpg: 2 });
  });

  it('node a gone from the membership: 6/2A/06 once on each LU, then RTPG shows group 1 unavailable', async () => {
    await start('b');
    const s = await session(ports[1]);
    f.membership!.set('a', 'gone');
    for (const lun of [0, 1]) {
      const ua = await s.command(lun, cdb.testUnitReady());
      expect(ua.status).toBe(2);
      expect([ua.sense![2] & 0x0f, ua.sense![12], ua.sense![13]]).toEqual([6, 0x2a, 0x06]);
      expect((await s.command(lun, cdb.testUnitReady())).status).toBe(0);
    }
    const r = await s.command(0, rtpgCdb(), { read: 1024 });
    expect(decodeRtpg(r.data, true).map((g) => [g.id, g.state, g.status])).toEqual([
      [1, AccessState.UNAVAILABLE, 2],
      [2, AccessState.ACTIVE_OPTIMIZED, 0],
    ]);
  });

  it('a configuration without cluster opens no etcd, loads no etcd3, and answers as one node', async () => {
    const port = await freePort();
    daemon = new Daemon(
      validateConfig({ listen: [`127.0.0.1:${port}`], dataDir: dir, logLevel: 'silent', targets: [{ iqn: IQN, luns: [{ lun: 0, path: 'l0.img', size: '1MiB' }] }] }),
      pino({ level: 'silent' }),
      f.deps,
    );
    await daemon.start();
    expect(f.opened).toEqual([]);
    expect(etcd3Loaded).toBe(false);
    const s = await openSession(port, { targetName: IQN });
    sessions.push(s);
    await s.command(0, cdb.testUnitReady());
    const r = await s.command(0, rtpgCdb(), { read: 1024 });
    expect(decodeRtpg(r.data, true)).toEqual([{ state: 0, supported: 1, id: 1, status: 0, ports: [1] }]);
    const d = await openSession(port, { sessionType: 'Discovery' });
    sessions.push(d);
    expect((await d.text([['SendTargets', 'All']])).TargetAddress).toEqual([`127.0.0.1:${port},1`]);
  });
});
