/**
 * Coverage of the project's own code (iscsi/, scsi/, src/) from V8's precise
 * block coverage (node:inspector, Profiler.startPreciseCoverage with call
 * counts): the feedback of the guided fuzzer.
 *
 * takePreciseCoverage resets the counters, so each call returns what ran
 * since the previous one. V8 reports nested ranges and drops a nested range
 * whose count equals its parent's, so the ranges themselves are not stable
 * keys (the same code gives different ranges for different counts). What is
 * stable is the count at each source position (the innermost range holding
 * it): a take becomes covered segments with a count, and the accumulated
 * state is, per script, a bit mask per character of the count buckets seen
 * (1, 2-3, 4-7, ... as AFL/libFuzzer bucket edge counts). An input is new
 * when it covers a character not covered before, or in a bucket not seen
 * there before (a loop over one more descriptor).
 *
 * For reports, a "block" is a range boundary V8 ever reported (start or end
 * of a block): `blocks` counts those whose position is covered.
 */
import inspector from 'node:inspector';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');
/** The code whose coverage counts: the project's, not the tests' nor node_modules'. */
export const PROJECT_DIRS = ['iscsi', 'scsi', 'src'];

/** Project-relative path of a script URL or path; the worker's transpiled copy maps back onto the project. */
export function projectPath(url: string): string {
  const p = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  return path.relative(ROOT, p).replace(/\.(ts|js)$/, '');
}

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  scriptId: string;
  url: string;
  functions: Array<{ functionName: string; ranges: Range[]; isBlockCoverage: boolean }>;
}

/** A covered piece of one script in one take. */
export interface Segment {
  script: number;
  start: number;
  end: number;
  /** 1 << bucket of the count. */
  bit: number;
}

const bucketBit = (count: number): number => 1 << Math.min(7, 31 - Math.clz32(count));

class ScriptState {
  /** Per character: the count buckets seen (bit mask). */
  bits = new Uint8Array(0);
  readonly boundaries = new Set<number>();
  constructor(readonly file: string) {}
  grow(n: number): void {
    if (n <= this.bits.length) return;
    const b = new Uint8Array(Math.max(n, this.bits.length * 2));
    b.set(this.bits);
    this.bits = b;
  }
}

/** Per character bit masks of count buckets, as the fuzzer's corpus and minimizer keep them. */
export class CoverageMap {
  readonly scripts: ScriptState[] = [];

  constructor(files: string[] = []) {
    for (const f of files) this.scripts.push(new ScriptState(f));
  }

  /** Features the segments add (characters x buckets not set yet); with `apply` they are set. */
  gain(segs: readonly Segment[], apply: boolean, bucketsToo = true): number {
    let n = 0;
    for (const s of segs) {
      while (this.scripts.length <= s.script) this.scripts.push(new ScriptState('?'));
      const st = this.scripts[s.script];
      st.grow(s.end);
      const bits = st.bits;
      for (let i = s.start; i < s.end; i++) {
        const old = bits[i];
        if (bucketsToo ? (old & s.bit) === 0 : old === 0) {
          n++;
          if (apply) bits[i] = old | s.bit;
        }
      }
    }
    return n;
  }
}

export class BlockCoverage {
  private readonly session = new inspector.Session();
  private readonly ids = new Map<string, number>();
  /** What ran since start, accumulated over all takes (for reports). */
  readonly total: CoverageMap = new CoverageMap();
  private started = false;
  private readonly dirs: string[];

  /** `dirs`: project-relative directories whose scripts count (default PROJECT_DIRS). */
  constructor(dirs: readonly string[] = PROJECT_DIRS) {
    this.dirs = dirs.map((d) => path.join(ROOT, d) + path.sep);
  }

  private counts(url: string): boolean {
    const p = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
    return this.dirs.some((d) => p.startsWith(d)) && !p.includes(`${path.sep}node_modules${path.sep}`);
  }

  start(): void {
    if (this.started) return;
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
    this.started = true;
  }

  stop(): void {
    if (!this.started) return;
    this.post('Profiler.stopPreciseCoverage');
    this.post('Profiler.disable');
    this.session.disconnect();
    this.started = false;
  }

  /** Covered segments of what ran since the last call (also added to `total`). */
  take(): Segment[] {
    const r = this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    const out: Segment[] = [];
    for (const s of r.result) {
      if (!this.counts(s.url)) continue;
      let id = this.ids.get(s.url);
      if (id === undefined) {
        id = this.ids.size;
        this.ids.set(s.url, id);
        while (this.total.scripts.length <= id) this.total.scripts.push(new ScriptState('?'));
        this.total.scripts[id] = new ScriptState(projectPath(s.url));
      }
      const st = this.total.scripts[id];
      // All ranges of the script at once: a function nested in another that ran, but that did not
      // run itself, is a range of count 0 inside its parent's (separate function entries).
      const ranges: Range[] = [];
      for (const f of s.functions) for (const x of f.ranges) ranges.push(x);
      // Parents before children; the count of a position is its innermost range's.
      ranges.sort((x, y) => x.startOffset - y.startOffset || y.endOffset - x.endOffset);
      const stack: Range[] = [];
      let pos = 0;
      const emit = (from: number, to: number, count: number): void => {
        if (to > from && count > 0) out.push({ script: id!, start: from, end: to, bit: bucketBit(count) });
      };
      for (const r of ranges) {
        st.boundaries.add(r.startOffset);
        st.boundaries.add(r.endOffset);
        while (stack.length && stack[stack.length - 1].endOffset <= r.startOffset) {
          const top = stack.pop()!;
          emit(pos, top.endOffset, top.count);
          pos = top.endOffset;
        }
        if (stack.length) emit(pos, r.startOffset, stack[stack.length - 1].count);
        pos = r.startOffset;
        stack.push(r);
      }
      while (stack.length) {
        const top = stack.pop()!;
        emit(pos, top.endOffset, top.count);
        pos = top.endOffset;
      }
    }
    this.total.gain(out, true);
    return out;
  }

  /** Script count known so far. */
  get fileNames(): string[] {
    return this.total.scripts.map((s) => s.file);
  }

  /** Covered block boundaries per file (boundaries whose character is covered), and all known. */
  blocks(map: CoverageMap = this.total): { covered: number; known: number; perFile: Record<string, number> } {
    let covered = 0;
    let known = 0;
    const perFile: Record<string, number> = {};
    for (const [i, st] of this.total.scripts.entries()) {
      const bits = map.scripts[i]?.bits ?? new Uint8Array(0);
      let n = 0;
      for (const b of st.boundaries) if (b < bits.length && bits[b] !== 0) n++;
      known += st.boundaries.size;
      covered += n;
      if (n) perFile[st.file] = (perFile[st.file] ?? 0) + n;
    }
    return { covered, known, perFile };
  }

  /**
   * Portable form of `map` (default: everything so far) for comparing runs
   * (compare.ts): per file, the covered intervals and the boundaries seen.
   * The same under ts-jest (.ts) and in the worker (transpiled .js): both
   * emit the same JavaScript (isolatedModules), offsets included.
   */
  portable(map: CoverageMap = this.total): Record<string, { covered: Array<[number, number]>; boundaries: number[] }> {
    const out: Record<string, { covered: Array<[number, number]>; boundaries: number[] }> = {};
    for (const [i, st] of this.total.scripts.entries()) {
      const bits = map.scripts[i]?.bits ?? new Uint8Array(0);
      const covered: Array<[number, number]> = [];
      let from = -1;
      for (let k = 0; k <= bits.length; k++) {
        const on = k < bits.length && bits[k] !== 0;
        if (on && from < 0) from = k;
        if (!on && from >= 0) {
          covered.push([from, k]);
          from = -1;
        }
      }
      const e = (out[st.file] ??= { covered: [], boundaries: [] });
      e.covered.push(...covered);
      e.boundaries.push(...st.boundaries);
    }
    return out;
  }

  private post(method: string, params?: object): unknown {
    let result: unknown;
    let error: Error | null = null;
    // The in-process session answers synchronously.
    this.session.post(method, params ?? {}, (err, res) => {
      error = err;
      result = res;
    });
    if (error) throw error;
    return result;
  }
}
