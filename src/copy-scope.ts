/**
 * The access scope of third-party copies across the daemon (issue 4, Access):
 * an E4h CSCD designator resolves only to a logical unit that the issuing
 * I_T nexus may access. The scsi/ core asks through ScsiDeviceOptions.copyScope;
 * only the composer knows every target and its ACL.
 *
 * Rules:
 *  - the target the command arrived on: the LUs its device shows the nexus
 *    (lunsFor, the LUN masking of the ACLs);
 *  - another target: only if its allowedInitiators names the initiator
 *    explicitly, and then only the LUs that device shows the nexus. A target
 *    open to everybody (no list) or guarded by CHAP alone is not reachable
 *    from a session on another target: the initiator never proved it may log in there.
 */
import type { ItNexus } from '../scsi/types';
import type { CopyScope, CopyTarget, Designator } from '../scsi/copy/cscd';
import { designatorMatches } from '../scsi/copy/cscd';
import type { ScsiDevice } from '../scsi/scsi-device';

export interface ScopedTarget {
  iqn: string;
  /** undefined = any initiator may log in. */
  allowedInitiators?: readonly string[];
  device: ScsiDevice;
}

function explicitlyAllowed(t: ScopedTarget, initiator: string): boolean {
  const n = initiator.toLowerCase();
  return t.allowedInitiators?.some((a) => a.toLowerCase() === n) ?? false;
}

/** `targets` is read at call time, so the composer can fill it after creating the devices. */
export function buildCopyScope(targets: readonly ScopedTarget[]): CopyScope {
  return (nexus: ItNexus, designator: Designator): CopyTarget | undefined => {
    for (const t of targets) {
      const own = nexus.targetPortName.toLowerCase().startsWith(`${t.iqn.toLowerCase()},`);
      if (!own && !explicitlyAllowed(t, nexus.initiatorName)) continue;
      for (const lun of t.device.lunsFor(nexus)) {
        const lu = t.device.logicalUnit(lun);
        if (lu && designatorMatches(lu, designator)) return { device: t.device, lun, lu };
      }
    }
    return undefined;
  };
}
