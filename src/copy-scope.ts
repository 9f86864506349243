/**
 * The access scope of third-party copies across the daemon (issues 4 and 6):
 * an E4h CSCD designator, and the creator of an ODX token, resolve only to a
 * logical unit that the issuing I_T nexus may reach (the CVE-2020-28374 class
 * of bug is a copy engine that resolves designators daemon-wide). The scsi/
 * core asks through ScsiDeviceOptions.copyScope; only the composer knows
 * every target and its ACL.
 *
 * Rules:
 *  - the target the command arrived on: the LUs its device shows the nexus
 *    (its ACL entry's LUN map and masking: device.unitsFor);
 *  - another target: only if its ACL names the initiator explicitly, and only
 *    if the session proved what a login there would demand: that target asks
 *    no CHAP of the initiator, or exactly the credentials the issuing target
 *    asked (names are claimed, not proven; without this an initiator on an
 *    open target could reach a CHAP-guarded one by claiming a listed name);
 *    then only the LUs that device shows that initiator. A target open to
 *    everybody (no ACL) is not reachable from a session on another target:
 *    the initiator never logged in there.
 */
import type { ItNexus } from '../scsi/types';
import type { CopyScope, CopyTarget, Designator } from '../scsi/copy/cscd';
import { designatorMatches } from '../scsi/copy/cscd';
import type { ScsiDevice } from '../scsi/scsi-device';
import type { ChapCredentials } from '../iscsi/types';
import type { TargetAccess } from './access';

export interface ScopedTarget {
  iqn: string;
  device: ScsiDevice;
  /** The target's current access rules (read at every resolution: reloads apply at once). */
  access?: () => TargetAccess;
  /** Legacy form when `access` is absent: initiators named explicitly; undefined = anyone may log in. */
  allowedInitiators?: readonly string[];
}

function isOwn(t: ScopedTarget, nexus: ItNexus): boolean {
  return nexus.targetPortName.toLowerCase().startsWith(`${t.iqn.toLowerCase()},`);
}

function sameCredentials(a: ChapCredentials | undefined, b: ChapCredentials | undefined): boolean {
  if (!a || !b) return a === b;
  return a.user === b.user && a.secret === b.secret;
}

/** May a session of `nexus` on `own` reach LUs of the other target `t`? */
function reachesOther(t: ScopedTarget, own: ScopedTarget | undefined, initiator: string): boolean {
  if (!t.access) {
    const n = initiator.toLowerCase();
    return t.allowedInitiators?.some((a) => a.toLowerCase() === n) ?? false;
  }
  const theirs = t.access();
  if (!theirs.namesInitiator(initiator)) return false;
  const needed = theirs.chapFor(initiator);
  if (!needed) return true;
  const proven = own?.access?.().chapFor(initiator);
  return sameCredentials(needed, proven);
}

/** `targets` is read at call time, so the composer can fill it after creating the devices and change it on reload. */
export function buildCopyScope(targets: readonly ScopedTarget[]): CopyScope {
  return (nexus: ItNexus, designator: Designator): CopyTarget | undefined => {
    const own = targets.find((t) => isOwn(t, nexus));
    for (const t of targets) {
      if (t !== own && !reachesOther(t, own, nexus.initiatorName)) continue;
      for (const lu of t.device.unitsFor(nexus)) {
        if (designatorMatches(lu, designator)) return { device: t.device, lun: lu.lun, lu };
      }
    }
    return undefined;
  };
}
