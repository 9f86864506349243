/**
 * ESXi's VMFS heartbeat under copy load (issue 11 point 4), over iSCSI from
 * the TypeScript initiator: one session sends one-block COMPARE AND WRITEs
 * back to back (each swaps the block's content, as a heartbeat rewrites its
 * slot) and times each; meanwhile copy streams run on other LUNs of the same
 * daemon:
 *  - XCOPY streams, each its own session: EXTENDED COPY LID1 with two E4h NAA
 *    CSCDs and one 02h segment (ESXi's shape), one after another;
 *  - WUT streams, each its own session: POPULATE TOKEN of a range, RRTI,
 *    WRITE USING TOKEN of it to the destination LU (Windows' shape).
 * Heartbeats are paced (intervalMs). Used by test/bench/ats-latency.ts (printed figures) and by
 * test/backing/ats-under-copy-load.test.ts (a bound). Every loop stops at a
 * deadline; the caller bounds the count of streams.
 */
import fs from 'node:fs';
import { openSession, clearUnitAttentions, type TestInitiator } from './initiator';
import { b2b, e4, lid1, xcopyCdb } from '../scsi/copy/helpers';
import { populateTokenCdb, ptParams, rrtiCdb, parseRrti, writeUsingTokenCdb, wutParams } from '../odx/odx';

/**
 * Write `bytes` of non-zero data to a new file: a 1 MiB pattern from `seed`, its first word the
 * MiB index. Copy sources are filled this way before the daemon starts, so copies move real
 * extents instead of punching holes.
 */
export function fillSource(file: string, bytes: number, seed: number): void {
  const MiB = 1024 * 1024;
  const buf = Buffer.alloc(MiB);
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ Math.imul(seed, 40503)) >>> 0, i);
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    for (let off = 0; off < bytes; off += MiB) {
      buf.writeUInt32LE(off / MiB, 0);
      fs.writeSync(fd, buf, 0, MiB, off);
    }
  } finally {
    fs.closeSync(fd);
  }
}

export interface AtsLoadTarget {
  port: number;
  iqn: string;
  blockSize: number;
  /** The LUN heartbeats go to. */
  atsLun: number;
  /** XCOPY: source and destination LUN numbers, their NAAs (hex), and the bytes usable in each. */
  xcopy: { srcLun: number; dstLun: number; srcNaa: string; dstNaa: string; bytes: number };
  /** ODX: source and destination LUN numbers and bytes usable in each. */
  odx: { srcLun: number; dstLun: number; bytes: number };
}

export interface AtsLoadOptions {
  durationMs: number;
  xcopyStreams: number;
  /** Bytes per EXTENDED COPY (one segment). */
  xcopyBytes: number;
  wutStreams: number;
  /** Bytes per POPULATE TOKEN / WRITE USING TOKEN. */
  wutBytes: number;
  /** Pause between heartbeats (default 10 ms: 100/s, a busy cluster's worth; back to back, they would take the CPU the copies need). */
  intervalMs?: number;
  /** Time the copies run before the heartbeats start counting. */
  warmupMs?: number;
  initiatorName?: string;
}

export interface LatencyStats {
  count: number;
  maxMs: number;
  p99Ms: number;
  p50Ms: number;
}

export interface AtsLoadResult {
  ats: LatencyStats;
  /** Heartbeats that did not end GOOD (miscompare or error). */
  atsFailures: number;
  xcopies: number;
  xcopyBytes: number;
  wuts: number;
  wutBytes: number;
  /** Copy commands that ended other than GOOD (a WUT cut by its deadline counts here, its bytes in wutBytes). */
  copyErrors: string[];
}

export function stats(samples: number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN);
  return { count: s.length, maxMs: s.length ? s[s.length - 1] : NaN, p99Ms: at(0.99), p50Ms: at(0.5) };
}

const KEYS = { MaxRecvDataSegmentLength: '262144', MaxBurstLength: '1048576', FirstBurstLength: '262144' };

async function login(t: AtsLoadTarget, name: string): Promise<TestInitiator> {
  const c = await openSession(t.port, { initiatorName: name, targetName: t.iqn, keys: KEYS });
  for (const lun of new Set([t.atsLun, t.xcopy.srcLun, t.xcopy.dstLun, t.odx.srcLun, t.odx.dstLun])) {
    await clearUnitAttentions(c, lun).catch(() => undefined);
  }
  return c;
}

function compareAndWriteCdb(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x89;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c[13] = blocks;
  return c;
}

function senseText(r: { status: number; sense?: Buffer }): string {
  if (!r.sense || r.sense.length < 14) return `status ${r.status}`;
  const s = r.sense;
  const fixed = (s[0] & 0x7f) === 0x70 || (s[0] & 0x7f) === 0x71;
  const [key, asc, ascq] = fixed ? [s[2] & 0x0f, s[12], s[13]] : [s[1] & 0x0f, s[2], s[3]];
  return `${key.toString(16)}/${asc.toString(16).padStart(2, '0')}/${ascq.toString(16).padStart(2, '0')}`;
}

/** Run the heartbeats alone (no streams) or under the streams, until the deadline. */
export async function runAtsLoad(t: AtsLoadTarget, o: AtsLoadOptions): Promise<AtsLoadResult> {
  const name = o.initiatorName ?? 'iqn.2026-11.org.xcopyd:ats-load';
  const bs = t.blockSize;
  const result: AtsLoadResult = { ats: stats([]), atsFailures: 0, xcopies: 0, xcopyBytes: 0, wuts: 0, wutBytes: 0, copyErrors: [] };
  const sessions: TestInitiator[] = [];
  const warmup = o.warmupMs ?? 0;
  const start = Date.now();
  const stopAt = start + warmup + o.durationMs;
  const note = (what: string) => {
    if (result.copyErrors.length < 50) result.copyErrors.push(what);
  };
  try {
    const hb = await login(t, name);
    sessions.push(hb);
    const streams: Array<Promise<void>> = [];

    const xcopySlots = Math.max(1, Math.floor(t.xcopy.bytes / o.xcopyBytes));
    for (let i = 0; i < o.xcopyStreams; i++) {
      const c = await login(t, name);
      sessions.push(c);
      streams.push((async () => {
        const blocks = o.xcopyBytes / bs;
        for (let n = 0; Date.now() < stopAt; n++) {
          const slot = (i + n * o.xcopyStreams) % xcopySlots;
          const lba = (slot * o.xcopyBytes) / bs;
          const params = lid1([e4(Buffer.from(t.xcopy.srcNaa, 'hex')), e4(Buffer.from(t.xcopy.dstNaa, 'hex'))], [b2b(0, 1, blocks, lba, lba)]);
          const r = await c.command(t.xcopy.dstLun, xcopyCdb(0, params.length), { dataOut: params, timeoutMs: 120000 });
          if (r.status === 0) {
            result.xcopies++;
            result.xcopyBytes += o.xcopyBytes;
          } else note(`XCOPY ${senseText(r)}`);
        }
      })());
    }

    const wutSlots = Math.max(1, Math.floor(t.odx.bytes / o.wutBytes));
    for (let i = 0; i < o.wutStreams; i++) {
      const c = await login(t, name);
      sessions.push(c);
      streams.push((async () => {
        const blocks = o.wutBytes / bs;
        for (let n = 0; Date.now() < stopAt; n++) {
          const lba = (((i + n * o.wutStreams) % wutSlots) * o.wutBytes) / bs;
          const listId = n * 2;
          const pp = ptParams([[lba, blocks]], { inactivity: 0 });
          const pt = await c.command(t.odx.srcLun, populateTokenCdb(listId, pp.length), { dataOut: pp, timeoutMs: 120000 });
          if (pt.status !== 0) {
            note(`PT ${senseText(pt)}`);
            continue;
          }
          const info = await c.command(t.odx.srcLun, rrtiCdb(listId), { read: 4096 });
          const token = info.status === 0 ? parseRrti(info.data).token : undefined;
          if (!token) {
            note(`RRTI ${senseText(info)}`);
            continue;
          }
          const wp = wutParams(token, [[lba, blocks]]);
          const w = await c.command(t.odx.dstLun, writeUsingTokenCdb(listId + 1, wp.length), { dataOut: wp, timeoutMs: 120000 });
          if (w.status === 0) {
            result.wuts++;
            result.wutBytes += o.wutBytes;
          } else {
            note(`WUT ${senseText(w)}`);
            const info2 = await c.command(t.odx.dstLun, rrtiCdb(listId + 1), { read: 4096 });
            if (info2.status === 0) result.wutBytes += Number(parseRrti(info2.data).transferCount) * bs;
          }
        }
      })());
    }

    // Heartbeats: the block holds A or B; each COMPARE AND WRITE swaps it.
    const a = Buffer.alloc(bs, 0xa5);
    const b = Buffer.alloc(bs, 0x5a);
    const lba = 8;
    const write = Buffer.alloc(16);
    write[0] = 0x8a;
    write.writeBigUInt64BE(BigInt(lba), 2);
    write.writeUInt32BE(1, 10);
    const w0 = await hb.command(t.atsLun, write, { dataOut: a });
    if (w0.status !== 0) throw new Error(`heartbeat block write: ${senseText(w0)}`);
    let current = a;
    const samples: number[] = [];
    const countFrom = start + warmup;
    const interval = o.intervalMs ?? 10;
    while (Date.now() < stopAt) {
      if (interval > 0) await new Promise((resolve) => setTimeout(resolve, interval));
      const next = current === a ? b : a;
      const t0 = process.hrtime.bigint();
      const r = await hb.command(t.atsLun, compareAndWriteCdb(lba, 1), { dataOut: Buffer.concat([current, next]), timeoutMs: 60000 });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (Date.now() >= countFrom) samples.push(ms);
      if (r.status === 0) current = next;
      else {
        result.atsFailures++;
        if (result.atsFailures > 5) throw new Error(`heartbeats failing: ${senseText(r)}`);
      }
    }
    result.ats = stats(samples);
    await Promise.all(streams);
  } finally {
    for (const s of sessions) s.close();
  }
  return result;
}
