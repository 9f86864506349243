/**
 * CRC32C (Castagnoli) digests, RFC 7143 §13.1 / §11.1.4: reflected, init and
 * final XOR FFFF_FFFFh; the 4 bytes go on the wire least significant first.
 * Backed by @node-rs/crc32 (SSE4.2 / ARMv8 CRC instructions).
 */
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

export const DIGEST_LENGTH = 4;

/** CRC32C over one or more consecutive buffers. */
export function crc32c(first: Buffer, ...rest: Buffer[]): number {
  let crc = nativeCrc32c(first);
  for (const b of rest) crc = nativeCrc32c(b, crc);
  return crc >>> 0;
}

/** The digest as the 4 bytes sent on the wire. */
export function digestBytes(crc: number): Buffer {
  const b = Buffer.allocUnsafe(DIGEST_LENGTH);
  b.writeUInt32LE(crc >>> 0, 0);
  return b;
}

/** True when the 4 wire bytes at `off` hold `crc`. */
export function digestMatches(buf: Buffer, off: number, crc: number): boolean {
  return buf.readUInt32LE(off) === crc >>> 0;
}
