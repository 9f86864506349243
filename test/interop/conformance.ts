/**
 * Runs one family of libiscsi's iscsi-test-cu against a target and parses the result.
 * Used by libiscsi.test.ts, and as a CLI that records results and grows the allowlist:
 *
 *   npx ts-node --transpile-only test/interop/conformance.ts [--grow] [FAMILY...]
 *
 * FAMILY defaults to "iSCSI SCSI". It starts a fresh xcopyd per family (INTEROP_TARGET=tgt
 * for tgtd), prints counts and the tests that did not pass, writes a JSON record under the
 * run directory, and with --grow adds every passing test to the allowlist (never removes).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatCounts, formatNotPassed, growAllowlist, loadAllowlist, parseCUnit, ALLOWLIST_FILE, type CUnitReport } from './cunit';
import { run, startTarget, type Target } from './harness';

/** Hard limit for one family run; the SCSI family takes ~20 s against tgtd. */
export const FAMILY_TIMEOUT_MS: Record<string, number> = { iSCSI: 5 * 60_000, SCSI: 15 * 60_000 };

export interface FamilyRun {
  report: CUnitReport;
  code: number | null;
  timedOut: boolean;
  ms: number;
  logFile: string;
  recordFile: string;
}

/**
 * `iscsi-test-cu -d --test='FAMILY.*' URL` against the target's first data LUN. SCSI.* gets
 * the URL twice (issue 3): the second is the multipath URL, so MultipathIO and the
 * two-initiator reservation tests run instead of skipping.
 */
export async function runFamily(target: Target, family: string): Promise<FamilyRun> {
  const logFile = path.join(target.runDir, `iscsi-test-cu-${family}.txt`);
  const url = target.url(target.dataLuns[0]);
  const urls = family === 'SCSI' ? [url, url] : [url];
  const res = await run('iscsi-test-cu', ['-d', `--test=${family}.*`, ...urls], {
    timeoutMs: FAMILY_TIMEOUT_MS[family] ?? 10 * 60_000,
    logFile,
  });
  const report = parseCUnit(res.stdout, family);
  const recordFile = path.join(target.runDir, `conformance-${family}.json`);
  fs.writeFileSync(
    recordFile,
    JSON.stringify(
      {
        family,
        target: target.kind,
        url,
        date: new Date().toISOString(),
        exit: { code: res.code, timedOut: res.timedOut, ms: res.ms },
        counts: { tests: report.tests.length, passed: report.passed, failed: report.failed, skipped: report.skipped },
        cunitSummary: report.summary,
        tests: report.tests.map((t) => ({ name: t.name, status: t.status, ...(t.status !== 'passed' ? { output: t.output } : {}) })),
      },
      null,
      2,
    ),
  );
  return { report, code: res.code, timedOut: res.timedOut, ms: res.ms, logFile, recordFile };
}

async function main(argv: string[]): Promise<number> {
  const grow = argv.includes('--grow');
  const families = argv.filter((a) => !a.startsWith('--'));
  let rc = 0;
  for (const family of families.length ? families : ['iSCSI', 'SCSI']) {
    const target = await startTarget({ name: `conformance-${family}` });
    let fr: FamilyRun;
    try {
      fr = await runFamily(target, family);
    } finally {
      await target.stop();
    }
    const r = fr.report;
    console.log(`${formatCounts(r)}  (${target.kind}, ${(fr.ms / 1000).toFixed(1)} s${fr.timedOut ? ', TIMED OUT' : ''})`);
    if (r.failed + r.skipped) console.log(formatNotPassed(r, 500));
    console.log(`output: ${fr.logFile}\nrecord: ${fr.recordFile}\ndaemon log: ${target.logFile}`);
    const allow = loadAllowlist();
    const must = allow.mustPass[family] ?? [];
    const passed = new Set(r.tests.filter((t) => t.status === 'passed').map((t) => t.name));
    const regressions = must.filter((n) => !passed.has(n));
    if (regressions.length) {
      rc = 1;
      console.log(`REGRESSIONS (allowlisted, not passing):\n  ${regressions.join('\n  ')}`);
    }
    const newly = [...passed].filter((n) => !must.includes(n));
    if (grow && target.kind === 'xcopyd' && newly.length) {
      const { list, added } = growAllowlist(allow, family, newly);
      fs.writeFileSync(ALLOWLIST_FILE, JSON.stringify(list, null, 2) + '\n');
      console.log(`allowlist: added ${added.length} ${family} tests to ${ALLOWLIST_FILE}`);
    } else if (newly.length) {
      console.log(`${newly.length} passing ${family} tests are not in the allowlist yet (--grow adds them)`);
    }
  }
  return rc;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (rc) => process.exit(rc),
    (e) => {
      console.error(e);
      process.exit(2);
    },
  );
}
