/** Decoders for the ALUA answers (REPORT TARGET PORT GROUPS, VPD 83h port designators) shared by the ALUA tests. */

export interface RtpgGroup {
  state: number;
  supported: number;
  id: number;
  status: number;
  ports: number[];
}

/** REPORT TARGET PORT GROUPS data (SPC-5 6.37; extended header when `extended`) -> its groups. */
export function decodeRtpg(d: Buffer, extended: boolean): RtpgGroup[] {
  const out: RtpgGroup[] = [];
  let off = extended ? 8 : 4;
  const end = Math.min(d.length, 4 + d.readUInt32BE(0));
  while (off + 8 <= end) {
    const count = d[off + 7];
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(d.readUInt16BE(off + 8 + 4 * i + 2));
    out.push({ state: d[off] & 0x0f, supported: d[off + 1], id: d.readUInt16BE(off + 2), status: d[off + 5], ports });
    off += 8 + 4 * count;
  }
  return out;
}

/** VPD 83h -> the target-port-association relative target port (type 4) and target port group (type 5). */
export function portDesignators(d: Buffer): { rtp?: number; tpg?: number } {
  const out: { rtp?: number; tpg?: number } = {};
  let off = 4;
  const end = Math.min(d.length, 4 + d.readUInt16BE(2));
  while (off + 4 <= end) {
    const assoc = (d[off + 1] >> 4) & 0x3;
    const type = d[off + 1] & 0x0f;
    const len = d[off + 3];
    if (assoc === 1 && type === 4) out.rtp = d.readUInt16BE(off + 6);
    if (assoc === 1 && type === 5) out.tpg = d.readUInt16BE(off + 6);
    off += 4 + len;
  }
  return out;
}

/** REPORT TARGET PORT GROUPS CDB (MAINTENANCE IN, SA 0Ah; extended header asked for with `extended`). */
export function rtpgCdb(extended = true, alloc = 1024): Buffer {
  const c = Buffer.alloc(12);
  c[0] = 0xa3;
  c[1] = (extended ? 0x20 : 0) | 0x0a;
  c.writeUInt32BE(alloc, 6);
  return c;
}
