/**
 * Compare coverage of runs written by measure-setup.ts (jest files) and
 * cli.ts --blocks-out (guided targets):
 *
 *   npx ts-node --transpile-only test/fuzz/guided/compare.ts DIR name=a.json+b.json name2=c.json ...
 *
 * The unit is a block boundary (start or end of a range V8 reported in any
 * of the runs, so every group is counted against the same set) whose
 * position ran in the group. Prints per file and in total, and what each
 * group reached that the others did not.
 */
import fs from 'node:fs';
import path from 'node:path';

type Portable = Record<string, { covered: Array<[number, number]>; boundaries: number[] }>;

const [dir, ...groups] = process.argv.slice(2);
const boundaries = new Map<string, Set<number>>();
const runs = new Map<string, { ms: number; covered: Map<string, Array<[number, number]>> }>();
for (const g of groups) {
  const [name, files] = g.split('=');
  const covered = new Map<string, Array<[number, number]>>();
  let ms = 0;
  for (const f of files.split('+')) {
    const x = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { ms: number; coverage: Portable };
    ms += x.ms;
    for (const [file, c] of Object.entries(x.coverage)) {
      const b = boundaries.get(file) ?? new Set<number>();
      for (const p of c.boundaries) b.add(p);
      boundaries.set(file, b);
      covered.set(file, [...(covered.get(file) ?? []), ...c.covered]);
    }
  }
  runs.set(name, { ms, covered });
}
const names = [...runs.keys()];
/** Per group, the covered boundaries as "file:pos". */
const hit = new Map<string, Set<string>>();
for (const n of names) {
  const s = new Set<string>();
  for (const [file, bs] of boundaries) {
    const iv = runs.get(n)!.covered.get(file) ?? [];
    for (const b of bs) if (iv.some(([a, e]) => a <= b && b < e)) s.add(`${file}:${b}`);
  }
  hit.set(n, s);
}
const fileOf = (k: string): string => k.slice(0, k.lastIndexOf(':'));
const files = [...boundaries.keys()].filter((f) => names.some((n) => [...hit.get(n)!].some((k) => fileOf(k) === f))).sort();
console.log(['file'.padEnd(36), 'known'.padStart(6), ...names.map((n) => n.padStart(12))].join(' '));
for (const f of files) {
  console.log([f.padEnd(36), String(boundaries.get(f)!.size).padStart(6), ...names.map((n) => String([...hit.get(n)!].filter((k) => fileOf(k) === f).length).padStart(12))].join(' '));
}
console.log(['TOTAL'.padEnd(36), String(files.reduce((a, f) => a + boundaries.get(f)!.size, 0)).padStart(6), ...names.map((n) => String(hit.get(n)!.size).padStart(12))].join(' '));
console.log(['wall ms'.padEnd(36), ''.padStart(6), ...names.map((n) => String(runs.get(n)!.ms).padStart(12))].join(' '));
for (const n of names) {
  const others = new Set<string>();
  for (const m of names) if (m !== n) for (const k of hit.get(m)!) others.add(k);
  const only = [...hit.get(n)!].filter((k) => !others.has(k));
  const perFile = new Map<string, number>();
  for (const k of only) perFile.set(fileOf(k), (perFile.get(fileOf(k)) ?? 0) + 1);
  console.log(`only ${n}: ${only.length} (${[...perFile].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([f, k]) => `${f} ${k}`).join(', ')})`);
}
