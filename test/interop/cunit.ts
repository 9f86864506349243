/**
 * Parser for the CUnit "verbose" output of libiscsi's iscsi-test-cu, and the allowlist of
 * conformance tests that must pass.
 *
 * Output shape (libiscsi 1.19, CUnit 2.1-3):
 *
 *   Suite: iSCSIcmdsn
 *     Test: iSCSICmdSnTooHigh ...passed
 *     Test: Simple ...    [SKIPPED] COMPAREANDWRITE is not implemented.
 *       [SKIPPED] COMPAREANDWRITE is not implemented.
 *   passed
 *     Test: BeyondEol ...    [FAILED] GET_LBA_STATUS successful but should have failed ...
 *   FAILED
 *       1. test_get_lba_status_beyond_eol.c:38  - CU_ASSERT_EQUAL(_r,0)
 *     Test: LUNReset ...passed    [FAILED] PRIN command: ...      (teardown noise after the result)
 *
 * CUnit prints its result token ("passed" / "FAILED") right after the test's own output,
 * which libiscsi indents by four spaces: so the token is either right after "..." or at the
 * start of a line. A test that printed [SKIPPED] before its token is reported by CUnit as
 * passed; we count it as skipped. A test with no token (the tool died) counts as failed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type CUnitStatus = 'passed' | 'failed' | 'skipped';

export interface CUnitTest {
  /** FAMILY.Suite.Test, e.g. iSCSI.iSCSIcmdsn.iSCSICmdSnTooHigh */
  name: string;
  suite: string;
  test: string;
  status: CUnitStatus;
  /** The test's own output before the result token (skip reasons, [FAILED] messages, asserts). */
  output: string;
  /** Text printed after the result token (e.g. teardown messages), for diagnostics only. */
  after: string;
  /** True if no result token was found (the tool stopped in the middle of the test). */
  incomplete: boolean;
}

export interface CUnitSummary {
  total: number;
  ran: number;
  passed: number;
  failed: number;
  inactive: number;
}

export interface CUnitReport {
  family: string;
  tests: CUnitTest[];
  passed: number;
  failed: number;
  skipped: number;
  /** CUnit's own "Run Summary" tests line, if it got that far. */
  summary?: CUnitSummary;
}

const MARKER = /^(?:Suite: (\S+)|  Test: (.+?) \.\.\.|Run Summary:)/gm;

export function parseCUnit(text: string, family: string): CUnitReport {
  const clean = text.replace(/\r/g, '');
  const marks: Array<{ index: number; end: number; suite?: string; test?: string; summary?: true }> = [];
  for (const m of clean.matchAll(MARKER)) {
    const index = m.index ?? 0;
    marks.push({
      index,
      end: index + m[0].length,
      suite: m[1],
      test: m[2],
      summary: m[1] === undefined && m[2] === undefined ? true : undefined,
    });
  }
  const tests: CUnitTest[] = [];
  let suite = '?';
  for (let i = 0; i < marks.length; i++) {
    const mk = marks[i];
    if (mk.suite !== undefined) {
      suite = mk.suite;
      continue;
    }
    if (mk.test === undefined) break; // Run Summary
    const segment = clean.slice(mk.end, i + 1 < marks.length ? marks[i + 1].index : clean.length);
    let tokenAt = -1;
    let token = '';
    if (/^(passed|FAILED)/.test(segment)) {
      tokenAt = 0;
      token = segment.startsWith('passed') ? 'passed' : 'FAILED';
    } else {
      const m = /^(passed|FAILED)/m.exec(segment);
      if (m) {
        tokenAt = m.index;
        token = m[1];
      }
    }
    const before = tokenAt < 0 ? segment : segment.slice(0, tokenAt);
    const rest = tokenAt < 0 ? '' : segment.slice(tokenAt + token.length);
    // Assertion lines ("    1. file.c:NN  - CU_ASSERT...") follow FAILED: they belong to the test.
    const asserts = rest
      .split('\n')
      .filter((l) => /^\s+\d+\. \S+:\d+/.test(l))
      .join('\n');
    const status: CUnitStatus =
      tokenAt < 0 || token === 'FAILED' ? 'failed' : /\[SKIPPED\]/.test(before) ? 'skipped' : 'passed';
    tests.push({
      name: `${family}.${suite}.${mk.test}`,
      suite,
      test: mk.test,
      status,
      output: [before.trim(), asserts].filter(Boolean).join('\n'),
      after: rest.trim(),
      incomplete: tokenAt < 0,
    });
  }
  const sm = /^\s+tests\s+(\d+)\s+(\d+)\s+(\d+|n\/a)\s+(\d+)\s+(\d+)/m.exec(clean);
  const summary = sm
    ? {
        total: Number(sm[1]),
        ran: Number(sm[2]),
        passed: Number(sm[3]),
        failed: Number(sm[4]),
        inactive: Number(sm[5]),
      }
    : undefined;
  return {
    family,
    tests,
    passed: tests.filter((t) => t.status === 'passed').length,
    failed: tests.filter((t) => t.status === 'failed').length,
    skipped: tests.filter((t) => t.status === 'skipped').length,
    summary,
  };
}

/** Leaf test names (FAMILY.Suite.Test) of `iscsi-test-cu -l` output for one family. */
export function parseTestList(text: string, family: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${family}.`) && l.split('.').length === 3);
}

export function formatCounts(r: CUnitReport): string {
  return `${r.family}.*: ${r.tests.length} tests, ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped`;
}

export function formatNotPassed(r: CUnitReport, limit = 60): string {
  const bad = r.tests.filter((t) => t.status !== 'passed');
  const lines = bad.slice(0, limit).map((t) => {
    const why = t.output.split('\n').find((l) => /\[(SKIPPED|FAILED)\]|CU_ASSERT/.test(l)) ?? t.output.split('\n')[0] ?? '';
    return `  ${t.status.toUpperCase().padEnd(7)} ${t.name}${t.incomplete ? ' (no result: tool stopped)' : ''}  ${why.trim().slice(0, 160)}`;
  });
  if (bad.length > limit) lines.push(`  ... and ${bad.length - limit} more`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------
// allowlist

export const ALLOWLIST_FILE = path.join(__dirname, 'conformance-allowlist.json');

export interface Allowlist {
  $comment?: string | string[];
  /** FAMILY -> test names (FAMILY.Suite.Test) that must pass with no skip. Only ever grows. */
  mustPass: Record<string, string[]>;
  /** Names removed on purpose (e.g. renamed upstream): name -> reason. */
  retired?: Record<string, string>;
}

export function loadAllowlist(file = ALLOWLIST_FILE): Allowlist {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Allowlist;
}

/** Add names to one family's list (sorted, no duplicates); never removes anything. */
export function growAllowlist(list: Allowlist, family: string, names: string[]): { list: Allowlist; added: string[] } {
  const current = new Set(list.mustPass[family] ?? []);
  const added = names.filter((n) => !current.has(n));
  for (const n of added) current.add(n);
  return {
    list: { ...list, mustPass: { ...list.mustPass, [family]: [...current].sort() } },
    added: added.sort(),
  };
}
