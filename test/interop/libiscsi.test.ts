/**
 * libiscsi's conformance tool (Debian libiscsi-bin: iscsi-test-cu) against a fresh daemon.
 *
 * - iSCSI.*: every test passes; none skips, none fails (issue 2, "Done when").
 * - SCSI.*: the tests in the allowlist must pass, none may fail, and none may skip outside the
 *   suites issue 3 names as optional for a fixed disk (OPTIONAL_SUITES). Five tests only run
 *   when a physical block holds several logical blocks (LBPPB >= 2): they skip on the 512/512
 *   LUN and are run again, and must pass, on a 512e LUN (512 logical, 4096 physical).
 *   `conformance.ts --grow SCSI` adds newly passing tests; the allowlist never shrinks.
 */
import { formatCounts, formatNotPassed, loadAllowlist, parseCUnit } from './cunit';
import { runFamily } from './conformance';
import { describeIf, requireTarget, requireTool, run, startTarget, type Target } from './harness';
import path from 'node:path';

/**
 * Suites issue 3 accepts as skipped on a fixed disk, and why:
 * Sanitize (needs --allow-sanitize and is destructive), PreventAllow and StartStopUnit
 * (the LUN is not removable), ReadOnly (LUN 0 is writable), WriteAtomic16, OrWrite,
 * ReadDefectData10/12 (not implemented).
 */
const OPTIONAL_SUITES = ['Sanitize', 'PreventAllow', 'StartStopUnit', 'ReadOnly', 'WriteAtomic16', 'ReadDefectData10', 'ReadDefectData12', 'OrWrite'];
/** These need LBPPB >= 2; they are covered by the 512e run below. */
const NEEDS_LBPPB = [
  'SCSI.CompareAndWrite.InvalidDataOutSize',
  'SCSI.WriteSame10.UnmapUnaligned',
  'SCSI.WriteSame16.UnmapUnaligned',
  'SCSI.WriteSame10.InvalidDataOutSize',
  'SCSI.WriteSame16.InvalidDataOutSize',
];
const suiteOf = (name: string) => name.split('.')[1];

const ready = requireTool('iscsi-test-cu', 'libiscsi-bin') && requireTarget();
const allow = loadAllowlist();

describeIf(ready)('libiscsi iscsi-test-cu', () => {
  for (const family of ['iSCSI', 'SCSI'] as const) {
    describe(`${family}.*`, () => {
      let target: Target;
      beforeAll(async () => {
        target = await startTarget({ name: `libiscsi-${family}` });
      }, 60_000);
      afterAll(async () => {
        if (target) await target.stop();
      }, 30_000);

      const strict = family === 'iSCSI';
      it(
        strict
          ? 'every iSCSI.* test passes: none skipped, none failed'
          : 'every allowlisted SCSI.* test passes; none fails; skips only in the optional suites',
        async () => {
          const fr = await runFamily(target, family);
          const r = fr.report;
          const where = `iscsi-test-cu output: ${fr.logFile}\nrecord: ${fr.recordFile}\ntarget log: ${target.logFile}`;
          console.log(`[libiscsi] ${formatCounts(r)} against ${target.kind}\n${where}`);
          const problems: string[] = [];
          if (fr.timedOut) problems.push(`iscsi-test-cu timed out after ${fr.ms} ms`);
          if (r.tests.length === 0) problems.push('no test results parsed');

          const byName = new Map(r.tests.map((t) => [t.name, t]));
          const must = allow.mustPass[family] ?? [];
          for (const n of must) {
            const t = byName.get(n);
            if (!t) problems.push(`allowlisted test did not run: ${n}`);
            else if (t.status !== 'passed') problems.push(`allowlisted test ${t.status}: ${n}`);
          }
          if (strict) {
            if (r.failed) problems.push(`${r.failed} failed`);
            if (r.skipped) problems.push(`${r.skipped} skipped`);
            // CUnit's own count must agree with ours, or the parser missed something.
            if (r.summary && r.summary.ran !== r.tests.length)
              problems.push(`CUnit ran ${r.summary.ran} tests, parsed ${r.tests.length}`);
            if (!r.summary) problems.push('no CUnit Run Summary (the tool stopped early?)');
          } else {
            if (r.failed) problems.push(`${r.failed} failed`);
            for (const t of r.tests) {
              if (t.status === 'skipped' && !OPTIONAL_SUITES.includes(suiteOf(t.name)) && !NEEDS_LBPPB.includes(t.name))
                problems.push(`skipped outside the optional suites: ${t.name}`);
            }
            const extra = r.tests.filter((t) => t.status === 'passed' && !must.includes(t.name)).length;
            if (extra)
              console.log(
                `[libiscsi] ${extra} SCSI.* tests pass but are not allowlisted: npx ts-node --transpile-only test/interop/conformance.ts --grow SCSI`,
              );
          }
          if (problems.length) {
            throw new Error(
              `${formatCounts(r)}\n${problems.join('\n')}\n${formatNotPassed(r)}\n${where}\n--- target log tail ---\n${target.logTail(40)}`,
            );
          }
        },
        20 * 60_000,
      );

      it('target is still up after the run', () => {
        expect(target.alive()).toBe(true);
      });
    });
  }

  describe('SCSI.* tests that need LBPPB >= 2, on a 512e LUN', () => {
    let target: Target;
    beforeAll(async () => {
      target = await startTarget({ name: 'libiscsi-512e', physicalBlockSize: 4096 });
    }, 60_000);
    afterAll(async () => {
      if (target) await target.stop();
    }, 30_000);

    for (const name of NEEDS_LBPPB) {
      it(`${name} passes`, async () => {
        const url = target.url(target.dataLuns[0]);
        const logFile = path.join(target.runDir, `${name}.txt`);
        const res = await run('iscsi-test-cu', ['-d', `--test=${name}`, url, url], { timeoutMs: 120_000, logFile });
        const r = parseCUnit(res.stdout, 'SCSI');
        const t = r.tests.find((x) => x.name === name);
        if (!t || t.status !== 'passed') {
          throw new Error(`${name}: ${t ? t.status : 'did not run'}\n${formatNotPassed(r)}\noutput: ${logFile}`);
        }
      }, 150_000);
    }
  });
});
