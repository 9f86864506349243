/**
 * Access control of one target, from its configuration (issue 6): who may log
 * in, with which CHAP credentials, and which LUNs each initiator sees under
 * which numbers. One object answers the transport (login, SendTargets), the
 * SCSI device (LUN map) and the copy scope, so the three cannot disagree.
 *
 * A target without ACL entries is open: every initiator, every LUN, the
 * target's CHAP. Once it has entries, every other initiator is refused.
 * The object is replaced on reload; the closures handed to the device and the
 * transport read the current one through `AccessHolder`.
 */
import type { ChapCredentials } from '../iscsi/types';
import type { ItNexus } from '../scsi/types';
import type { TargetConfig } from './config';

export interface AclEntry {
  initiator: string;
  /** Initiator LUN -> target LUN; undefined = every LUN of the target, same numbers. */
  lunMap?: ReadonlyMap<number, number>;
  chap?: ChapCredentials;
}

export class TargetAccess {
  /** Lower-cased initiator name -> entry; null = open target. */
  private readonly entries: ReadonlyMap<string, AclEntry> | null;

  constructor(
    readonly iqn: string,
    readonly chap: ChapCredentials | undefined,
    acls: readonly AclEntry[] | undefined,
  ) {
    this.entries = acls ? new Map(acls.map((a) => [a.initiator.toLowerCase(), a])) : null;
  }

  static fromConfig(t: Readonly<TargetConfig>): TargetAccess {
    const creds = (c: TargetConfig['chap']): ChapCredentials | undefined =>
      c && { user: c.user, secret: c.secret, ...(c.mutual ? { mutual: { user: c.mutual.user, secret: c.mutual.secret } } : {}) };
    const acls = t.acls?.map((a) => ({
      initiator: a.initiator,
      lunMap: a.luns ? new Map(a.luns.map((m) => [m.lun, m.targetLun])) : undefined,
      chap: creds(a.chap),
    }));
    return new TargetAccess(t.iqn, creds(t.chap), acls);
  }

  /** True when the target names the initiators it admits. */
  get restricted(): boolean {
    return this.entries !== null;
  }

  /** The ACL entry of `initiator`: undefined when refused; an open target admits with an empty entry. */
  entryFor(initiator: string): AclEntry | undefined {
    if (!this.entries) return { initiator };
    return this.entries.get(initiator.toLowerCase());
  }

  mayLogin(initiator: string): boolean {
    return this.entryFor(initiator) !== undefined;
  }

  /** An ACL entry's own credentials, else the target's. */
  chapFor(initiator: string): ChapCredentials | undefined {
    return this.entryFor(initiator)?.chap ?? this.chap;
  }

  /**
   * The LUN map for a nexus: undefined = identity (open target, or an entry
   * without a LUN list); an empty map = nothing (an initiator the ACLs do not
   * name: defence in depth should a session outlive its entry).
   */
  lunMapFor(nexus: ItNexus): ReadonlyMap<number, number> | undefined {
    const e = this.entryFor(nexus.initiatorName);
    if (!e) return EMPTY;
    return e.lunMap;
  }

  /** Is the initiator named explicitly (not merely admitted by an open target)? */
  namesInitiator(initiator: string): boolean {
    return this.entries?.has(initiator.toLowerCase()) ?? false;
  }
}

const EMPTY: ReadonlyMap<number, number> = new Map();

/** A mutable reference to a target's current access rules (swapped on reload). */
export class AccessHolder {
  constructor(public current: TargetAccess) {}
}
