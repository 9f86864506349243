/**
 * The copy manager's ROD token secret: 32 random bytes kept in the data
 * directory (mode 0600), made on first run. Tokens are sealed with an
 * HMAC-SHA-256 under it (scsi/copy/rod-token.ts), so nobody without the file
 * can forge one; the same key after a restart means a token from before is
 * still recognised as ours (and then reported as cancelled, not unknown).
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncDirectorySync } from '../scsi/durable-file';

export const TOKEN_SECRET_FILE = 'rod-token.key';
const SECRET_BYTES = 32;

/** Load `<dataDir>/rod-token.key`, creating it (O_EXCL, 0600) when missing. */
export function loadTokenSecret(dataDir: string): Buffer {
  const file = path.join(dataDir, TOKEN_SECRET_FILE);
  try {
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      fs.writeSync(fd, randomBytes(SECRET_BYTES));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fsyncDirectorySync(dataDir); // the new name too: a key lost in a power cut would orphan every token
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = fs.statSync(file);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(file, 0o600); // never readable by others
  const secret = fs.readFileSync(file);
  if (secret.length < SECRET_BYTES) throw new Error(`${file}: ROD token secret shorter than ${SECRET_BYTES} bytes`);
  return secret;
}
