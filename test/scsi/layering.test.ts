import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** STYLE.md rule 1: scsi/ imports nothing from iscsi/ or src/. */
function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('layering', () => {
  const root = join(__dirname, '..', '..');
  it('scsi/ imports nothing from iscsi/ or src/', () => {
    const bad: string[] = [];
    for (const f of files(join(root, 'scsi'))) {
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/from\s+'([^']+)'|require\('([^']+)'\)/g)) {
        const spec = m[1] ?? m[2];
        if (/(^|\/)(iscsi|src)\//.test(spec) || spec.includes('../src') || spec.includes('../iscsi')) bad.push(`${relative(root, f)}: ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });
  it('backing stores know no CDBs: no opcode tables imported into src/backing', () => {
    for (const f of files(join(root, 'src', 'backing'))) {
      const text = readFileSync(f, 'utf8');
      expect(text).not.toMatch(/scsi\/(opcodes|command-table|commands)/);
    }
  });
});
