/**
 * Worker-thread entry of the guided fuzzer (runner.ts starts it on the
 * transpiled JavaScript, build.ts): fuzz one target, report, and with
 * `minimize` also return the smallest corpus that keeps its coverage.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { fuzz, minimize } from './engine';
import { SELFTEST_TARGETS, TARGETS } from './targets';

export interface WorkerJob {
  target: string;
  ms: number;
  maxExecs: number;
  seed: number;
  corpusDir: string;
  minimize: boolean;
  stopOnFinding: boolean;
  /** [execs, input length] then the input bytes: the watchdog's view. */
  sab: SharedArrayBuffer;
}

export const SAB_INPUT_MAX = 64 * 1024;

async function main(): Promise<void> {
  const job = workerData as WorkerJob;
  const target = [...TARGETS, ...SELFTEST_TARGETS].find((t) => t.name === job.target);
  if (!target) throw new Error(`no target ${job.target}`);
  const head = new Int32Array(job.sab, 0, 2);
  const body = new Uint8Array(job.sab, 8, SAB_INPUT_MAX);
  const committed: Buffer[] = fs.existsSync(job.corpusDir)
    ? fs.readdirSync(job.corpusDir).sort().map((f) => fs.readFileSync(path.join(job.corpusDir, f)))
    : [];
  const builtIn = await target.seeds();
  const seeds = [...builtIn, ...committed];
  const report = await fuzz(target, seeds, {
    ms: job.ms,
    maxExecs: job.maxExecs,
    seed: job.seed,
    stopOnFinding: job.stopOnFinding,
    onExec(input, execs) {
      const n = Math.min(input.length, SAB_INPUT_MAX);
      body.set(input.subarray(0, n));
      Atomics.store(head, 1, n);
      Atomics.store(head, 0, execs + 1);
    },
  });
  let kept: string[] | undefined;
  if (job.minimize) {
    const m = await minimize(target, (report.corpusHex ?? []).map((h) => Buffer.from(h, 'hex')), builtIn);
    kept = m.kept.map((b) => b.toString('hex'));
  }
  parentPort!.postMessage({ report: { ...report, corpusHex: undefined }, kept, committed: committed.length });
}

main().catch((err) => parentPort!.postMessage({ error: (err as Error)?.stack ?? String(err) }));
