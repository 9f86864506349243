/**
 * Runs guided targets, each in a worker thread on transpiled JavaScript
 * (build.ts says why), with a watchdog: the worker publishes the input it
 * is running in shared memory, and an execution that does not finish within
 * `hangMs` (a synchronous loop no promise race can catch) is reported as a
 * hang with that input, and the worker is terminated.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { buildJs } from './build';
import type { EngineReport } from './engine';
import type { WorkerJob } from './worker';

export const CORPUS_ROOT = path.join(__dirname, '..', 'corpus', 'guided');
const SAB_INPUT_MAX = 64 * 1024;

export interface RunOptions {
  target: string;
  ms: number;
  maxExecs: number;
  seed: number;
  hangMs?: number;
  /** Replace the committed corpus of the target by the minimized corpus of this run. */
  save?: boolean;
  corpusDir?: string;
  stopOnFinding?: boolean;
}

export interface RunResult {
  report: EngineReport;
  committed: number;
  saved?: number;
}

let built: string | undefined;

export function runGuided(o: RunOptions): Promise<RunResult> {
  built ??= buildJs();
  const corpusDir = o.corpusDir ?? path.join(CORPUS_ROOT, o.target);
  const sab = new SharedArrayBuffer(8 + SAB_INPUT_MAX);
  const head = new Int32Array(sab, 0, 2);
  const job: WorkerJob = { target: o.target, ms: o.ms, maxExecs: o.maxExecs, seed: o.seed, corpusDir, minimize: !!o.save, stopOnFinding: !!o.stopOnFinding, sab };
  const worker = new Worker(path.join(built, 'test', 'fuzz', 'guided', 'worker.js'), { workerData: job });
  const hangMs = o.hangMs ?? 10_000;
  return new Promise((resolve, reject) => {
    let last = -1;
    let since = Date.now();
    let settled = false;
    const done = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearInterval(dog);
      f();
    };
    const dog = setInterval(() => {
      const n = Atomics.load(head, 0);
      if (n !== last) {
        last = n;
        since = Date.now();
        return;
      }
      if (Date.now() - since < hangMs) return;
      const len = Atomics.load(head, 1);
      const input = Buffer.from(new Uint8Array(sab, 8, len)).toString('hex');
      void worker.terminate();
      done(() =>
        resolve({
          committed: 0,
          report: {
            target: o.target, execs: n, replayed: 0, ms: 0, corpus: 0, added: 0, features: 0, blocks: 0, perFile: {},
            findings: [{ input, message: `hang: one execution ran over ${hangMs} ms (worker terminated)` }],
          },
        }),
      );
    }, 250);
    worker.on('message', (m: { report?: EngineReport; kept?: string[]; committed?: number; error?: string }) => {
      if (m.error) return done(() => reject(new Error(`worker for ${o.target}: ${m.error}`)));
      const r: RunResult = { report: m.report!, committed: m.committed ?? 0 };
      if (o.save && m.kept) {
        fs.mkdirSync(corpusDir, { recursive: true });
        // regression-* files (inputs of fixed findings) stay whatever the coverage says.
        for (const f of fs.readdirSync(corpusDir)) if (!f.startsWith('regression-')) fs.rmSync(path.join(corpusDir, f));
        for (const h of m.kept) {
          const b = Buffer.from(h, 'hex');
          fs.writeFileSync(path.join(corpusDir, crypto.createHash('sha1').update(b).digest('hex').slice(0, 16)), b);
        }
        r.saved = m.kept.length;
      }
      done(() => resolve(r));
      void worker.terminate();
    });
    // An exception outside an execution (an unhandled rejection of a background copy) ends the
    // worker: name the input that ran last.
    const lastInput = (): string => Buffer.from(new Uint8Array(sab, 8, Atomics.load(head, 1))).toString('hex');
    worker.on('error', (err) => done(() => reject(new Error(`worker for ${o.target} failed after input ${lastInput()}: ${err?.stack ?? err}`))));
    worker.on('exit', (code) => done(() => reject(new Error(`worker for ${o.target} exited (${code}) without a report`))));
  });
}

/** One line per target for logs. */
export function summary(r: RunResult): string {
  const x = r.report;
  return `${x.target.padEnd(24)} execs ${String(x.execs).padStart(7)} (${x.replayed} replayed) in ${(x.ms / 1000).toFixed(1)} s, blocks ${x.blocks}/${x.knownBlocks ?? '?'}, features ${x.features}, corpus ${x.corpus} (+${x.added} new; ${r.committed} committed${r.saved !== undefined ? `, ${r.saved} saved` : ''}), findings ${x.findings.length}${x.execMs !== undefined ? ` [target ${x.execMs} ms, coverage ${x.coverageMs} ms, batches ${JSON.stringify(x.batches)}]` : ''}`;
}
