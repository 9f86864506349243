/** Builders for EXTENDED COPY parameter lists and CDBs, and a store whose copies can be paced. */
import type { BackingStore, CopyRangeOptions, CopyRangeResult } from '../../../scsi/backing-store';
import type { LuIdentity } from '../../../scsi/logical-unit';
import { MemoryStore } from '../helpers';

export const BS = 512;

/** E4h Identification CSCD descriptor naming an NAA designator (as QEMU and libiscsi send it). */
export function e4(naa: Buffer, o: { blockLength?: number; pad?: boolean; pdt?: number; luIdType?: number; codeSet?: number; type?: number } = {}): Buffer {
  const d = Buffer.alloc(32);
  d[0] = 0xe4;
  d[1] = ((o.luIdType ?? 0) << 6) | (o.pdt ?? 0);
  d[4] = o.codeSet ?? 0x01;
  d[5] = o.type ?? 0x03;
  d[7] = naa.length;
  naa.copy(d, 8);
  if (o.pad) d[28] = 0x04;
  d.writeUIntBE(o.blockLength ?? BS, 29, 3);
  return d;
}

/** E4h naming a T10 vendor ID designator (code set ASCII). */
export function e4T10(vendor: string, serial: string): Buffer {
  const v = Buffer.concat([Buffer.from(vendor.padEnd(8, ' ').slice(0, 8), 'ascii'), Buffer.from(serial, 'ascii')]);
  return e4(v, { codeSet: 0x02, type: 0x01 });
}

/** 02h block -> block segment. */
export function b2b(src: number, dst: number, blocks: number, srcLba: number | bigint, dstLba: number | bigint, o: { dc?: boolean; cat?: boolean } = {}): Buffer {
  const d = Buffer.alloc(28);
  d[0] = 0x02;
  d[1] = (o.dc ? 0x02 : 0) | (o.cat ? 0x01 : 0);
  d.writeUInt16BE(0x18, 2);
  d.writeUInt16BE(src, 4);
  d.writeUInt16BE(dst, 6);
  d.writeUInt16BE(blocks, 10);
  d.writeBigUInt64BE(BigInt(srcLba), 12);
  d.writeBigUInt64BE(BigInt(dstLba), 20);
  return d;
}

/** 0Ah block with byte offset -> block with byte offset. */
export function bo(src: number, dst: number, bytes: number, srcLba: number, dstLba: number, srcOff: number, dstOff: number): Buffer {
  const d = Buffer.alloc(32);
  d[0] = 0x0a;
  d.writeUInt16BE(0x1c, 2);
  d.writeUInt16BE(src, 4);
  d.writeUInt16BE(dst, 6);
  d.writeUInt32BE(bytes, 8);
  d.writeBigUInt64BE(BigInt(srcLba), 12);
  d.writeBigUInt64BE(BigInt(dstLba), 20);
  d.writeUInt16BE(srcOff, 28);
  d.writeUInt16BE(dstOff, 30);
  return d;
}

/** 07h verify CSCD. */
export function verify(src: number, tur = false): Buffer {
  const d = Buffer.alloc(12);
  d[0] = 0x07;
  d.writeUInt16BE(0x08, 2);
  d.writeUInt16BE(src, 4);
  if (tur) d[8] = 0x01;
  return d;
}

/** EXTENDED COPY(LID1) parameter list. */
export function lid1(cscds: Buffer[], segs: Buffer[], o: { listId?: number; usage?: number; inline?: number } = {}): Buffer {
  const h = Buffer.alloc(16);
  h[0] = o.listId ?? 1;
  h[1] = ((o.usage ?? 0) & 3) << 3;
  const c = Buffer.concat(cscds);
  const s = Buffer.concat(segs);
  h.writeUInt16BE(c.length, 2);
  h.writeUInt32BE(s.length, 8);
  h.writeUInt32BE(o.inline ?? 0, 12);
  return Buffer.concat([h, c, s]);
}

/** EXTENDED COPY(LID4) parameter list. */
export function lid4(cscds: Buffer[], segs: Buffer[], o: { listId?: number; usage?: number; immed?: boolean } = {}): Buffer {
  const h = Buffer.alloc(48);
  h[0] = 0x01;
  h[1] = ((o.usage ?? 0) & 3) << 3;
  h.writeUInt16BE(0x20, 2);
  h[15] = o.immed ? 0x01 : 0;
  h[16] = 0xff;
  h.writeUInt32BE(o.listId ?? 1, 20);
  const c = Buffer.concat(cscds);
  const s = Buffer.concat(segs);
  h.writeUInt16BE(c.length, 42);
  h.writeUInt16BE(s.length, 44);
  return Buffer.concat([h, c, s]);
}

export function xcopyCdb(sa: 0 | 1, length: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x83;
  b[1] = sa;
  b.writeUInt32BE(length, 10);
  return b;
}

export function rcrCdb(sa: number, listId: number, alloc = 1024): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x84;
  b[1] = sa;
  if (sa === 0x05) b.writeUInt32BE(listId, 2);
  else b[2] = listId;
  b.writeUInt32BE(alloc, 10);
  return b;
}

export function coaCdb(listId: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x83;
  b[1] = 0x1c;
  b.writeUInt32BE(listId, 2);
  return b;
}

export function identityWith(n: number, naa?: Buffer): LuIdentity {
  const id = Buffer.alloc(16);
  id[0] = 0x60;
  id[1] = 0x0a;
  id[15] = n;
  return { vendor: 'XCOPYD', product: 'test disk', revision: '0001', serial: `SERIAL${n}`, naa: naa ?? id };
}

export function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < b.length; i++) b[i] = (i * 13 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

/**
 * A memory store with copyRange that moves `stepBytes` per step and waits for
 * `gate()` between steps (abort and progress tests), honouring the signal.
 */
export class PacedStore extends MemoryStore {
  stepBytes = 64 * 1024;
  paused = false;
  private waiters: Array<() => void> = [];
  copyCalls = 0;
  active = 0;

  resume(): void {
    this.paused = false;
    for (const w of this.waiters.splice(0)) w();
  }

  private gate(signal?: AbortSignal): Promise<void> {
    if (!this.paused) return new Promise((r) => setImmediate(r));
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  async copyRange(dst: BackingStore, srcOffset: number, dstOffset: number, length: number, o: CopyRangeOptions = {}): Promise<CopyRangeResult> {
    this.copyCalls++;
    this.active++;
    try {
      let done = 0;
      while (done < length) {
        if (o.signal?.aborted) throw o.signal.reason;
        await this.gate(o.signal);
        if (o.signal?.aborted) throw o.signal.reason;
        const n = Math.min(this.stepBytes, length - done);
        await dst.write(dstOffset + done, await this.read(srcOffset + done, n));
        done += n;
        o.onProgress?.(done);
      }
      return { bytes: length, cloned: 0, offloaded: length, buffered: 0, holes: 0 };
    } finally {
      this.active--;
    }
  }
}
