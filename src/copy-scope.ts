/**
 * The access scope of third-party copies across the daemon (issues 4, 6 and
 * 11): an E4h CSCD designator, and the creator of an ODX token, resolve only
 * to a logical unit that the issuing I_T nexus may reach (the CVE-2020-28374
 * class of bug is a copy engine that resolves designators daemon-wide). The
 * scsi/ core asks through ScsiDeviceOptions.copyScope; only the composer
 * knows every target, its ACL and its sessions.
 *
 * Rules:
 *  - the target the command arrived on: the LUs its device shows the nexus
 *    (its ACL entry's LUN map and masking: device.unitsFor);
 *  - another target, when the initiator may log in there and
 *      - its ACL names the initiator explicitly (either copyScope), or
 *      - that target's copyScope is `sameInitiator` and the initiator has a
 *        session there now (so it reaches those LUs anyway; an open target
 *        it never logged in to stays out of reach);
 *    and only if the session proved what a login there demands: that target
 *    asks no CHAP of the initiator, or exactly the credentials the issuing
 *    target asked (names are claimed, not proven; without this an initiator
 *    on an open target could reach a CHAP-guarded one by claiming the name
 *    of someone logged in there); then only the LUs that device shows that
 *    initiator.
 * The reached target's setting decides: its owner says whether copies issued
 * elsewhere may reach its LUs.
 *
 * A designator that names an LU of the daemon the nexus may not reach is
 * logged at info with the initiator, both targets, the LU and the reason.
 */
import type { Logger } from 'pino';
import type { ItNexus } from '../scsi/types';
import type { CopyScope, CopyTarget, Designator } from '../scsi/copy/cscd';
import { designatorMatches } from '../scsi/copy/cscd';
import type { ScsiDevice } from '../scsi/scsi-device';
import type { LogicalUnit } from '../scsi/logical-unit';
import type { ChapCredentials } from '../iscsi/types';
import type { TargetAccess } from './access';

/**
 * How far copies issued on another target may reach this one:
 *  - `acl`: only for initiators its ACL names explicitly (the default);
 *  - `sameInitiator`: also for an initiator logged in to it at the time.
 */
export type CopyScopeMode = 'acl' | 'sameInitiator';

export interface ScopedTarget {
  iqn: string;
  device: ScsiDevice;
  /** The target's current access rules (read at every resolution: reloads apply at once). */
  access: () => TargetAccess;
  /** The target's current copy scope mode; default `acl`. */
  mode?: () => CopyScopeMode;
  /** Has `initiator` a session on this target now? Needed for `sameInitiator`. */
  loggedIn?: (initiator: string) => boolean;
}

function isOwn(t: ScopedTarget, nexus: ItNexus): boolean {
  return nexus.targetPortName.toLowerCase().startsWith(`${t.iqn.toLowerCase()},`);
}

function sameCredentials(a: ChapCredentials | undefined, b: ChapCredentials | undefined): boolean {
  if (!a || !b) return a === b;
  return a.user === b.user && a.secret === b.secret;
}

/** Why a session of `initiator` on `own` may not reach LUs of the other target `t`; undefined = it may. */
function refusalOf(t: ScopedTarget, own: ScopedTarget | undefined, initiator: string): string | undefined {
  const theirs = t.access();
  if (!theirs.mayLogin(initiator)) return 'the target does not admit the initiator';
  if (!theirs.namesInitiator(initiator)) {
    const mode = t.mode?.() ?? 'acl';
    if (mode === 'acl') return 'the target\'s ACL does not name the initiator (copyScope acl)';
    if (!t.loggedIn?.(initiator)) return 'the initiator has no session on the target (copyScope sameInitiator)';
  }
  const needed = theirs.chapFor(initiator);
  if (!needed) return undefined;
  const proven = own?.access().chapFor(initiator);
  return sameCredentials(needed, proven) ? undefined : 'the issuing session did not prove the CHAP credentials the target demands';
}

export interface CopyScopeOptions {
  /** Where refusals are logged (info); none when absent. */
  log?: Logger;
}

/** `targets` is read at call time, so the composer can fill it after creating the devices and change it on reload. */
export function buildCopyScope(targets: readonly ScopedTarget[], options: CopyScopeOptions = {}): CopyScope {
  // REPORT ALL ROD TOKENS resolves every live token in one synchronous pass:
  // identical refusals within one pass make one line (with a count), while
  // every refused command, which resolves in a turn of its own, makes its own.
  let pass: Map<string, { fields: Record<string, unknown>; times: number }> | null = null;
  const flush = (): void => {
    const logged = pass;
    pass = null;
    for (const { fields, times } of logged?.values() ?? []) {
      options.log?.info(times > 1 ? { ...fields, times } : fields, 'cross-target copy refused');
    }
  };
  const refused = (nexus: ItNexus, own: ScopedTarget | undefined, t: ScopedTarget, lu: LogicalUnit, reason: string): void => {
    if (!options.log) return;
    if (!pass) {
      pass = new Map();
      queueMicrotask(flush);
    }
    const key = `${nexus.initiatorName}|${own?.iqn}|${t.iqn}|${lu.lun}|${reason}`;
    const seen = pass.get(key);
    if (seen) seen.times++;
    else {
      pass.set(key, {
        fields: { initiator: nexus.initiatorName, fromTarget: own?.iqn, target: t.iqn, lun: lu.lun, naa: lu.identity.naa.toString('hex'), reason },
        times: 1,
      });
    }
  };

  return (nexus: ItNexus, designator: Designator): CopyTarget | undefined => {
    const own = targets.find((t) => isOwn(t, nexus));
    for (const t of targets) {
      if (t !== own && refusalOf(t, own, nexus.initiatorName) !== undefined) continue;
      for (const lu of t.device.unitsFor(nexus)) {
        if (designatorMatches(lu, designator)) return { device: t.device, lun: lu.lun, lu };
      }
    }
    // Not reachable: say why if the designator names an LU of the daemon (rare, so the second pass costs nothing).
    if (options.log) {
      for (const t of targets) {
        for (const lu of t.device.logicalUnits()) {
          if (!designatorMatches(lu, designator)) continue;
          const reason = (t !== own && refusalOf(t, own, nexus.initiatorName)) || 'the LU is not in the initiator\'s LUN map';
          refused(nexus, own, t, lu, reason);
          return undefined;
        }
      }
    }
    return undefined;
  };
}
