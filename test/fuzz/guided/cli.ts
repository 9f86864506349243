/**
 * Longer guided runs, outside CI:
 *
 *   npm run fuzz:long -- [--targets cdb,login] [--seconds 60] [--execs N] [--seed N] [--save] [--per-file] [--blocks-out DIR] [--corpus DIR]
 *
 * Each target runs for --seconds (default 60) or --execs executions; --save
 * replaces test/fuzz/corpus/guided/<target>/ with the minimized corpus of the
 * run (the committed entries and the new ones, the fewest that keep every
 * block). Findings are written to $XCOPYD_FUZZ_ARTIFACTS (default
 * /tmp/xcopyd-fuzz-artifacts) and make the exit status 1. --per-file prints
 * the blocks reached per source file; --blocks-out writes them per target
 * (guided-<target>.json) for compare.ts; --corpus DIR reads (and with --save
 * writes) DIR/<target>/ instead of the committed corpus (an empty DIR: a cold start).
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { TARGET_NAMES } from './targets';
import { runGuided, summary } from './runner';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const targets = (arg('targets') ?? TARGET_NAMES.join(',')).split(',').filter(Boolean);
  for (const t of targets) if (!TARGET_NAMES.includes(t)) throw new Error(`unknown target ${t}; targets: ${TARGET_NAMES.join(' ')}`);
  const seconds = Number(arg('seconds') ?? 60);
  const maxExecs = Number(arg('execs') ?? 1e9);
  const seed = Number(arg('seed') ?? crypto.randomInt(2 ** 31));
  const save = process.argv.includes('--save');
  const artifacts = process.env.XCOPYD_FUZZ_ARTIFACTS ?? '/tmp/xcopyd-fuzz-artifacts';
  console.log(`guided fuzz seed ${seed}, ${seconds} s per target, targets ${targets.join(' ')}`);
  let failed = 0;
  for (const target of targets) {
    const dir = arg('corpus');
    const r = await runGuided({ target, ms: seconds * 1000, maxExecs, seed, save, corpusDir: dir ? path.join(dir, target) : undefined });
    console.log(summary(r));
    const blocksOut = arg('blocks-out');
    if (blocksOut) {
      fs.mkdirSync(blocksOut, { recursive: true });
      fs.writeFileSync(path.join(blocksOut, `guided-${target}.json`), JSON.stringify({ ms: r.report.ms, execs: r.report.execs, coverage: r.report.portable }));
    }
    if (process.argv.includes('--per-file')) for (const [f, n] of Object.entries(r.report.perFile).sort()) console.log(`    ${f} ${n}`);
    for (const f of r.report.findings) {
      failed++;
      fs.mkdirSync(artifacts, { recursive: true });
      const file = path.join(artifacts, `${target}-${crypto.createHash('sha1').update(f.input, 'hex').digest('hex').slice(0, 16)}`);
      fs.writeFileSync(file, Buffer.from(f.input, 'hex'));
      console.log(`  FINDING (${file}): ${f.message.split('\n').slice(0, 12).join('\n    ')}`);
    }
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 2;
});
