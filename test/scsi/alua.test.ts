/**
 * ALUA (SPC-5 5.16, 6.37; reference 4.13): one target port group per
 * cluster node, states from the membership, REPORT TARGET PORT GROUPS, VPD
 * 83h of the port a command came in on, ASYMMETRIC ACCESS STATE CHANGED on
 * every nexus, and what a port in a non-active state refuses.
 */
import {
  AccessState, Alua, AluaStatusCode, SupportedStates, accessStateFor, checkAccessState, relativeTargetPortOf,
  type NodeState, type NodeStates,
} from '../../scsi/alua';
import { ScsiStatus, type ItNexus } from '../../scsi/types';
import { MemoryStore, dataOf, makeDevice, nexus, senseOf, task } from './helpers';
import { decodeRtpg, portDesignators } from '../support/alua';

/** The membership contract (src/cluster/membership.ts), driven by the test. */
class FakeMembership implements NodeStates {
  private readonly map: Map<string, NodeState>;
  private readonly cbs = new Set<() => void>();
  constructor(
    readonly self: string,
    initial: Record<string, NodeState>,
  ) {
    this.map = new Map(Object.entries(initial));
  }
  states(): ReadonlyMap<string, NodeState> {
    return this.map;
  }
  onChange(cb: () => void): () => void {
    this.cbs.add(cb);
    return () => this.cbs.delete(cb);
  }
  set(node: string, s: NodeState): void {
    this.map.set(node, s);
    for (const cb of this.cbs) cb();
  }
}

const NODES = [
  { id: 'a', targetPortGroup: 1 },
  { id: 'b', targetPortGroup: 2 },
  { id: 'c', targetPortGroup: 7 },
];

function portNexus(rtp: number, name = `iqn.2024-01.test:alua-${rtp}-${Math.random().toString(16).slice(2, 8)}`): ItNexus {
  return { ...nexus(name), key: `${name},i,0x000000000001|rtp${rtp}`, relativeTargetPort: rtp };
}

const rtpg = (b1: number, n: ItNexus, alloc = 1024) => task([0xa3, b1, 0, 0, 0, 0, alloc >>> 24, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0], { nexus: n });

describe('ALUA model (scsi/alua.ts)', () => {
  it('relative target ports: node index x 16 + portal group, distinct, node 0 keeps port 1', () => {
    expect([0, 1, 2].map((i) => relativeTargetPortOf(i))).toEqual([1, 17, 33]);
    expect(() => relativeTargetPortOf(4096)).toThrow(RangeError);
  });

  it('states seen from a node: own group AO, other alive nodes AN, gone (or unknown) nodes unavailable', () => {
    expect(accessStateFor('a', 'a', 'alive')).toBe(AccessState.ACTIVE_OPTIMIZED);
    expect(accessStateFor('a', 'b', 'alive')).toBe(AccessState.ACTIVE_NON_OPTIMIZED);
    expect(accessStateFor('a', 'b', 'gone')).toBe(AccessState.UNAVAILABLE);
    expect(accessStateFor('a', 'a', 'gone')).toBe(AccessState.UNAVAILABLE);
    expect(accessStateFor('a', 'b', undefined)).toBe(AccessState.UNAVAILABLE);
    expect([AccessState.ACTIVE_OPTIMIZED, AccessState.ACTIVE_NON_OPTIMIZED, AccessState.STANDBY, AccessState.UNAVAILABLE, AccessState.TRANSITIONING]).toEqual([0x0, 0x1, 0x2, 0x3, 0xf]);
  });

  it('follows the membership: one group per node, implicit status code on change, one notification per change', () => {
    const m = new FakeMembership('b', { a: 'alive', b: 'alive', c: 'gone' });
    const alua = Alua.forCluster(NODES, 'b');
    let heard = 0;
    alua.onChange(() => heard++);
    alua.follow(m);
    expect(alua.groups().map((g) => [g.id, g.node, g.relativeTargetPorts, g.state])).toEqual([
      [1, 'a', [1], AccessState.ACTIVE_NON_OPTIMIZED],
      [2, 'b', [17], AccessState.ACTIVE_OPTIMIZED],
      [7, 'c', [33], AccessState.UNAVAILABLE],
    ]);
    // The membership at follow() is where the device starts: no transition, no status code, nobody told.
    expect(heard).toBe(0);
    expect(alua.groups().map((g) => g.statusCode)).toEqual([AluaStatusCode.NONE, AluaStatusCode.NONE, AluaStatusCode.NONE]);
    m.set('c', 'gone'); // no change
    expect(heard).toBe(0);
    m.set('a', 'gone');
    expect(heard).toBe(1);
    expect(alua.groups().map((g) => g.statusCode)).toEqual([AluaStatusCode.IMPLICIT, AluaStatusCode.NONE, AluaStatusCode.NONE]);
    expect(alua.stateOf(1)).toBe(AccessState.UNAVAILABLE);
    expect(alua.groupOfPort(33).id).toBe(7);
    expect(alua.groupOfPort(999).id).toBe(2); // a port no group names: this node's group
    expect([alua.stateOfPort(1), alua.stateOfPort(17), alua.stateOfPort(999)]).toEqual([AccessState.UNAVAILABLE, AccessState.ACTIVE_OPTIMIZED, AccessState.ACTIVE_OPTIMIZED]);
    expect(alua.relativeTargetPorts()).toEqual([1, 17, 33]);
  });

  it('refuses a node that is not in the cluster and ports in two groups', () => {
    expect(() => Alua.forCluster(NODES, 'z')).toThrow();
    expect(() => new Alua({ groups: [{ id: 1, relativeTargetPorts: [1] }, { id: 2, relativeTargetPorts: [1] }], localGroup: 1, supportedStates: 1 })).toThrow();
  });

  it('admission: active states serve everything; unavailable only INQUIRY, REPORT LUNS, RTPG, RSOC, REQUEST SENSE; standby also PR, MODE SENSE, READ CAPACITY', () => {
    const alua = new Alua({
      groups: [
        { id: 1, relativeTargetPorts: [1], state: AccessState.ACTIVE_NON_OPTIMIZED },
        { id: 2, relativeTargetPorts: [17], state: AccessState.STANDBY },
        { id: 3, relativeTargetPorts: [33], state: AccessState.UNAVAILABLE },
        { id: 4, relativeTargetPorts: [49], state: AccessState.TRANSITIONING },
      ],
      localGroup: 1,
      supportedStates: 0x8f,
    });
    const read = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    const code = (rtp: number, cdb: Buffer) => {
      try {
        checkAccessState(alua, rtp, cdb);
        return 'ok';
      } catch (err) {
        const e = err as { reason: string };
        return e.reason;
      }
    };
    expect(code(1, read)).toBe('ok');
    expect(code(17, read)).toBe('LU_NOT_ACCESSIBLE_STANDBY');
    expect(code(33, read)).toBe('LU_NOT_ACCESSIBLE_UNAVAILABLE');
    expect(code(49, read)).toBe('LU_NOT_ACCESSIBLE_TRANSITIONING');
    for (const ok of [[0x12], [0xa0], [0x03], [0xa3, 0x0a], [0xa3, 0x0c]]) expect(code(33, Buffer.from([...ok, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toBe('ok');
    for (const ok of [[0x5e], [0x5f], [0x1a], [0x25], [0x9e, 0x10]]) {
      const cdb = Buffer.from([...ok, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      expect(code(17, cdb)).toBe('ok');
      expect(code(33, cdb)).toBe('LU_NOT_ACCESSIBLE_UNAVAILABLE');
    }
    expect(code(33, Buffer.from([0x00, 0, 0, 0, 0, 0]))).toBe('LU_NOT_ACCESSIBLE_UNAVAILABLE'); // TEST UNIT READY
  });
});

describe('ALUA in the SCSI device: a three-node cluster seen from node b', () => {
  function cluster(self = 'b', states: Record<string, NodeState> = { a: 'alive', b: 'alive', c: 'gone' }) {
    const m = new FakeMembership(self, states);
    const alua = Alua.forCluster(NODES, self, 5);
    alua.follow(m);
    const device = makeDevice([new MemoryStore(64 * 512), new MemoryStore(64 * 512)], { alua });
    return { m, alua, device };
  }
  /** A nexus that has seen its POWER ON UA on every LU. */
  async function attached(device: ReturnType<typeof cluster>['device'], rtp: number): Promise<ItNexus> {
    const n = portNexus(rtp);
    device.attachNexus(n);
    for (const lun of [0, 1]) await device.execute(task([0x00, 0, 0, 0, 0, 0], { nexus: n, lun }));
    return n;
  }

  it('REPORT TARGET PORT GROUPS lists every group with its ports, state, AO/AN/U supported, implicit transition time', async () => {
    const { device } = cluster();
    const n = portNexus(17);
    const r = await device.execute(rtpg(0x2a, n));
    expect(r.status).toBe(ScsiStatus.GOOD);
    const d = dataOf(r);
    expect(d[4]).toBe(0x10); // FORMAT TYPE 001b
    expect(d[5]).toBe(5); // IMPLICIT TRANSITION TIME
    const supported = SupportedStates.AO_SUP | SupportedStates.AN_SUP | SupportedStates.U_SUP;
    expect(decodeRtpg(d, true)).toEqual([
      { state: AccessState.ACTIVE_NON_OPTIMIZED, supported, id: 1, status: AluaStatusCode.NONE, ports: [1] },
      { state: AccessState.ACTIVE_OPTIMIZED, supported, id: 2, status: AluaStatusCode.NONE, ports: [17] },
      { state: AccessState.UNAVAILABLE, supported, id: 7, status: AluaStatusCode.NONE, ports: [33] },
    ]);
    expect(decodeRtpg(dataOf(await device.execute(rtpg(0x0a, n))), false).map((g) => g.id)).toEqual([1, 2, 7]);
  });

  it('VPD 83h gives the relative target port and target port group of the port the command came in on', async () => {
    const { device } = cluster();
    for (const [rtp, tpg] of [[17, 2], [1, 1], [33, 7]]) {
      const r = await device.execute(task([0x12, 1, 0x83, 1, 0, 0], { nexus: portNexus(rtp) }));
      expect(portDesignators(dataOf(r))).toEqual({ rtp, tpg });
    }
  });

  it('INQUIRY: TPGS=01b (implicit ALUA)', async () => {
    const { device } = cluster();
    expect(dataOf(await device.execute(task([0x12, 0, 0, 0, 36, 0], { nexus: portNexus(17) })))[5] & 0x30).toBe(0x10);
  });

  it('a state change raises ASYMMETRIC ACCESS STATE CHANGED (6/2A/06) once on every nexus and LU of this node', async () => {
    const { m, device } = cluster();
    const n1 = await attached(device, 17);
    const n2 = await attached(device, 17);
    const tur = (n: ItNexus, lun: number) => device.execute(task([0x00, 0, 0, 0, 0, 0], { nexus: n, lun }));
    expect((await tur(n1, 0)).status).toBe(ScsiStatus.GOOD);
    m.set('c', 'alive');
    for (const n of [n1, n2]) {
      for (const lun of [0, 1]) {
        const r = await tur(n, lun);
        expect(r.status).toBe(ScsiStatus.CHECK_CONDITION);
        expect([senseOf(r).key, senseOf(r).asc, senseOf(r).ascq]).toEqual([0x6, 0x2a, 0x06]);
        expect((await tur(n, lun)).status).toBe(ScsiStatus.GOOD); // once
      }
    }
    m.set('c', 'alive'); // nothing changed: no UA
    expect((await tur(n1, 0)).status).toBe(ScsiStatus.GOOD);
    const groups = decodeRtpg(dataOf(await device.execute(rtpg(0x0a, n1))), false);
    expect(groups.find((g) => g.id === 7)).toMatchObject({ state: AccessState.ACTIVE_NON_OPTIMIZED, status: AluaStatusCode.IMPLICIT });
  });

  it('a device that is closed no longer hears the membership', async () => {
    const { m, device } = cluster();
    await attached(device, 17);
    const raise = jest.spyOn(device.logicalUnit(0)!.state, 'raiseUa');
    m.set('c', 'alive');
    expect(raise).toHaveBeenCalledTimes(1);
    await device.close();
    m.set('c', 'gone');
    expect(raise).toHaveBeenCalledTimes(1);
  });

  it('a node that has lost its own lease answers I/O on its port with 2/04/0C and still answers INQUIRY and RTPG', async () => {
    const { m, device } = cluster();
    const n = await attached(device, 17);
    m.set('b', 'gone');
    const read = () => device.execute(task([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { nexus: n }));
    const ua = await read();
    expect([senseOf(ua).key, senseOf(ua).asc, senseOf(ua).ascq]).toEqual([0x6, 0x2a, 0x06]); // the UA first
    const r = await read();
    expect(r.status).toBe(ScsiStatus.CHECK_CONDITION);
    expect([senseOf(r).key, senseOf(r).asc, senseOf(r).ascq]).toEqual([0x2, 0x04, 0x0c]);
    expect((await device.execute(task([0x12, 0, 0, 0, 36, 0], { nexus: n }))).status).toBe(ScsiStatus.GOOD);
    const groups = decodeRtpg(dataOf(await device.execute(rtpg(0x0a, n))), false);
    expect(groups.find((g) => g.id === 2)?.state).toBe(AccessState.UNAVAILABLE);
    m.set('b', 'alive');
    await read(); // UA
    expect((await read()).status).toBe(ScsiStatus.GOOD);
  });
});

describe('ALUA on a single node (no cluster): today\'s answers', () => {
  it('one group 1, AO, AO_SUP only, status none, port 1; VPD 83h port 1 group 1', async () => {
    const device = makeDevice();
    const n = portNexus(1);
    const groups = decodeRtpg(dataOf(await device.execute(rtpg(0x0a, n))), false);
    expect(groups).toEqual([{ state: AccessState.ACTIVE_OPTIMIZED, supported: SupportedStates.AO_SUP, id: 1, status: 0, ports: [1] }]);
    expect(portDesignators(dataOf(await device.execute(task([0x12, 1, 0x83, 1, 0, 0], { nexus: n }))))).toEqual({ rtp: 1, tpg: 1 });
    expect(device.relativeTargetPorts).toEqual([1]);
  });
});
