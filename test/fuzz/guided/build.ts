/**
 * Transpile the project's TypeScript to plain JavaScript (typescript's
 * transpileModule; the project sets isolatedModules, so no type information
 * is needed) in a scratch directory, for the fuzzer's worker.
 *
 * Why: V8's takePreciseCoverage walks every feedback vector of the isolate.
 * Under ts-node or ts-jest the TypeScript compiler lives in that isolate and
 * one call costs 5-15 ms; a worker thread that only loads plain JS (its own
 * isolate) answers in a fraction of that, so the fuzzer runs many times more
 * inputs in the same time.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';

export const ROOT = path.resolve(__dirname, '..', '..', '..');
const DIRS = ['iscsi', 'scsi', 'src', 'types', 'test/fuzz', 'test/scsi', 'test/odx', 'test/support'];

function* tsFiles(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'corpus') yield* tsFiles(p);
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') && !e.name.endsWith('.test.ts')) {
      yield p;
    }
  }
}

/**
 * Transpile into `out` (default: a directory under the OS temp dir named after
 * the user and this checkout); returns it. Files whose source did not change
 * are kept; each file is written whole (rename), so concurrent builds of the
 * same checkout do not see halves.
 */
export function buildJs(
  out = path.join(os.tmpdir(), `xcopyd-guided-fuzz-${process.getuid?.() ?? 0}-${crypto.createHash('sha1').update(ROOT).digest('hex').slice(0, 8)}`),
): string {
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    esModuleInterop: true,
    isolatedModules: true,
    resolveJsonModule: true,
    inlineSourceMap: false,
  };
  for (const d of DIRS) {
    const abs = path.join(ROOT, d);
    if (!fs.existsSync(abs)) continue;
    for (const f of tsFiles(abs)) {
      const rel = path.relative(ROOT, f);
      const dst = path.join(out, rel.replace(/\.ts$/, '.js'));
      const src = fs.readFileSync(f, 'utf8');
      if (fs.existsSync(dst) && fs.statSync(dst).mtimeMs >= fs.statSync(f).mtimeMs) continue;
      const js = ts.transpileModule(src, { compilerOptions: options, fileName: f }).outputText;
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      const tmp = `${dst}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, js);
      fs.renameSync(tmp, dst);
    }
  }
  // Imports of package.json and node_modules resolve from the project: link them.
  const nm = path.join(out, 'node_modules');
  try {
    fs.symlinkSync(path.join(ROOT, 'node_modules'), nm, 'dir');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return out;
}
