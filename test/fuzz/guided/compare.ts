/**
 * Compare block coverage of runs written by measure-setup.ts (jest files)
 * and cli.ts --blocks-out (guided targets):
 *
 *   npx ts-node --transpile-only test/fuzz/guided/compare.ts DIR [group=a.json+b.json ...]
 *
 * Prints blocks per file for each group, and what each group reached that
 * the others did not.
 */
import fs from 'node:fs';
import path from 'node:path';

const [dir, ...groups] = process.argv.slice(2);
const load = (f: string): { ms: number; blocks: string[] } => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
const sets = new Map<string, { ms: number; blocks: Set<string> }>();
for (const g of groups) {
  const [name, files] = g.split('=');
  const blocks = new Set<string>();
  let ms = 0;
  for (const f of files.split('+')) {
    const x = load(f);
    ms += x.ms;
    for (const b of x.blocks) blocks.add(b);
  }
  sets.set(name, { ms, blocks });
}
const fileOf = (b: string): string => b.slice(0, b.indexOf(':'));
const files = new Set<string>();
for (const { blocks } of sets.values()) for (const b of blocks) files.add(fileOf(b));
const names = [...sets.keys()];
console.log(['file'.padEnd(40), ...names.map((n) => n.padStart(14))].join(' '));
for (const f of [...files].sort()) {
  console.log([f.padEnd(40), ...names.map((n) => String([...sets.get(n)!.blocks].filter((b) => fileOf(b) === f).length).padStart(14))].join(' '));
}
console.log(['TOTAL blocks'.padEnd(40), ...names.map((n) => String(sets.get(n)!.blocks.size).padStart(14))].join(' '));
console.log(['wall ms'.padEnd(40), ...names.map((n) => String(sets.get(n)!.ms).padStart(14))].join(' '));
for (const n of names) {
  const others = new Set<string>();
  for (const m of names) if (m !== n) for (const b of sets.get(m)!.blocks) others.add(b);
  const only = [...sets.get(n)!.blocks].filter((b) => !others.has(b));
  const perFile = new Map<string, number>();
  for (const b of only) perFile.set(fileOf(b), (perFile.get(fileOf(b)) ?? 0) + 1);
  console.log(`only ${n}: ${only.length} blocks (${[...perFile].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([f, k]) => `${f} ${k}`).join(', ')})`);
}
