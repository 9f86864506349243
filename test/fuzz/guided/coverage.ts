/**
 * Block coverage of the project's own code (iscsi/, scsi/, src/) from V8's
 * precise coverage (node:inspector, Profiler.startPreciseCoverage with call
 * counts and block granularity): the feedback of the guided fuzzer.
 *
 * takePreciseCoverage resets the counters, so each call returns what ran
 * since the previous one. A feature is one block (script, start, end) with
 * its execution count in a log2 bucket (1, 2-3, 4-7, ...), as AFL and
 * libFuzzer count edges: a new block, or a block run a different order of
 * magnitude of times (a loop over one more descriptor), makes an input
 * interesting.
 */
import inspector from 'node:inspector';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DIRS = ['iscsi', 'scsi', 'src'].map((d) => path.join(ROOT, d) + path.sep);

/** Project-relative path of a script URL or path; the worker's transpiled copy maps back onto the project. */
function projectPath(url: string): string {
  const p = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const m = /\/(iscsi|scsi|src)\/.*$/.exec(p);
  return m ? m[0].slice(1) : path.relative(ROOT, p);
}

/** True for a script URL or path of the project's non-test code. */
function isProjectScript(url: string): boolean {
  const p = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  return DIRS.some((d) => p.startsWith(d)) && !p.includes(`${path.sep}node_modules${path.sep}`);
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

export class BlockCoverage {
  private readonly session = new inspector.Session();
  /** Per script URL: a small id, so features stay short strings. */
  private readonly scriptIds = new Map<string, number>();
  private readonly urls: string[] = [];
  /** Every block seen at all (hit or not) per file: the denominator of the report. */
  readonly known = new Set<string>();
  private started = false;

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

  /** Features of what ran since the last call: "script:start:end:bucket" of every block run at least once. */
  take(): string[] {
    const r = this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    const out: string[] = [];
    for (const s of r.result) {
      if (!isProjectScript(s.url)) continue;
      let id = this.scriptIds.get(s.url);
      if (id === undefined) {
        id = this.scriptIds.size;
        this.scriptIds.set(s.url, id);
        this.urls.push(s.url);
      }
      for (const f of s.functions) {
        for (const b of f.ranges) {
          const block = `${id}:${b.startOffset}:${b.endOffset}`;
          this.known.add(block);
          if (b.count > 0) out.push(`${block}:${31 - Math.clz32(b.count)}`);
        }
      }
    }
    return out;
  }

  /** The file (relative to the project) of a feature, for per-file reports. */
  fileOf(feature: string): string {
    const url = this.urls[Number(feature.slice(0, feature.indexOf(':')))];
    return url === undefined ? '?' : projectPath(url);
  }

  /**
   * A block as "iscsi/framer:120:180" (path without extension): the same key
   * under ts-jest (.ts paths) and in the worker (transpiled .js), whose
   * emitted code is the same (isolatedModules), so runs can be compared.
   */
  portable(feature: string): string {
    const [, start, end] = feature.split(':');
    return `${this.fileOf(feature).replace(/\.(ts|js)$/, '')}:${start}:${end}`;
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

/** Blocks (features without their count bucket). */
export function blocksOf(features: Iterable<string>): Set<string> {
  const s = new Set<string>();
  for (const f of features) s.add(f.slice(0, f.lastIndexOf(':')));
  return s;
}
