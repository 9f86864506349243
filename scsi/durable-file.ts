/**
 * Small state files that must survive a power cut (persisted LU state, the
 * identity file, the ROD token key): replaced so that a power cut leaves the
 * old or the new content, never an empty or partial file. The data is
 * fsynced in a temporary file before the rename (else the rename can reach the
 * disk before the data), and the directory after it (else the rename itself
 * can be lost). The async form is for the running daemon, the sync one for
 * start-up, before anything is served. test/durability's power-cut suite
 * checks the files written through here.
 */
import fs, { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

/** fsync(2) of a directory: the names created, renamed or removed in it so far survive a power cut. */
export function fsyncDirectorySync(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Replace `file` with `text` durably (start-up; blocks). */
export function writeFileDurablySync(file: string, text: string, mode = 0o600): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDirectorySync(dirname(file));
}

/** Replace `file` with `text` durably, off the event loop. */
export async function writeFileDurably(file: string, text: string, mode = 0o600): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, 'w', mode);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  const dir = await fsp.open(dirname(file), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
