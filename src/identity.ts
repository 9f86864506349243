/**
 * Stable LU identity: unit serial numbers and NAA designators come from the
 * configuration, or are generated once and kept in the data directory, so
 * copy descriptors, tokens and multipath WWIDs still resolve after a restart.
 *
 * Generated NAA designators are NAA 6 (IEEE Registered Extended) with the
 * company ID 0AC0DEh, which has the CID "locally assigned" bit set
 * (bit 1 of the first octet), so it cannot collide with an IEEE-assigned OUI.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileDurablySync } from '../scsi/durable-file';

export const XCOPYD_COMPANY_ID = 0x0ac0de;

export interface PersistedIdentity {
  serial: string;
  /** 32 hex digits, NAA 6. */
  naa: string;
}

export function generateNaa6(): string {
  const b = crypto.randomBytes(16);
  b[0] = 0x60 | ((XCOPYD_COMPANY_ID >> 20) & 0x0f);
  b[1] = (XCOPYD_COMPANY_ID >> 12) & 0xff;
  b[2] = (XCOPYD_COMPANY_ID >> 4) & 0xff;
  b[3] = ((XCOPYD_COMPANY_ID & 0x0f) << 4) | (b[3] & 0x0f);
  return b.toString('hex');
}

/**
 * An EUI-64 designator derived from the NAA one (stable with it): the NAA's
 * IEEE company ID, then the low 40 bits of its vendor-specific part.
 */
export function eui64FromNaa(naa: Buffer): Buffer {
  const companyId = ((naa[0] & 0x0f) << 20) | (naa[1] << 12) | (naa[2] << 4) | (naa[3] >> 4);
  const b = Buffer.alloc(8);
  b.writeUIntBE(companyId, 0, 3);
  naa.copy(b, 3, naa.length - 5);
  return b;
}

export function generateSerial(): string {
  return 'XC' + crypto.randomBytes(8).toString('hex');
}

/** Identity store in `<dataDir>/identity.json`, keyed by "<target iqn>/<lun>". */
export class IdentityStore {
  private readonly file: string;
  private data: Record<string, PersistedIdentity> = {};

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'identity.json');
    if (fs.existsSync(this.file)) this.data = JSON.parse(fs.readFileSync(this.file, 'utf8'));
  }

  /** The identity for a LUN: configured values win; otherwise persisted or freshly generated. */
  resolve(targetIqn: string, lun: number, configured: { serial?: string; naa?: string }): PersistedIdentity {
    const key = `${targetIqn.toLowerCase()}/${lun}`;
    const have = this.data[key];
    const id: PersistedIdentity = {
      serial: configured.serial ?? have?.serial ?? generateSerial(),
      naa: (configured.naa ?? have?.naa ?? generateNaa6()).toLowerCase(),
    };
    if (!have || have.serial !== id.serial || have.naa !== id.naa) {
      this.data[key] = id;
      this.save();
    }
    return id;
  }

  private save(): void {
    writeFileDurablySync(this.file, JSON.stringify(this.data, null, 2) + '\n');
  }
}

/** For src/daemon.ts (a LUN file created at start-up); the one implementation is scsi/durable-file.ts. */
export { fsyncDirectorySync as fsyncDirectory } from '../scsi/durable-file';
