/**
 * Asymmetric logical unit access (SPC-5 5.16; reference 4.13): the target
 * port groups of a device and the access state of each as this node reports
 * it. One node without a cluster has one group, active/optimized, as always.
 * In a cluster (issue 15) every node is one group; this node reports its own
 * group active/optimized, every other alive node active/non-optimized and a
 * node gone from the membership unavailable (implicit ALUA: the states follow
 * the membership, SET TARGET PORT GROUPS is not supported).
 *
 * The SCSI core reads this in three places: REPORT TARGET PORT GROUPS (every
 * group, its ports and state), VPD 83h (the relative target port and target
 * port group designators of the port a command came in on) and admission
 * (`checkAccessState`: a port in standby, unavailable or transitioning
 * refuses what SPC-5 does not allow there). A change raises ASYMMETRIC ACCESS
 * STATE CHANGED on every nexus (ScsiDevice subscribes with onChange).
 */
import { Opcode } from './opcodes';
import { SenseError } from './sense';

/** ASYMMETRIC ACCESS STATE (SPC-5 6.37, table "Asymmetric access state"). */
export const AccessState = {
  ACTIVE_OPTIMIZED: 0x0,
  ACTIVE_NON_OPTIMIZED: 0x1,
  STANDBY: 0x2,
  UNAVAILABLE: 0x3,
  TRANSITIONING: 0xf,
} as const;
export type AccessStateCode = (typeof AccessState)[keyof typeof AccessState];

/** Byte 1 of a target port group descriptor: which states the group may be in. */
export const SupportedStates = {
  T_SUP: 0x80,
  O_SUP: 0x40,
  LBD_SUP: 0x10,
  U_SUP: 0x08,
  S_SUP: 0x04,
  AN_SUP: 0x02,
  AO_SUP: 0x01,
} as const;

/** STATUS CODE of a target port group descriptor: why its state last changed. */
export const AluaStatusCode = { NONE: 0x0, SET_TPG: 0x1, IMPLICIT: 0x2 } as const;

/** A node's state as the cluster membership sees it (src/cluster/membership.ts NodeState). */
export type NodeState = 'alive' | 'gone';

/** What ALUA needs of the cluster membership (src/cluster/membership.ts ClusterMembership). */
export interface NodeStates {
  readonly self: string;
  states(): ReadonlyMap<string, NodeState>;
  onChange(cb: () => void): () => void;
}

/** One target port group as RTPG reports it. */
export interface TargetPortGroup {
  readonly id: number;
  readonly relativeTargetPorts: readonly number[];
  /** The cluster node that owns the group's ports, if any. */
  readonly node?: string;
  readonly state: AccessStateCode;
  readonly statusCode: number;
}

/**
 * Relative target port of a node's portal group: node index x 16 + portal
 * group (1 for one portal per node), so ports are distinct across nodes and
 * node 0 keeps the single node's port 1. 0 is reserved (SPC-5 7.8.6.5).
 */
export function relativeTargetPortOf(nodeIndex: number, portalGroup = 1): number {
  if (!Number.isInteger(nodeIndex) || nodeIndex < 0 || portalGroup < 1 || portalGroup > 15) throw new RangeError('relative target port out of range');
  const rtp = nodeIndex * 16 + portalGroup;
  if (rtp > 0xffff) throw new RangeError('relative target port out of range');
  return rtp;
}

/** The state node `node` (in `state`) has as seen from node `self`. */
export function accessStateFor(self: string, node: string, state: NodeState | undefined): AccessStateCode {
  if (state !== 'alive') return AccessState.UNAVAILABLE;
  return node === self ? AccessState.ACTIVE_OPTIMIZED : AccessState.ACTIVE_NON_OPTIMIZED;
}

interface Group {
  id: number;
  relativeTargetPorts: number[];
  node?: string;
  state: AccessStateCode;
  statusCode: number;
}

export interface AluaOptions {
  groups: Array<{ id: number; relativeTargetPorts: number[]; node?: string; state?: AccessStateCode }>;
  /** The group of this node's ports. */
  localGroup: number;
  /** Byte 1 of every descriptor (SupportedStates bits). */
  supportedStates: number;
  /** IMPLICIT TRANSITION TIME of the extended header (seconds). */
  implicitTransitionSeconds?: number;
}

export class Alua {
  readonly supportedStates: number;
  readonly implicitTransitionSeconds: number;
  readonly localGroupId: number;
  private readonly byId = new Map<number, Group>();
  private readonly byPort = new Map<number, Group>();
  private readonly listeners = new Set<() => void>();

  constructor(o: AluaOptions) {
    this.supportedStates = o.supportedStates;
    this.implicitTransitionSeconds = o.implicitTransitionSeconds ?? 0;
    for (const g of o.groups) {
      if (this.byId.has(g.id)) throw new Error(`target port group ${g.id} twice`);
      const group: Group = { id: g.id, relativeTargetPorts: [...g.relativeTargetPorts].sort((a, b) => a - b), node: g.node, state: g.state ?? AccessState.ACTIVE_OPTIMIZED, statusCode: AluaStatusCode.NONE };
      for (const p of group.relativeTargetPorts) {
        if (p < 1 || p > 0xffff || this.byPort.has(p)) throw new Error(`relative target port ${p} invalid or in two groups`);
        this.byPort.set(p, group);
      }
      this.byId.set(g.id, group);
    }
    if (!this.byId.has(o.localGroup)) throw new Error(`local target port group ${o.localGroup} is not among the groups`);
    this.localGroupId = o.localGroup;
  }

  /** One node: one group, active/optimized, the only state it supports (what xcopyd always reported). */
  static single(groupId = 1, relativeTargetPorts: number[] = [1]): Alua {
    return new Alua({ groups: [{ id: groupId, relativeTargetPorts }], localGroup: groupId, supportedStates: SupportedStates.AO_SUP });
  }

  /**
   * One group per cluster node, ports relativeTargetPortOf(index). Until the
   * membership is followed, this node is active/optimized and the others
   * unavailable (nothing says they are alive yet).
   */
  static forCluster(nodes: ReadonlyArray<{ id: string; targetPortGroup: number }>, self: string, implicitTransitionSeconds = 0): Alua {
    const me = nodes.find((n) => n.id === self);
    if (!me) throw new Error(`node ${self} is not in the cluster`);
    return new Alua({
      groups: nodes.map((n, i) => ({
        id: n.targetPortGroup,
        relativeTargetPorts: [relativeTargetPortOf(i)],
        node: n.id,
        state: accessStateFor(self, n.id, n.id === self ? 'alive' : undefined),
      })),
      localGroup: me.targetPortGroup,
      supportedStates: SupportedStates.AO_SUP | SupportedStates.AN_SUP | SupportedStates.U_SUP,
      implicitTransitionSeconds,
    });
  }

  /** Every group, by id. */
  groups(): TargetPortGroup[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id).map((g) => ({ ...g, relativeTargetPorts: [...g.relativeTargetPorts] }));
  }

  /** Every relative target port of every group. */
  relativeTargetPorts(): number[] {
    return [...this.byPort.keys()].sort((a, b) => a - b);
  }

  /** The group a command arriving on relative target port `rtp` is in (this node's group for a port no group names). */
  groupOfPort(rtp: number): TargetPortGroup {
    const g = this.byPort.get(rtp) ?? this.byId.get(this.localGroupId)!;
    return { ...g, relativeTargetPorts: [...g.relativeTargetPorts] };
  }

  /** The state of the group of relative target port `rtp` (this node's for a port no group names); no allocation: every command asks. */
  stateOfPort(rtp: number): AccessStateCode {
    return (this.byPort.get(rtp) ?? this.byId.get(this.localGroupId)!).state;
  }

  stateOf(groupId: number): AccessStateCode | undefined {
    return this.byId.get(groupId)?.state;
  }

  /**
   * Implicit transitions: each group in `states` takes its new state; a group
   * that changed gets STATUS CODE 02h. Listeners hear of it once per call
   * that changed anything. Returns whether anything changed.
   */
  setStates(states: ReadonlyMap<number, AccessStateCode>): boolean {
    return this.apply(states, true);
  }

  /** `transition` false: the states the device starts with (no status code, nobody told). */
  private apply(states: ReadonlyMap<number, AccessStateCode>, transition: boolean): boolean {
    let changed = false;
    for (const [id, state] of states) {
      const g = this.byId.get(id);
      if (!g || g.state === state) continue;
      g.state = state;
      if (transition) g.statusCode = AluaStatusCode.IMPLICIT;
      changed = true;
    }
    if (changed && transition) for (const cb of [...this.listeners]) cb();
    return changed;
  }

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /**
   * Take every node group's state from the membership: now, as the states
   * the device starts with, then at each of its changes as implicit
   * transitions (accessStateFor). Returns the unsubscribe.
   */
  follow(membership: NodeStates): () => void {
    const next = (): Map<number, AccessStateCode> => {
      const nodes = membership.states();
      const out = new Map<number, AccessStateCode>();
      for (const g of this.byId.values()) {
        if (g.node !== undefined) out.set(g.id, accessStateFor(membership.self, g.node, nodes.get(g.node)));
      }
      return out;
    };
    this.apply(next(), false);
    return membership.onChange(() => this.apply(next(), true));
  }
}

// ---- admission -----------------------------------------------------------------------------

const SA_REPORT_TARGET_PORT_GROUPS = 0x0a;
const SA_REPORT_SUPPORTED_OPERATION_CODES = 0x0c;
const SA_REPORT_SUPPORTED_TMFS = 0x0d;
const SA_SET_TARGET_PORT_GROUPS = 0x0a;
const SA_READ_CAPACITY_16 = 0x10;
const OP_MAINTENANCE_IN = 0xa3;
const OP_MAINTENANCE_OUT = 0xa4;
const OP_SERVICE_ACTION_IN_16 = 0x9e;
const OP_READ_BUFFER = 0x3c;
const OP_WRITE_BUFFER = 0x3b;

/** Commands every state serves (SPC-5 5.16.2.4.5 unavailable, 5.16.2.5 transitioning). */
function allowedEverywhere(cdb: Buffer): boolean {
  switch (cdb[0]) {
    case Opcode.INQUIRY:
    case Opcode.REPORT_LUNS:
    case Opcode.REQUEST_SENSE:
    case OP_READ_BUFFER:
    case OP_WRITE_BUFFER:
      return true;
    case OP_MAINTENANCE_IN: {
      const sa = cdb[1] & 0x1f;
      return sa === SA_REPORT_TARGET_PORT_GROUPS || sa === SA_REPORT_SUPPORTED_OPERATION_CODES || sa === SA_REPORT_SUPPORTED_TMFS;
    }
    case OP_MAINTENANCE_OUT:
      return (cdb[1] & 0x1f) === SA_SET_TARGET_PORT_GROUPS;
    default:
      return false;
  }
}

/** What standby serves besides (SPC-5 5.16.2.4.4): mode and log pages, diagnostics, capacity, reservations. */
function allowedInStandby(cdb: Buffer): boolean {
  switch (cdb[0]) {
    case Opcode.MODE_SENSE_6:
    case Opcode.MODE_SENSE_10:
    case Opcode.MODE_SELECT_6:
    case Opcode.MODE_SELECT_10:
    case 0x4c: // LOG SELECT
    case 0x4d: // LOG SENSE
    case 0x1c: // RECEIVE DIAGNOSTIC RESULTS
    case 0x1d: // SEND DIAGNOSTIC
    case Opcode.READ_CAPACITY_10:
    case Opcode.PERSISTENT_RESERVE_IN:
    case Opcode.PERSISTENT_RESERVE_OUT:
      return true;
    case OP_SERVICE_ACTION_IN_16:
      return (cdb[1] & 0x1f) === SA_READ_CAPACITY_16;
    default:
      return false;
  }
}

/**
 * A command to a logical unit arriving on relative target port `rtp`: in
 * standby, unavailable or transitioning, what SPC-5 does not allow there is
 * NOT READY, LOGICAL UNIT NOT ACCESSIBLE (04/0B, 04/0C, 04/0A; reference 4.13).
 * Active states serve everything.
 */
export function checkAccessState(alua: Alua, rtp: number, cdb: Buffer): void {
  const state = alua.stateOfPort(rtp);
  if (state === AccessState.ACTIVE_OPTIMIZED || state === AccessState.ACTIVE_NON_OPTIMIZED) return;
  if (allowedEverywhere(cdb)) return;
  if (state === AccessState.STANDBY) {
    if (allowedInStandby(cdb)) return;
    throw new SenseError('LU_NOT_ACCESSIBLE_STANDBY');
  }
  if (state === AccessState.TRANSITIONING) throw new SenseError('LU_NOT_ACCESSIBLE_TRANSITIONING');
  throw new SenseError('LU_NOT_ACCESSIBLE_UNAVAILABLE');
}
