/**
 * Load and soak (issue 7), outside CI: the real daemon (src/main.ts as a
 * child process, test/interop/harness.ts) under 32 sessions at queue depth
 * 32 of mixed verified reads and writes for a bounded time, while an
 * EXTENDED COPY (LID4) and an ODX token copy (POPULATE TOKEN + WRITE USING
 * TOKEN) run back to back on LUN 1 and are verified after each round.
 *
 * Each session owns 8 MiB of LUN 0 and keeps 32 commands in flight on
 * ranges that do not overlap one another, so every read has one right
 * answer: the blocks' last acknowledged writes (stamped session/LBA/version).
 * The daemon's RSS is sampled from /proc every second.
 *
 *   npx ts-node --transpile-only test/soak/load.ts [seconds]   (default 120; XCOPYD_SOAK_SECONDS)
 *
 * Prints I/Os, errors, miscompares, copies, peak RSS and RSS growth (from
 * the end of warm-up to the end of the run); exits non-zero on any error or
 * miscompare. See test/soak/README.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { startTarget, sleep, makeRunDir } from '../interop/harness';
import { Prng, TestInitiator, cdb, clearUnitAttentions, openSession, startCommand } from '../support/initiator';
import type { Pdu } from '../../iscsi/pdu';
import { b2b, e4, lid4, xcopyCdb } from '../scsi/copy/helpers';
import { populateTokenCdb, ptParams, rrtiCdb, parseRrti, wutParams, writeUsingTokenCdb } from '../odx/odx';
import { naaOf } from '../support/host-xcopy';

const SECONDS = Number(process.argv[2] ?? process.env.XCOPYD_SOAK_SECONDS ?? 120);
const SESSIONS = Number(process.env.XCOPYD_SOAK_SESSIONS ?? 32);
const QD = Number(process.env.XCOPYD_SOAK_QD ?? 32);
const WARMUP_S = 10;
const BS = 512;
const MiB = 1024 * 1024;
const REGION = (8 * MiB) / BS; // blocks per session on LUN 0
const COPY_SRC = 0; // LUN 1: [0, 64 MiB) source, [128, 192) EXTENDED COPY destination, [256, 320) token destination
const COPY_BLOCKS = (64 * MiB) / BS;
const XCOPY_DST = (128 * MiB) / BS;
const TOKEN_DST = (256 * MiB) / BS;

const totals = { reads: 0, writes: 0, bytes: 0, errors: 0, miscompares: 0, copies: 0, tokenCopies: 0, copyMiscompares: 0 };
const errors: string[] = [];
function fail(what: string): void {
  totals.errors++;
  if (errors.length < 20) errors.push(what);
}

/** A block of session `s`, LBA `lba`, version `v`: a header and a cheap filler. */
function block(s: number, lba: number, v: number, out: Buffer, at: number): void {
  out.writeUInt32BE(0x534f414b, at);
  out.writeUInt32BE(s, at + 4);
  out.writeUInt32BE(lba, at + 8);
  out.writeUInt32BE(v, at + 12);
  out.fill((s * 31 + lba * 7 + v * 13) & 0xff, at + 16, at + BS);
}

/** Pipelined commands on one session: a reader loop dispatches Data-In / R2T / responses by ITT. */
class Pipe {
  private readonly pending = new Map<number, { chunks: Buffer[]; dataOut?: Buffer; resolve: (r: { status: number; sense?: Buffer; data: Buffer }) => void; reject: (e: Error) => void }>();
  private closed = false;

  constructor(readonly c: TestInitiator) {
    void this.readLoop();
  }

  private async readLoop(): Promise<void> {
    for (;;) {
      const p: Pdu | null = await this.c.next(60_000);
      if (!p) {
        this.closed = true;
        for (const w of this.pending.values()) w.reject(new Error('connection closed'));
        this.pending.clear();
        return;
      }
      const op = p.bhs[0] & 0x3f;
      const itt = p.bhs.readUInt32BE(16);
      if (op === 0x20 && itt === 0xffffffff) {
        this.c.nopOut(p.bhs.readUInt32BE(20), 0xffffffff, Buffer.alloc(0), true);
        continue;
      }
      const w = this.pending.get(itt);
      if (!w) continue;
      if (op === 0x31 && w.dataOut) {
        const ttt = p.bhs.readUInt32BE(20);
        const off = p.bhs.readUInt32BE(40);
        const len = p.bhs.readUInt32BE(44);
        const mrdsl = 65536;
        let sn = 0;
        for (let o = off; o < off + len; o += mrdsl) this.c.dataOut(itt, ttt, sn++, o, w.dataOut.subarray(o, Math.min(off + len, o + mrdsl)), o + mrdsl >= off + len);
      } else if (op === 0x25) {
        w.chunks.push(p.data);
        if (p.bhs[1] & 0x01) {
          this.pending.delete(itt);
          w.resolve({ status: p.bhs[3], data: Buffer.concat(w.chunks) });
        }
      } else if (op === 0x21) {
        this.pending.delete(itt);
        const sense = p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : undefined;
        w.resolve({ status: p.bhs[3], sense, data: Buffer.concat(w.chunks) });
      }
    }
  }

  command(lun: number, cdbBytes: Buffer, o: { read?: number; dataOut?: Buffer }): Promise<{ status: number; sense?: Buffer; data: Buffer }> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    const edtl = o.read ?? o.dataOut?.length ?? 0;
    const imm = o.dataOut ? o.dataOut.subarray(0, Math.min(65536, o.dataOut.length)) : undefined;
    return new Promise((resolve, reject) => {
      const itt = this.c.itt;
      this.pending.set(itt, { chunks: [], dataOut: o.dataOut, resolve, reject });
      // Everything beyond the immediate data is solicited by R2T (final: no unsolicited Data-Out).
      startCommand(this.c, lun, cdbBytes, { edtl, read: o.read !== undefined, write: !!o.dataOut, immediateData: imm, final: true });
    });
  }
}

async function sessionLoad(c: TestInitiator, s: number, deadline: number): Promise<void> {
  const pipe = new Pipe(c);
  const rng = new Prng(1000 + s);
  const first = s * REGION;
  const version = new Uint32Array(REGION); // 0 = not written yet
  const busy = new Uint8Array(REGION);
  const slot = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const n = rng.range(1, 128);
      let at = rng.int(REGION - n);
      let tries = 0;
      while (busy.subarray(at, at + n).some((b) => b) && tries++ < 20) at = rng.int(REGION - n);
      if (tries > 20) {
        await sleep(1);
        continue;
      }
      busy.fill(1, at, at + n);
      try {
        const written = version.subarray(at, at + n).every((v) => v > 0);
        if (!written || rng.chance(0.5)) {
          const data = Buffer.allocUnsafe(n * BS);
          const v = Array.from(version.subarray(at, at + n)).reduce((a, b) => Math.max(a, b), 0) + 1;
          for (let i = 0; i < n; i++) block(s, first + at + i, v, data, i * BS);
          const r = await pipe.command(0, cdb.write10(first + at, n), { dataOut: data });
          totals.writes++;
          totals.bytes += data.length;
          if (r.status !== 0) fail(`session ${s} write status ${r.status} ${r.sense?.toString('hex')}`);
          else version.fill(v, at, at + n);
        } else {
          const r = await pipe.command(0, cdb.read10(first + at, n), { read: n * BS });
          totals.reads++;
          totals.bytes += n * BS;
          if (r.status !== 0) {
            fail(`session ${s} read status ${r.status} ${r.sense?.toString('hex')}`);
          } else {
            const want = Buffer.allocUnsafe(n * BS);
            for (let i = 0; i < n; i++) block(s, first + at + i, version[at + i], want, i * BS);
            if (!want.equals(r.data)) {
              totals.miscompares++;
              if (errors.length < 20) errors.push(`session ${s} miscompare at LBA ${first + at} (+${n})`);
            }
          }
        }
      } catch (err) {
        fail(`session ${s}: ${(err as Error).message}`);
        return;
      } finally {
        busy.fill(0, at, at + n);
      }
    }
  };
  await Promise.all(Array.from({ length: QD }, slot));
}

async function compareRegions(c: TestInitiator, a: number, b: number): Promise<boolean> {
  for (let o = 0; o < COPY_BLOCKS; o += 16384) {
    const x = await c.command(1, cdb.read10(a + o, 16384), { read: 16384 * BS, timeoutMs: 60_000 });
    const y = await c.command(1, cdb.read10(b + o, 16384), { read: 16384 * BS, timeoutMs: 60_000 });
    if (x.status !== 0 || y.status !== 0 || !x.data.equals(y.data)) return false;
  }
  return true;
}

/** EXTENDED COPY(LID4, IMMED) of 64 MiB, polled to completion, destination compared; repeated. */
async function copyLoop(c: TestInitiator, deadline: number): Promise<void> {
  const n1 = await naaOf(c, 1);
  let listId = 1;
  while (Date.now() < deadline) {
    const segs = Array.from({ length: 32 }, (_, i) => b2b(0, 0, 4096, COPY_SRC + i * 4096, XCOPY_DST + i * 4096));
    const params = lid4([e4(n1)], segs, { listId, immed: true });
    const r = await c.command(1, xcopyCdb(1, params.length), { dataOut: params, timeoutMs: 60_000 });
    if (r.status !== 0) {
      fail(`EXTENDED COPY status ${r.status} ${r.sense?.toString('hex')}`);
      return;
    }
    for (;;) {
      const q = Buffer.alloc(16);
      q[0] = 0x84;
      q[1] = 0x05;
      q.writeUInt32BE(listId, 2);
      q.writeUInt32BE(1024, 10);
      const s = await c.command(1, q, { read: 1024 });
      if (s.status !== 0) {
        fail(`RECEIVE COPY STATUS ${s.status}`);
        return;
      }
      const st = s.data[5] & 0x7f;
      if (st === 0x01) break;
      if (st !== 0x11 && st !== 0x12) {
        fail(`copy ended with status ${st}`);
        return;
      }
      await sleep(50);
    }
    if (!(await compareRegions(c, COPY_SRC, XCOPY_DST))) totals.copyMiscompares++;
    totals.copies++;
    listId++;
  }
}

/** POPULATE TOKEN of the source, WRITE USING TOKEN to the token destination, compared; repeated. */
async function tokenLoop(c: TestInitiator, deadline: number): Promise<void> {
  let listId = 1000;
  while (Date.now() < deadline) {
    const pt = ptParams([[COPY_SRC, COPY_BLOCKS]]);
    const p = await c.command(1, populateTokenCdb(listId, pt.length), { dataOut: pt, timeoutMs: 60_000 });
    if (p.status !== 0) {
      fail(`POPULATE TOKEN status ${p.status} ${p.sense?.toString('hex')}`);
      return;
    }
    const info = parseRrti((await c.command(1, rrtiCdb(listId), { read: 4096 })).data);
    if (!info.token) {
      fail('no token');
      return;
    }
    const wut = wutParams(info.token, [[TOKEN_DST, COPY_BLOCKS]], { delTkn: true });
    const w = await c.command(1, writeUsingTokenCdb(listId + 1, wut.length), { dataOut: wut, timeoutMs: 60_000 });
    if (w.status !== 0) {
      fail(`WRITE USING TOKEN status ${w.status} ${w.sense?.toString('hex')}`);
      return;
    }
    if (!(await compareRegions(c, COPY_SRC, TOKEN_DST))) totals.copyMiscompares++;
    totals.tokenCopies++;
    listId += 2;
  }
}

function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function main(): Promise<number> {
  const runDir = makeRunDir('soak');
  const dataDir = path.join(runDir, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  // LUN 1's copy source: 64 MiB of random data, written into the file before the daemon opens it.
  const fd = fs.openSync(path.join(dataDir, 'lun1.img'), 'w');
  const chunk = Buffer.allocUnsafe(4 * MiB);
  for (let o = 0; o < COPY_BLOCKS * BS; o += chunk.length) fs.writeSync(fd, crypto.randomFillSync(chunk), 0, chunk.length, COPY_SRC * BS + o);
  fs.ftruncateSync(fd, 1024 * MiB);
  fs.closeSync(fd);

  const t = await startTarget({ name: 'soak', dataDir });
  console.log(`daemon pid ${t.pid} port ${t.port}, logs in ${runDir}; ${SESSIONS} sessions x QD ${QD} for ${SECONDS} s`);
  const samples: Array<[number, number]> = [];
  const t0 = Date.now();
  const sampler = setInterval(() => samples.push([(Date.now() - t0) / 1000, rssKiB(t.pid)]), 1000);
  const rssAtStart = rssKiB(t.pid);
  try {
    const clients = await Promise.all(
      Array.from({ length: SESSIONS }, (_, i) => openSession(t.port, { initiatorName: `iqn.2026-11.org.xcopyd:soak-${i}`, keys: { InitialR2T: 'Yes' } })),
    );
    for (const c of clients) await clearUnitAttentions(c, 0);
    const copier = await openSession(t.port, { initiatorName: 'iqn.2026-11.org.xcopyd:soak-copier' });
    const tokener = await openSession(t.port, { initiatorName: 'iqn.2026-11.org.xcopyd:soak-tokener' });
    for (const c of [copier, tokener]) await clearUnitAttentions(c, 1);
    const deadline = Date.now() + SECONDS * 1000;
    let last = { ...totals };
    const progress = setInterval(() => {
      const io = totals.reads + totals.writes - last.reads - last.writes;
      const mb = (totals.bytes - last.bytes) / MiB;
      last = { ...totals };
      console.log(`+${Math.round((Date.now() - t0) / 1000)}s ${io / 10} IOPS ${(mb / 10).toFixed(1)} MiB/s, copies ${totals.copies}, token copies ${totals.tokenCopies}, errors ${totals.errors}, miscompares ${totals.miscompares + totals.copyMiscompares}, RSS ${(rssKiB(t.pid) / 1024).toFixed(0)} MiB`);
    }, 10_000);
    await Promise.all([...clients.map((c, i) => sessionLoad(c, i, deadline)), copyLoop(copier, deadline), tokenLoop(tokener, deadline)]);
    clearInterval(progress);
    for (const c of [...clients, copier, tokener]) {
      try {
        await c.logout();
      } catch {
        /* counted above if it mattered */
      }
      c.close();
    }
  } finally {
    clearInterval(sampler);
    const stop = await t.stop();
    console.log(`daemon stopped: code ${stop.code} signal ${stop.signal} in ${stop.ms} ms`);
  }
  const warm = samples.filter(([s]) => s >= WARMUP_S);
  const peak = Math.max(...samples.map(([, r]) => r));
  const afterWarmup = warm.length ? warm[0][1] : rssAtStart;
  const end = samples.length ? samples[samples.length - 1][1] : 0;
  const ios = totals.reads + totals.writes;
  console.log('---- soak result ----');
  console.log(JSON.stringify({
    seconds: SECONDS, sessions: SESSIONS, queueDepth: QD,
    ios, reads: totals.reads, writes: totals.writes, iops: Math.round(ios / SECONDS), mibPerS: +(totals.bytes / MiB / SECONDS).toFixed(1),
    errors: totals.errors, miscompares: totals.miscompares, copies: totals.copies, tokenCopies: totals.tokenCopies, copyMiscompares: totals.copyMiscompares,
    rssAtStartMiB: +(rssAtStart / 1024).toFixed(1), rssAfterWarmupMiB: +(afterWarmup / 1024).toFixed(1), peakRssMiB: +(peak / 1024).toFixed(1),
    endRssMiB: +(end / 1024).toFixed(1), rssGrowthAfterWarmupMiB: +((end - afterWarmup) / 1024).toFixed(1),
    // The lowest RSS of each 30 s window: a GC sawtooth has flat minima, a leak's climb.
    rssMinPer30sMiB: Array.from({ length: Math.ceil(SECONDS / 30) }, (_, i) => warm.filter(([t]) => t >= WARMUP_S + i * 30 && t < WARMUP_S + (i + 1) * 30).map(([, r]) => r))
      .filter((w) => w.length).map((w) => +(Math.min(...w) / 1024).toFixed(1)),
  }, null, 1));
  if (errors.length) console.log(`first errors:\n  ${errors.join('\n  ')}`);
  return totals.errors || totals.miscompares || totals.copyMiscompares ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
