/**
 * EXTENDED COPY as hosts build it: the LU's NAA designator read from VPD 83h (ESXi and QEMU
 * copy it verbatim into an E4h CSCD descriptor), and the bytes of a LUN's backing file for
 * setting up sources and checking destinations without moving them over the wire.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { cdb, type TestInitiator } from './initiator';

/** The NAA designator (code set 1, association LU, type 3) of `lun`, from VPD 83h. */
export async function naaOf(c: TestInitiator, lun: number): Promise<Buffer> {
  const r = await c.command(lun, cdb.inquiry(1024, true, 0x83), { read: 1024 });
  if (r.status !== 0) throw new Error(`INQUIRY VPD 83h on LUN ${lun}: status ${r.status}`);
  const page = r.data;
  const end = 4 + page.readUInt16BE(2);
  for (let off = 4; off + 4 <= end; ) {
    const len = page[off + 3];
    const codeSet = page[off] & 0x0f;
    const association = (page[off + 1] >> 4) & 0x03;
    const type = page[off + 1] & 0x0f;
    if (codeSet === 1 && association === 0 && type === 3) return Buffer.from(page.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  throw new Error(`LUN ${lun}: no NAA designator in VPD 83h`);
}

export function writeFileAt(file: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

export function readFileAt(file: string, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  const fd = fs.openSync(file, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, b, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return b;
}

/**
 * `bytes` of seeded pseudo-random data at native speed (AES-128-CTR of zeros, key from the
 * seed): every block differs, the same seed gives the same bytes. odx.ts's pattern() fills
 * 4 bytes per JavaScript step, which takes seconds per 32 MiB on a loaded host.
 */
export function fastPattern(bytes: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(seed >>> 0, 0);
  key.write('xcopyd-pattern', 4, 'latin1');
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]);
}
