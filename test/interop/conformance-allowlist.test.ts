/**
 * The conformance allowlist only ever grows: every name that any earlier commit listed is
 * still listed (or retired, with a reason). Names must be real iscsi-test-cu leaf tests.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ALLOWLIST_FILE, loadAllowlist, parseTestList, type Allowlist } from './cunit';
import { REPO_ROOT, requireTool } from './harness';

const REL = path.relative(REPO_ROOT, ALLOWLIST_FILE);
const MAX_HISTORY = 200;

function git(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000, maxBuffer: 64 * 1024 * 1024 });
  return { ok: r.status === 0, out: r.stdout ?? '' };
}

describe('conformance allowlist', () => {
  const list = loadAllowlist();

  it('is sorted, without duplicates, names under their family', () => {
    for (const [family, names] of Object.entries(list.mustPass)) {
      expect(names).toEqual([...new Set(names)].sort());
      for (const n of names) expect(n.startsWith(`${family}.`) && n.split('.').length === 3).toBe(true);
    }
  });

  it('requires every iSCSI.* test that libiscsi has (issue 2)', () => {
    if (!requireTool('iscsi-test-cu', 'libiscsi-bin')) return;
    const r = spawnSync('iscsi-test-cu', ['-l'], { encoding: 'utf8', timeout: 20_000 });
    const all = parseTestList(r.stdout, 'iSCSI');
    expect(all.length).toBeGreaterThan(0);
    expect(list.mustPass.iSCSI).toEqual(expect.arrayContaining(all));
  });

  it('names only tests that iscsi-test-cu knows', () => {
    if (!requireTool('iscsi-test-cu', 'libiscsi-bin')) return;
    const r = spawnSync('iscsi-test-cu', ['-l'], { encoding: 'utf8', timeout: 20_000 });
    const known = new Set(r.stdout.split('\n').map((l) => l.trim()));
    const unknown = Object.values(list.mustPass)
      .flat()
      .filter((n) => !known.has(n));
    expect(unknown).toEqual([]);
  });

  it('never loses a name that an earlier commit listed', () => {
    if (!git(['rev-parse', '--git-dir']).ok) {
      console.warn('conformance allowlist: not a git checkout, history check skipped');
      return;
    }
    const commits = git(['log', '--format=%H', '-n', String(MAX_HISTORY), '--', REL]).out.split('\n').filter(Boolean);
    const now = new Set(Object.values(list.mustPass).flat());
    const retired = list.retired ?? {};
    const lost: string[] = [];
    for (const c of commits) {
      const old = git(['show', `${c}:${REL}`]);
      if (!old.ok) continue;
      let prev: Allowlist;
      try {
        prev = JSON.parse(old.out) as Allowlist;
      } catch {
        continue;
      }
      for (const n of Object.values(prev.mustPass ?? {}).flat()) {
        if (!now.has(n) && !(n in retired)) lost.push(`${n} (listed in ${c.slice(0, 10)})`);
      }
    }
    expect([...new Set(lost)]).toEqual([]);
  });
});
