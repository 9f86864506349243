/** ROD token format: layout per the standard, MAC over every byte, secret file. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  ROD_TOKEN_BYTES, RodType, creatorDesignator, decodeRodToken, encodeCreatorDescriptor, encodeRodToken,
  encodeTargetDeviceDescriptor, rodManagementToken, verifyRodToken, type RodTokenFields,
} from '../../../scsi/copy/rod-token';
import { SenseError } from '../../../scsi/sense';
import { loadTokenSecret } from '../../../src/token-secret';

const secret = randomBytes(32);
const naa = Buffer.from('600a0b0c0d0e0f101112131415161718', 'hex');

function fields(o: Partial<RodTokenFields> = {}): RodTokenFields {
  return {
    rodType: RodType.PIT_DEFAULT,
    id: 0x1234_5678_0000_0001n,
    creator: encodeCreatorDescriptor({ codeSet: 1, designatorType: 3, value: naa }, 512),
    bytesRepresented: 256n * 1024n * 1024n,
    logicalBlockLength: 512,
    physicalBlockExponent: 3,
    lbpme: true,
    lbprz: true,
    targetDescriptor: encodeTargetDeviceDescriptor('iqn.2026-11.org.xcopyd:default'),
    createdMs: 1_800_000_000_000,
    inactivityTimeoutS: 60,
    random: randomBytes(32),
    ...o,
  };
}

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof SenseError) return err.reason;
    throw err;
  }
  return undefined;
}

describe('ROD token layout (reference 2.12)', () => {
  const t = encodeRodToken(fields(), secret);

  it('is 512 bytes: ROD TYPE, ROD TOKEN LENGTH 01F8h, identifier, E4h creator, bytes represented, RC16 data', () => {
    expect(t.length).toBe(ROD_TOKEN_BYTES);
    expect(t.readUInt32BE(0)).toBe(0x0080_0000);
    expect(t.readUInt16BE(4)).toBe(0);
    expect(t.readUInt16BE(6)).toBe(0x01f8);
    expect(t.readBigUInt64BE(8)).toBe(0x1234_5678_0000_0001n);
    expect(t[16]).toBe(0xe4);
    expect(t[16 + 7]).toBe(16);
    expect(t.subarray(24, 40).equals(naa)).toBe(true);
    expect(t.readUIntBE(16 + 29, 3)).toBe(512);
    expect(t.readBigUInt64BE(48)).toBe(0n);
    expect(t.readBigUInt64BE(56)).toBe(256n * 1024n * 1024n);
    expect(t.subarray(64, 96).every((b) => b === 0)).toBe(true);
    expect(t.readUInt32BE(96)).toBe(512);
    expect(t[101]).toBe(3);
    expect(t[102] & 0xc0).toBe(0xc0);
    // target device descriptor: association 10b, SCSI name string
    expect(t[129]).toBe(0x28);
    expect(t.subarray(132, 132 + 30).toString()).toBe('iqn.2026-11.org.xcopyd:default');
  });

  it('decodes what it encodes; the creator designator comes back', () => {
    const f = verifyRodToken(t, secret);
    expect(f.id).toBe(0x1234_5678_0000_0001n);
    expect(f.bytesRepresented).toBe(256n * 1024n * 1024n);
    expect(f.inactivityTimeoutS).toBe(60);
    expect(creatorDesignator(f)).toEqual({ codeSet: 1, association: 0, designatorType: 3, value: naa });
    expect(rodManagementToken(t).equals(t.subarray(0, 96))).toBe(true);
    expect(decodeRodToken(t).createdMs).toBe(1_800_000_000_000);
  });

  it('every single changed byte is refused with an INVALID TOKEN OPERATION ASCQ, never accepted', () => {
    for (let i = 0; i < ROD_TOKEN_BYTES; i++) {
      const bad = Buffer.from(t);
      bad[i] ^= 0x01 << (i % 8);
      const reason = reasonOf(() => verifyRodToken(bad, secret));
      expect(['TOKEN_CORRUPT', 'INVALID_TOKEN_LENGTH', 'UNSUPPORTED_TOKEN_TYPE']).toContain(reason);
    }
  });

  it('a token sealed under another secret is corrupt; a wrong length is 23/0A; a foreign ROD type 23/01', () => {
    expect(reasonOf(() => verifyRodToken(encodeRodToken(fields(), randomBytes(32)), secret))).toBe('TOKEN_CORRUPT');
    const len = Buffer.from(t);
    len.writeUInt16BE(0x01f0, 6);
    expect(reasonOf(() => verifyRodToken(len, secret))).toBe('INVALID_TOKEN_LENGTH');
    const type = Buffer.from(t);
    type.writeUInt32BE(0xffff_fff0, 0);
    expect(reasonOf(() => verifyRodToken(type, secret))).toBe('UNSUPPORTED_TOKEN_TYPE');
    expect(reasonOf(() => verifyRodToken(randomBytes(512), secret))).toBeDefined();
  });
});

describe('token secret file', () => {
  it('is made on first run with mode 0600 and kept across runs', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-secret-'));
    try {
      const a = loadTokenSecret(dir);
      const st = fs.statSync(path.join(dir, 'rod-token.key'));
      expect(st.mode & 0o777).toBe(0o600);
      expect(a.length).toBe(32);
      expect(loadTokenSecret(dir).equals(a)).toBe(true);
      fs.chmodSync(path.join(dir, 'rod-token.key'), 0o644);
      loadTokenSecret(dir);
      expect(fs.statSync(path.join(dir, 'rod-token.key')).mode & 0o777).toBe(0o600);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
