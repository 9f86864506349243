/**
 * The guided fuzzing loop (runs inside the worker, worker.ts): libFuzzer's
 * scheme in a few hundred lines. Inputs are bytes; each target decodes its
 * own structure from them (target.ts). An input that reaches a block of the
 * project's code no earlier input reached, or runs a block a different
 * power of two of times, joins the corpus; new inputs are mutations of
 * corpus entries (bit flips, bytes, big-endian interesting values,
 * arithmetic, insert/erase/copy of ranges, crossover, dictionary tokens) or,
 * now and then, structured inputs from the target's fast-check generator.
 *
 * Coverage is read after a batch of inputs (takePreciseCoverage costs about
 * a millisecond); when a batch reaches a new block its inputs are run again
 * one by one to find which did. Every tenth batch runs singly, so count
 * buckets are seen too.
 */
import crypto from 'node:crypto';
import fc from 'fast-check';
import { BlockCoverage, CoverageMap, type Segment } from './coverage';
import type { FuzzTarget } from './target';

export interface EngineOptions {
  /** Wall-clock budget (ms) of the fuzzing phase (the corpus replay is not counted). */
  ms: number;
  /** Upper bound on executions of the fuzzing phase. */
  maxExecs: number;
  /** End the fuzzing phase at the first finding. */
  stopOnFinding?: boolean;
  seed: number;
  /** Called before each execution (the watchdog's view of the current input). */
  onExec?(input: Buffer, execs: number): void;
  /** Called for each input that joined the corpus. */
  onNew?(input: Buffer): void;
}

export interface Finding {
  input: string; // hex
  message: string;
}

export interface EngineReport {
  target: string;
  execs: number;
  replayed: number;
  ms: number;
  corpus: number;
  added: number;
  /** Characters x count buckets the corpus covers. */
  features: number;
  /** Block boundaries whose position ran, of those V8 reported (see coverage.ts). */
  blocks: number;
  knownBlocks?: number;
  /** Blocks hit per file (project-relative path). */
  perFile: Record<string, number>;
  findings: Finding[];
  /** Batched rounds, those that reached a new block, and those whose new block no single input reached again. */
  batches?: { batches: number; fresh: number; notReproduced: number };
  /** What ran, as BlockCoverage.portable (to compare runs). */
  portable?: ReturnType<BlockCoverage['portable']>;
  /** Time spent in the target and in reading coverage. */
  execMs?: number;
  coverageMs?: number;
  /** Inputs of the corpus at the end (hex), for saving or minimizing. */
  corpusHex?: string[];
}

/** A small deterministic PRNG (xorshift128+ over two 32-bit halves is enough here: mulberry32). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0);
  }
  below(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }
}

const INTERESTING_8 = [0, 1, 2, 3, 4, 7, 8, 0x0f, 0x10, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff];
const INTERESTING_16 = [0, 1, 8, 0x10, 0x1e, 0x20, 0x30, 0x40, 0x1f8, 0x200, 0x218, 0x7ff, 0x800, 0x1000, 0x2000, 0x7fff, 0x8000, 0xfffe, 0xffff];
const INTERESTING_32 = [0, 1, 0x7ff, 0x800, 0x10000, 0xffffff, 0x1000000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

export class Mutator {
  constructor(
    private readonly rng: Rng,
    private readonly maxLen: number,
    private readonly dict: Buffer[],
  ) {}

  mutate(base: Buffer, other: () => Buffer | undefined): Buffer {
    let b: Buffer = Buffer.from(base);
    const n = 1 + this.rng.below(this.rng.chance(0.5) ? 2 : 6);
    for (let i = 0; i < n; i++) b = this.one(b, other);
    return b.length > this.maxLen ? b.subarray(0, this.maxLen) : b;
  }

  private at(b: Buffer, width = 1): number {
    return this.rng.below(Math.max(1, b.length - width + 1));
  }

  private one(b: Buffer, other: () => Buffer | undefined): Buffer {
    const r = this.rng;
    if (b.length === 0) return Buffer.from([r.below(256)]);
    switch (r.below(13)) {
      case 0: { // bit flip
        const c = Buffer.from(b);
        c[this.at(c)] ^= 1 << r.below(8);
        return c;
      }
      case 1: { // random byte
        const c = Buffer.from(b);
        c[this.at(c)] = r.below(256);
        return c;
      }
      case 2: { // interesting 8/16/32, big-endian mostly (SCSI and iSCSI are big-endian)
        const c = Buffer.from(b);
        const w = [1, 2, 4][r.below(3)];
        if (c.length < w) return c;
        const o = this.at(c, w);
        if (w === 1) c[o] = INTERESTING_8[r.below(INTERESTING_8.length)];
        else if (w === 2) r.chance(0.8) ? c.writeUInt16BE(INTERESTING_16[r.below(INTERESTING_16.length)], o) : c.writeUInt16LE(INTERESTING_16[r.below(INTERESTING_16.length)], o);
        else r.chance(0.8) ? c.writeUInt32BE(INTERESTING_32[r.below(INTERESTING_32.length)], o) : c.writeUInt32LE(INTERESTING_32[r.below(INTERESTING_32.length)], o);
        return c;
      }
      case 3: { // arithmetic on a big-endian 1/2/4-byte field
        const c = Buffer.from(b);
        const w = [1, 2, 4][r.below(3)];
        if (c.length < w) return c;
        const o = this.at(c, w);
        const d = (1 + r.below(16)) * (r.chance(0.5) ? 1 : -1);
        if (w === 1) c[o] = (c[o] + d) & 0xff;
        else if (w === 2) c.writeUInt16BE((c.readUInt16BE(o) + d) & 0xffff, o);
        else c.writeUInt32BE((c.readUInt32BE(o) + d) >>> 0, o);
        return c;
      }
      case 4: { // erase a range
        const o = this.at(b);
        const len = 1 + r.below(Math.min(64, b.length - o));
        return Buffer.concat([b.subarray(0, o), b.subarray(o + len)]);
      }
      case 5: { // insert random or repeated bytes
        const o = r.below(b.length + 1);
        const len = 1 + r.below(r.chance(0.8) ? 8 : 128);
        const ins = r.chance(0.5) ? Buffer.alloc(len, r.below(256)) : Buffer.from(Array.from({ length: len }, () => r.below(256)));
        return Buffer.concat([b.subarray(0, o), ins, b.subarray(o)]);
      }
      case 6: { // copy a range over another place
        const from = this.at(b);
        const len = 1 + r.below(Math.min(64, b.length - from));
        const to = this.at(b);
        const c = Buffer.from(b);
        b.copy(c, to, from, from + Math.min(len, c.length - to));
        return c;
      }
      case 7: { // duplicate a range (grows lists of descriptors)
        const from = this.at(b);
        const len = 1 + r.below(Math.min(128, b.length - from));
        const to = r.below(b.length + 1);
        return Buffer.concat([b.subarray(0, to), b.subarray(from, from + len), b.subarray(to)]);
      }
      case 8: { // crossover with another corpus entry
        const o = other();
        if (!o || o.length === 0) return b;
        const cut = r.below(b.length + 1);
        const from = r.below(o.length);
        return r.chance(0.5)
          ? Buffer.concat([b.subarray(0, cut), o.subarray(from)])
          : (() => {
              const c = Buffer.from(b);
              o.copy(c, this.at(c), from, from + 1 + r.below(Math.min(64, o.length - from)));
              return c;
            })();
      }
      case 9: { // dictionary token: insert or overwrite
        if (this.dict.length === 0) return b;
        const t = this.dict[r.below(this.dict.length)];
        if (r.chance(0.5)) {
          const o = r.below(b.length + 1);
          return Buffer.concat([b.subarray(0, o), t, b.subarray(o)]);
        }
        const c = Buffer.from(b);
        t.copy(c, this.at(c));
        return c;
      }
      case 10: { // truncate
        return b.subarray(0, r.below(b.length));
      }
      case 11: { // shuffle a few bytes
        const c = Buffer.from(b);
        const o = this.at(c);
        const len = Math.min(8, c.length - o);
        for (let i = len - 1; i > 0; i--) {
          const j = r.below(i + 1);
          [c[o + i], c[o + j]] = [c[o + j], c[o + i]];
        }
        return c;
      }
      default: { // set a run of bytes to 00 or FF (clears or saturates a field)
        const c = Buffer.from(b);
        const o = this.at(c);
        c.fill(r.chance(0.5) ? 0 : 0xff, o, o + 1 + r.below(Math.min(8, c.length - o)));
        return c;
      }
    }
  }
}

interface Entry {
  input: Buffer;
  /** Features this entry brought (a rough measure of its value, for scheduling). */
  gain: number;
  picked: number;
}

function keyOf(b: Buffer): string {
  return crypto.createHash('sha1').update(b).digest('hex');
}

/**
 * Replay `seeds` (each checked by the oracle, their coverage the start), then
 * fuzz until the time or execution budget is spent. Findings are collected,
 * not thrown; a target keeps running after one (up to 20 kept).
 */
export async function fuzz(target: FuzzTarget, seeds: Buffer[], o: EngineOptions): Promise<EngineReport> {
  const cov = new BlockCoverage(target.coverage);
  const rng = new Rng(o.seed);
  const mut = new Mutator(rng, target.maxLen, target.dict ?? []);
  const corpus: Entry[] = [];
  const seen = new Set<string>();
  const features = new CoverageMap();
  let featureCount = 0;
  const findings: Finding[] = [];
  const findingKinds = new Set<string>();
  let execs = 0;
  let added = 0;
  let execNs = 0n;
  let covNs = 0n;
  const take = (): Segment[] => {
    const t = process.hrtime.bigint();
    const f = cov.take();
    covNs += process.hrtime.bigint() - t;
    return f;
  };

  const execOne = async (input: Buffer): Promise<void> => {
    o.onExec?.(input, execs);
    execs++;
    let bad: string | null;
    const t = process.hrtime.bigint();
    try {
      bad = await target.run(input);
    } catch (err) {
      bad = `threw: ${(err as Error)?.stack ?? String(err)}`;
    }
    execNs += process.hrtime.bigint() - t;
    if (bad) {
      // One finding per first line (the kind of failure), so one bug does not fill the report.
      const kind = bad.split('\n')[0].replace(/[0-9a-f]{8,}/g, '…').slice(0, 160);
      if (!findingKinds.has(kind) && findings.length < 20) {
        findingKinds.add(kind);
        findings.push({ input: input.toString('hex'), message: bad.slice(0, 4000) });
      }
    }
  };

  /** Run singly and keep when new; returns true when it was new. */
  const tryOne = async (input: Buffer, force = false): Promise<boolean> => {
    await execOne(input);
    const gain = features.gain(take(), true);
    featureCount += gain;
    const k = keyOf(input);
    if ((gain > 0 || force) && !seen.has(k)) {
      seen.add(k);
      corpus.push({ input, gain: Math.max(1, gain), picked: 0 });
      if (gain > 0 && !force) {
        added++;
        o.onNew?.(input);
      }
      return true;
    }
    return false;
  };

  cov.start();
  try {
    take();
    // Replay: every seed runs under the oracle; every seed stays in the corpus (they are the structure to mutate from).
    for (const s of seeds) await tryOne(s.length > target.maxLen ? s.subarray(0, target.maxLen) : s, true);
    const replayed = execs;
    if (corpus.length === 0) corpus.push({ input: Buffer.alloc(0), gain: 1, picked: 0 });

    const pick = (): Entry => {
      // Mostly the recent and the productive; sometimes anything.
      const e = rng.chance(0.3) ? corpus[corpus.length - 1 - rng.below(Math.min(16, corpus.length))] : corpus[rng.below(corpus.length)];
      const f = corpus[rng.below(corpus.length)];
      const best = f.gain / (1 + f.picked) > e.gain / (1 + e.picked) ? f : e;
      best.picked++;
      return best;
    };

    const t0 = Date.now();
    let batch = 1;
    let round = 0;
    let batches = 0;
    let freshBatches = 0;
    let wasted = 0;
    let fcSeed = o.seed;
    while (Date.now() - t0 < o.ms && execs - replayed < o.maxExecs && !(o.stopOnFinding && findings.length)) {
      round++;
      const inputs: Buffer[] = [];
      const n = round % 10 === 0 ? 1 : batch;
      for (let i = 0; i < n; i++) {
        const g = target.generate && rng.chance(target.generateRate ?? 0.05) ? fc.sample(target.generate, { seed: fcSeed++, numRuns: 1 })[0] : undefined;
        if (g) {
          inputs.push(g.length > target.maxLen ? g.subarray(0, target.maxLen) : g);
        } else {
          inputs.push(mut.mutate(pick().input, () => corpus[rng.below(corpus.length)]?.input));
        }
      }
      if (n === 1) {
        if (await tryOne(inputs[0])) batch = 1;
        else batch = Math.min(32, batch * 2);
        continue;
      }
      batches++;
      for (const x of inputs) await execOne(x);
      // A batch is worth a closer look when it covered a character nothing covered before
      // (count buckets are left to the single rounds: summed counts would mislead).
      const fresh = features.gain(take(), false, false);
      if (fresh === 0) {
        batch = Math.min(32, batch * 2);
        continue;
      }
      freshBatches++;
      batch = 1;
      let any = false;
      for (const x of inputs) any = (await tryOne(x)) || any;
      if (!any) {
        wasted++;
        if (process.env.XCOPYD_GUIDED_DEBUG) console.error(`batch of ${inputs.length}: ${fresh} new characters not reproduced singly`);
      }
    }

    const b = cov.blocks();
    return {
      target: target.name,
      execs,
      replayed,
      ms: Date.now() - t0,
      corpus: corpus.length,
      added,
      features: featureCount,
      blocks: b.covered,
      knownBlocks: b.known,
      perFile: b.perFile,
      findings,
      batches: { batches, fresh: freshBatches, notReproduced: wasted },
      portable: cov.portable(),
      execMs: Number(execNs / 1_000_000n),
      coverageMs: Number(covNs / 1_000_000n),
      corpusHex: corpus.map((e) => e.input.toString('hex')),
    };
  } finally {
    cov.stop();
  }
}

/**
 * Greedy minimization: a small subset (smaller inputs first among equals)
 * that keeps every feature (block and count bucket) the whole set reaches,
 * so the inputs that loop more often over a descriptor list stay too.
 */
export async function minimize(target: FuzzTarget, inputs: Buffer[], baseline: Buffer[] = []): Promise<{ kept: Buffer[]; features: number }> {
  const cov = new BlockCoverage(target.coverage);
  cov.start();
  try {
    cov.take();
    const acc = new CoverageMap();
    // What the built-in seeds reach needs no file: they run every time anyway.
    for (const input of baseline) {
      try {
        await target.run(input);
      } catch {
        /* measured all the same */
      }
    }
    let features = acc.gain(cov.take(), true);
    const base = new Set(baseline.map((b) => b.toString('hex')));
    const per: Array<{ input: Buffer; segs: Segment[]; n: number }> = [];
    for (const input of inputs.filter((b) => !base.has(b.toString('hex')))) {
      try {
        await target.run(input);
      } catch {
        /* a finding; still measured */
      }
      const segs = cov.take();
      per.push({ input, segs, n: new CoverageMap().gain(segs, false) });
    }
    // One pass, richest first (smaller first among equals): keep an input when it adds a feature.
    per.sort((a, b) => b.n - a.n || a.input.length - b.input.length);
    const kept: Buffer[] = [];
    for (const p of per) {
      const g = acc.gain(p.segs, true);
      if (g > 0) {
        kept.push(p.input);
        features += g;
      }
    }
    return { kept, features };
  } finally {
    cov.stop();
  }
}
