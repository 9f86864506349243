/**
 * Composition: configuration -> backing stores -> SCSI devices (one per
 * target) -> iSCSI server. The only place that knows all three layers.
 *
 * Cluster mode (issue 15, a `cluster:` section): the node opens the etcd
 * cluster (membership, shared LU state), follows the membership in the
 * target port groups (scsi/alua.ts, one per node), hands each LU the etcd
 * LuState, opens `rbd:` LUNs as RBD images, listens on its own portal and
 * announces every node's portal in SendTargets. etcd and librbd are loaded
 * only then: a configuration without `cluster` loads neither.
 *
 * Also the daemon's run-time surfaces (issue 6): access control from the
 * ACLs (src/access.ts) handed to the transport, the devices and the copy
 * scope; configuration reload (SIGHUP) that changes LUNs and ACLs without
 * dropping unaffected sessions; the control socket (`xcopyd status`) and the
 * Prometheus endpoint.
 */
import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import type { ClusterConfig, Config, LunConfig, TargetConfig } from './config';
import { lunPath, rbdLocation } from './config';
import { IdentityStore, fsyncDirectory } from './identity';
import { FileStore } from './backing/file-store';
import { IscsiServer } from '../iscsi/server';
import type { TargetEntry } from '../iscsi/types';
import { ScsiDevice } from '../scsi/scsi-device';
import type { LogicalUnitOptions } from '../scsi/logical-unit';
import type { BackingStore, CopyRangeResult } from '../scsi/backing-store';
import type { LuStateFactory } from '../scsi/state/lu-state';
import { Alua, relativeTargetPortOf } from '../scsi/alua';
import type { ClusterMembership } from './cluster/membership';
import { buildCopyScope, type ScopedTarget } from './copy-scope';
import type { CopyScope } from '../scsi/copy/cscd';
import { eui64FromNaa } from './identity';
import { RodTokenStore } from '../scsi/copy/token-store';
import { loadTokenSecret } from './token-secret';
import { fileSideFiles, rodSideFileDir } from './rod-side-files';
import { AccessHolder, TargetAccess } from './access';
import { Metrics, instrumentDevice, loginFailureReason } from './metrics';
import { ControlServer } from './control';
import { buildStatus, type StatusReport } from './status';
import { createRootLogger, type LogFormat } from './log';

/** The root logger: JSON to stdout (or `destination`), or pretty; secrets redacted (src/log.ts). */
export function createLogger(level: string, destination?: pino.DestinationStream, format: LogFormat = 'json'): Logger {
  return createRootLogger(level, { destination, format });
}

/** Top-level keys a reload reports and leaves as they were: they take effect at the next start. */
const RESTART_KEYS = ['listen', 'dataDir', 'limits', 'discoveryChap', 'controlSocket', 'odx', 'cluster'] as const;

/** A LUN's open store: a FileStore, or an RBD image (cluster mode), which may lack resize and copy counting. */
type LunStore = BackingStore & {
  onCopied?: ((r: CopyRangeResult) => void) | undefined;
  resize?(bytes: number): Promise<number>;
};

/** A LUN as running: its configuration and its open store. */
interface LiveLun {
  config: LunConfig;
  store: LunStore;
}

/** What cluster mode uses of src/cluster/etcd-cluster.ts (issue 15 plan's contract). */
export interface ClusterHandle {
  readonly membership: ClusterMembership;
  readonly luStateFactory: LuStateFactory;
  /** Resolves once every LU state made so far has read its state from etcd (until then each fails closed). */
  luStatesReady?(ms?: number): Promise<void>;
  close(): Promise<void>;
}

/** The cluster engines, loaded only in cluster mode (tests hand in fakes). */
export interface ClusterDeps {
  openEtcdCluster(o: {
    endpoints: string[]; cluster: string; nodeId: string; nodeIds: string[]; leaseTtlSeconds: number; log: Logger;
  }): Promise<ClusterHandle>;
  openRbdStore(
    where: { pool: string; image: string },
    ceph: { conf?: string; clientId: string; keyring?: string; monHost?: string },
    o: { blockSize: number; physicalBlockSize?: number; readOnly: boolean; createSizeBytes?: number; nodeId: string; log: Logger },
  ): Promise<LunStore>;
}

/**
 * The real engines, required at first use: etcd3 and koffi's librbd binding load
 * only for a cluster (a dynamic import inside the call, never a static one).
 */
const realClusterDeps: ClusterDeps = {
  async openEtcdCluster(o) {
    const m = await import('./cluster/etcd-cluster');
    return m.openEtcdCluster(o);
  },
  async openRbdStore(where, ceph, o) {
    const file = './backing/rbd-store';
    const m = (await import(file)) as Pick<ClusterDeps, 'openRbdStore'>;
    return m.openRbdStore(where, ceph, o);
  },
};

/** This node in a running cluster. */
interface LiveCluster {
  config: ClusterConfig;
  self: { id: string; portal: string; targetPortGroup: number; relativeTargetPort: number };
  handle: ClusterHandle;
  alua: Alua;
  stopFollowing: () => void;
}

/** A target as running. */
export interface LiveTarget {
  config: TargetConfig;
  access: AccessHolder;
  device: ScsiDevice;
  entry: TargetEntry;
  scoped: ScopedTarget;
  luns: Map<number, LiveLun>;
}

/** What a reload changed (logged, returned to tests). */
export interface ReloadSummary {
  targetsAdded: string[];
  targetsRemoved: string[];
  lunsAdded: string[];
  lunsRemoved: string[];
  lunsResized: string[];
  lunsReplaced: string[];
  aclsChanged: string[];
  sessionsDropped: number;
  needsRestart: string[];
}

/** Fields of a LUN whose change means a new logical unit (anything but size). */
function lunShape(l: LunConfig): string {
  const { size: _size, ...rest } = l;
  return JSON.stringify(rest);
}

export class Daemon {
  readonly log: Logger;
  server: IscsiServer | null = null;
  /** ROD tokens of the whole daemon: a token works on any LU its user may reach. */
  rodTokens: RodTokenStore | null = null;
  /** Ports actually bound, in the order of config.listen. */
  readonly ports: number[] = [];
  metrics: Metrics | null = null;
  control: ControlServer | null = null;
  readonly startedAt = Date.now();
  /** Live targets by lower-cased IQN, in configuration order. */
  private readonly live = new Map<string, LiveTarget>();
  /** The copy scope reads this array at every resolution; reload edits it in place. */
  private readonly scoped: ScopedTarget[] = [];
  private readonly copyScope: CopyScope;
  private identities: IdentityStore | null = null;
  /** One reload at a time; a SIGHUP during one waits for it. */
  private reloading: Promise<unknown> = Promise.resolve();
  /** Cluster mode: this node, its etcd cluster and the target port groups. */
  cluster: LiveCluster | null = null;
  private readonly clusterDeps: ClusterDeps;

  constructor(
    public config: Readonly<Config>,
    log?: Logger,
    clusterDeps: Partial<ClusterDeps> = {},
  ) {
    this.clusterDeps = { ...realClusterDeps, ...clusterDeps };
    this.log = log ?? createLogger(config.logLevel);
    this.copyScope = buildCopyScope(this.scoped, { log: this.log.child({ component: 'copy-scope' }) });
  }

  async start(): Promise<void> {
    const cfg = this.config;
    fs.mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
    this.identities = new IdentityStore(cfg.dataDir);
    // ODX tokens are sealed with a secret kept in the data directory (0600, made on first run).
    this.rodTokens = new RodTokenStore({
      logger: this.log.child({ component: 'rod-tokens' }),
      secret: loadTokenSecret(cfg.dataDir),
      sideFiles: fileSideFiles(rodSideFileDir(cfg.dataDir)),
      maxLiveTokens: cfg.odx.maxLiveTokens,
      maxSideFileBytes: cfg.odx.maxSideFileBytes,
      optimalTransferBytes: cfg.odx.optimalTransferBytes,
      wutDeadlineMs: cfg.odx.wutDeadlineMs,
    });
    if (cfg.metrics) await this.startMetrics(cfg.metrics.listen);
    if (cfg.cluster) await this.joinCluster(cfg.cluster);
    const entries: TargetEntry[] = [];
    for (const t of cfg.targets) entries.push((await this.buildTarget(t)).entry);
    // Cluster: no login before every LU has read its reservations from etcd (fails closed until then).
    if (this.cluster?.handle.luStatesReady) await this.cluster.handle.luStatesReady();
    this.server = new IscsiServer({
      log: this.log,
      targets: entries,
      limits: cfg.limits,
      discoveryChap: cfg.discoveryChap,
      onLoginFailure: (c, d) => this.metrics?.loginFailures.inc({ reason: loginFailureReason(c, d) }),
    });
    for (const hp of cfg.listen) this.ports.push(await this.server.listen(hp));
    this.control = new ControlServer(cfg.controlSocket, this.log.child({ component: 'control' }), {
      status: () => this.status(),
    });
    await this.control.listen();
  }

  // ---- composition ------------------------------------------------------------------

  /** Cluster mode: open etcd (this node's lease, shared LU state), and the target port groups follow the membership. */
  private async joinCluster(c: ClusterConfig): Promise<void> {
    if (c.self === undefined) throw new Error('cluster mode needs this node named (--node ID or XCOPYD_NODE)');
    const index = c.nodes.findIndex((n) => n.id === c.self);
    const node = c.nodes[index];
    const log = this.log.child({ component: 'cluster', node: node.id });
    const handle = await this.clusterDeps.openEtcdCluster({
      endpoints: [...c.etcd.endpoints],
      cluster: c.name,
      nodeId: node.id,
      nodeIds: c.nodes.map((n) => n.id),
      leaseTtlSeconds: c.etcd.leaseTtlSeconds,
      log,
    });
    // A node is declared gone a lease TTL after its last keepalive: the IMPLICIT TRANSITION TIME initiators may wait.
    const alua = Alua.forCluster(c.nodes, node.id, c.etcd.leaseTtlSeconds);
    const stopFollowing = alua.follow(handle.membership);
    alua.onChange(() => log.info({ groups: alua.groups().map((g) => ({ group: g.id, node: g.node, state: g.state })) }, 'target port group states changed'));
    this.cluster = {
      config: c,
      self: { ...node, relativeTargetPort: relativeTargetPortOf(index) },
      handle,
      alua,
      stopFollowing,
    };
    log.info({ groups: alua.groups().map((g) => ({ group: g.id, node: g.node, state: g.state })) }, 'joined the cluster');
  }

  private async openStore(l: LunConfig): Promise<{ store: LunStore; where: string }> {
    const rbd = rbdLocation(l.path);
    if (rbd) {
      const c = this.cluster;
      if (!c) throw new Error(`${l.path}: an rbd: LUN needs cluster mode`);
      const store = await this.clusterDeps.openRbdStore(rbd, c.config.ceph ?? { clientId: 'admin' }, {
        blockSize: l.blockSize,
        physicalBlockSize: l.physicalBlockSize,
        readOnly: l.readOnly,
        createSizeBytes: l.size,
        nodeId: c.self.id,
        log: this.log.child({ component: 'rbd', image: l.path }),
      });
      return { store, where: l.path };
    }
    const file = lunPath(this.config.dataDir, l.path);
    const creating = !l.readOnly && !fs.existsSync(file);
    const store = await FileStore.open({
      path: file,
      sizeBytes: l.size,
      blockSize: l.blockSize,
      physicalBlockSize: l.physicalBlockSize ?? l.blockSize,
      readOnly: l.readOnly,
    });
    // A LUN file made now keeps its name through a power cut (FUA and WCE=0 writes fsync only the file).
    if (creating) fsyncDirectory(path.dirname(file));
    return { store, where: file };
  }

  private async openLun(t: TargetConfig, l: LunConfig): Promise<{ live: LiveLun; options: LogicalUnitOptions }> {
    const cfg = this.config;
    const { store, where } = await this.openStore(l);
    if (this.metrics) store.onCopied = (r) => this.metrics?.copied(r);
    const id = this.identities!.resolve(t.iqn, l.lun, { serial: l.serial, naa: l.naa });
    const naa = Buffer.from(id.naa, 'hex');
    const options: LogicalUnitOptions = {
      lun: l.lun,
      store,
      identity: { vendor: l.vendor, product: l.product, revision: l.revision, serial: id.serial, naa, eui64: eui64FromNaa(naa) },
      writeCacheEnabled: l.writeCache,
      // APTPL reservations and saved mode pages survive restarts here.
      persistPath: path.join(cfg.dataDir, `pr-${t.iqn}-${l.lun}.json`),
    };
    // Cluster mode: reservations and unit attentions shared through etcd, keyed by the LU's NAA.
    if (this.cluster) options.state = this.cluster.handle.luStateFactory;
    this.log.info({ target: t.iqn, lun: l.lun, path: where, bytes: store.sizeBytes, readOnly: l.readOnly }, 'LUN ready');
    return { live: { config: l, store }, options };
  }

  private async buildTarget(t: TargetConfig): Promise<LiveTarget> {
    const luns = new Map<number, LiveLun>();
    const units: LogicalUnitOptions[] = [];
    try {
      for (const l of t.luns) {
        const { live, options } = await this.openLun(t, l);
        luns.set(l.lun, live);
        units.push(options);
      }
    } catch (err) {
      for (const l of luns.values()) await l.store.close().catch(() => undefined);
      throw err;
    }
    const access = new AccessHolder(TargetAccess.fromConfig(t));
    const c = this.cluster;
    const device = new ScsiDevice({
      logger: this.log.child({ target: t.iqn }),
      luns: units,
      targetPortGroup: 1,
      alua: c?.alua, // cluster: every node's group, shared by every target of the node
      copyScope: this.copyScope,
      rodTokens: this.rodTokens!,
      lunMap: (nexus) => access.current.lunMapFor(nexus),
      onCopyFinished: (op) => this.metrics?.copyFinished(op),
    });
    const entry: TargetEntry = {
      name: t.iqn,
      alias: t.alias,
      // Cluster: this node's portal group is its target port group; SendTargets names every node's portal.
      portalGroupTag: c ? c.self.targetPortGroup : t.portalGroupTag,
      portals: [...(t.portals ?? this.config.listen)],
      ...(c && {
        relativeTargetPort: c.self.relativeTargetPort,
        announce: c.config.nodes.map((n) => ({ portal: n.portal, tag: n.targetPortGroup })),
      }),
      device: this.metrics ? instrumentDevice(device, () => this.metrics) : device,
      chap: t.chap,
      acl: {
        mayLogin: (initiator) => access.current.mayLogin(initiator),
        chapFor: (initiator) => access.current.chapFor(initiator),
      },
    };
    const key = t.iqn.toLowerCase();
    const scoped: ScopedTarget = {
      iqn: t.iqn,
      device,
      access: () => access.current,
      // Read at every resolution: a reload's copyScope applies at once.
      mode: () => this.live.get(key)?.config.copyScope ?? this.config.copyScope,
      loggedIn: (initiator) => this.hasSession(t.iqn, initiator),
    };
    const target: LiveTarget = { config: t, access, device, entry, scoped, luns };
    this.live.set(key, target);
    this.scoped.push(scoped);
    return target;
  }

  /** Live targets (status, tests). */
  targets(): LiveTarget[] {
    return [...this.live.values()];
  }

  // ---- reload -------------------------------------------------------------------------

  /**
   * Apply a new, already validated configuration (SIGHUP). LUNs and ACLs are
   * added and removed in place; sessions survive unless their target went
   * away or their initiator is no longer admitted. A resized LUN raises
   * CAPACITY DATA HAS CHANGED and cancels its ROD tokens; a LUN whose other
   * settings changed is replaced (its sessions see POWER ON/RESET and
   * REPORTED LUNS DATA HAS CHANGED). Listen addresses, the data directory,
   * limits, odx and discovery CHAP need a restart (reported, kept as they were).
   */
  reload(next: Readonly<Config>): Promise<ReloadSummary> {
    const run = this.reloading.then(() => this.applyReload(next));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async applyReload(next: Readonly<Config>): Promise<ReloadSummary> {
    const old = this.config;
    const server = this.server!;
    // Refused before anything changes: a LUN kept as it is but smaller (its data past the new end would vanish).
    next.targets.forEach((t, i) => {
      const lt = this.live.get(t.iqn.toLowerCase());
      t.luns.forEach((l, j) => {
        const have = lt?.luns.get(l.lun);
        if (have && l.size !== undefined && lunShape(l) === lunShape(have.config) && l.size < have.store.sizeBytes) {
          throw new Error(`targets.${i}.luns.${j}.size: shrinking a LUN (${have.store.sizeBytes} -> ${l.size} bytes) is refused`);
        }
      });
    });
    const s: ReloadSummary = {
      targetsAdded: [], targetsRemoved: [], lunsAdded: [], lunsRemoved: [], lunsResized: [], lunsReplaced: [],
      aclsChanged: [], sessionsDropped: 0, needsRestart: [],
    };
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    // Keys that need a restart keep their running values; everything else is the new file.
    const applied: Config = { ...next };
    for (const key of RESTART_KEYS) {
      if (!same(old[key], next[key])) s.needsRestart.push(key);
      Object.assign(applied, { [key]: old[key] });
    }
    this.config = applied;
    if (next.logLevel !== old.logLevel) this.log.level = next.logLevel;
    if (!same(old.metrics, next.metrics)) {
      await this.stopMetrics();
      if (next.metrics) await this.startMetrics(next.metrics.listen);
    }

    const wanted = new Map(applied.targets.map((t) => [t.iqn.toLowerCase(), t]));
    for (const [key, lt] of [...this.live]) {
      if (wanted.has(key)) continue;
      s.sessionsDropped += this.dropSessions((x) => x.target?.name === lt.entry.name, 'target removed');
      this.live.delete(key);
      this.scoped.splice(this.scoped.indexOf(lt.scoped), 1);
      server.setTargets(this.targets().map((t) => t.entry));
      await lt.device.close();
      s.targetsRemoved.push(lt.config.iqn);
    }
    for (const [key, t] of wanted) {
      const lt = this.live.get(key);
      if (!lt) {
        await this.buildTarget(t);
        s.targetsAdded.push(t.iqn);
        continue;
      }
      await this.reloadTarget(lt, t, s);
    }
    // Configuration order for SendTargets.
    server.setTargets(applied.targets.map((t) => this.live.get(t.iqn.toLowerCase())!.entry));
    this.log.info({ ...s }, 'configuration reloaded');
    return s;
  }

  private async reloadTarget(lt: LiveTarget, t: TargetConfig, s: ReloadSummary): Promise<void> {
    const before = lt.device.lunInventory();
    const at = (lun: number) => `${t.iqn}/${lun}`;
    const wanted = new Map(t.luns.map((l) => [l.lun, l]));
    for (const [lun, l] of [...lt.luns]) {
      const w = wanted.get(lun);
      if (w && lunShape(w) === lunShape(l.config)) continue;
      await lt.device.removeLogicalUnit(lun); // tasks and copies aborted, tokens cancelled, store closed
      lt.luns.delete(lun);
      (w ? s.lunsReplaced : s.lunsRemoved).push(at(lun));
    }
    for (const l of t.luns) {
      const have = lt.luns.get(l.lun);
      if (!have) {
        const { live, options } = await this.openLun(t, l);
        lt.device.addLogicalUnit(options);
        lt.luns.set(l.lun, live);
        if (!s.lunsReplaced.includes(at(l.lun))) s.lunsAdded.push(at(l.lun));
        continue;
      }
      if (l.size !== undefined && l.size !== have.store.sizeBytes) {
        const lu = lt.device.logicalUnit(l.lun)!;
        const was = have.store.sizeBytes;
        if (!have.store.resize) throw new Error(`${at(l.lun)}: resizing ${l.path} at run time is not supported`);
        await have.store.resize(l.size);
        if (have.store.sizeBytes !== was) {
          lu.capacityChanged(); // 6/2A/09 to every nexus (SBC-4 4.6)
          this.rodTokens?.cancelFor(lu); // the represented LBAs may be gone (reference 2.12)
          s.lunsResized.push(at(l.lun));
        }
      }
      have.config = l;
    }
    const newAccess = TargetAccess.fromConfig(t);
    if (JSON.stringify(lt.config.acls) !== JSON.stringify(t.acls) || JSON.stringify(lt.config.chap) !== JSON.stringify(t.chap)) {
      s.aclsChanged.push(t.iqn);
    }
    lt.access.current = newAccess;
    lt.config = t;
    lt.entry.alias = t.alias;
    lt.entry.chap = t.chap;
    lt.entry.portals = [...(t.portals ?? this.config.listen)];
    if (!this.cluster && lt.entry.portalGroupTag !== t.portalGroupTag) s.needsRestart.push(`targets.${t.iqn}.portalGroupTag`);
    // Initiators the ACLs no longer admit lose their sessions on this target; others keep theirs.
    s.sessionsDropped += this.dropSessions((x) => x.target?.name === lt.entry.name && !newAccess.mayLogin(x.initiatorName), 'no longer admitted');
    lt.device.lunInventoryChanged(before); // 6/3F/0E to the nexuses whose LUN list changed
  }

  /** Has `initiator` a normal session on target `iqn` now (copy scope sameInitiator)? */
  private hasSession(iqn: string, initiator: string): boolean {
    const name = initiator.toLowerCase();
    for (const s of this.server?.sessions() ?? []) {
      if (!s.closed && s.type === 'Normal' && s.target?.name === iqn && s.initiatorName.toLowerCase() === name) return true;
    }
    return false;
  }

  private dropSessions(match: (s: { target: TargetEntry | null; initiatorName: string }) => boolean, why: string): number {
    let n = 0;
    for (const session of this.server!.sessions()) {
      if (!match(session)) continue;
      n++;
      session.log.info({ why }, 'ending session after reload');
      for (const c of session.connections) void c.shutdown(why);
    }
    return n;
  }

  // ---- metrics and status -------------------------------------------------------------

  private async startMetrics(listen: string): Promise<void> {
    const m = new Metrics({
      sessions: () => (this.server ? this.server.sessions().map((x) => ({ type: x.type, target: x.target?.name })) : []),
      liveTokens: () => this.rodTokens?.liveCount ?? 0,
    });
    await m.listen(listen, this.log);
    this.metrics = m;
    if (this.rodTokens) this.rodTokens.onEvent = (event) => this.metrics?.tokenEvent(event);
    for (const lt of this.live.values()) {
      for (const l of lt.luns.values()) l.store.onCopied = (r) => this.metrics?.copied(r);
      lt.entry.device = instrumentDevice(lt.device, () => this.metrics);
    }
  }

  private async stopMetrics(): Promise<void> {
    const m = this.metrics;
    if (!m) return;
    this.metrics = null;
    if (this.rodTokens) this.rodTokens.onEvent = undefined;
    for (const lt of this.live.values()) {
      for (const l of lt.luns.values()) l.store.onCopied = undefined;
      lt.entry.device = lt.device;
    }
    await m.close();
  }

  status(): StatusReport {
    return buildStatus(this);
  }

  /** Stop accepting, end sessions, sync and close every store. */
  async stop(): Promise<void> {
    if (this.control) await this.control.close();
    if (this.server) await this.server.close();
    for (const lt of this.live.values()) await lt.device.close(); // closes its LUs' stores
    if (this.rodTokens) await this.rodTokens.close();
    await this.stopMetrics();
    if (this.cluster) {
      // Last: the lease is revoked, so the other nodes see this one gone at once rather than after the TTL.
      this.cluster.stopFollowing();
      await this.cluster.handle.close();
    }
    this.log.info('stopped');
  }
}

