/**
 * The iscsi-test-cu output parser, on output captured from Debian tgtd 1.0.85 with
 * libiscsi-bin 1.19 (fixtures/), plus the corner cases that real output has.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { growAllowlist, parseCUnit, parseTestList, type Allowlist } from './cunit';

const fixture = (name: string) => fs.readFileSync(path.join(__dirname, 'fixtures', name), 'utf8');

describe('parseCUnit', () => {
  it('counts the iSCSI family run against tgtd, agreeing with CUnit', () => {
    const r = parseCUnit(fixture('tgt-1.0.85-iscsi-family.txt'), 'iSCSI');
    expect(r.tests).toHaveLength(15);
    expect(r.summary).toEqual({ total: 15, ran: 15, passed: 14, failed: 1, inactive: 0 });
    expect([r.passed, r.failed, r.skipped]).toEqual([14, 1, 0]);
    const bad = r.tests.find((t) => t.status === 'failed')!;
    expect(bad.name).toBe('iSCSI.iSCSIdatasn.iSCSIDataSnInvalid');
    expect(bad.output).toContain('test_iscsi_datasn_invalid.c:98');
    expect(r.tests[0]).toMatchObject({ name: 'iSCSI.iSCSIcmdsn.iSCSICmdSnTooHigh', status: 'passed' });
  });

  it('counts [SKIPPED] tests as skipped although CUnit says passed', () => {
    const text = fixture('tgt-1.0.85-scsi-family.txt');
    const r = parseCUnit(text, 'SCSI');
    expect(r.tests).toHaveLength(215);
    expect(r.summary).toMatchObject({ ran: 215, passed: 208, failed: 7 });
    expect(r.failed).toBe(r.summary!.failed);
    // CUnit's "passed" = our passed + skipped
    expect(r.passed + r.skipped).toBe(r.summary!.passed);
    expect(r.skipped).toBeGreaterThan(30);
    const caw = r.tests.find((t) => t.name === 'SCSI.CompareAndWrite.Simple')!;
    expect(caw.status).toBe('skipped');
    expect(caw.output).toContain('COMPAREANDWRITE is not implemented');
  });

  it('keeps multi-line test output and a result token at the start of a line', () => {
    const r = parseCUnit(fixture('tgt-1.0.85-scsi-family.txt'), 'SCSI');
    const t = r.tests.find((x) => x.name === 'SCSI.Reserve6.2Initiators')!;
    expect(t.status).toBe('failed');
    expect(t.output).toContain('MODESENSE6 successful but should have failed');
    expect(t.output).toContain('test_reserve6_2initiators.c:70');
    expect(r.tests.find((x) => x.name === 'SCSI.Reserve6.Logout')!.status).toBe('passed');
  });

  it('attributes text printed after the result token to "after", not to the result', () => {
    const r = parseCUnit(fixture('tgt-1.0.85-scsi-family.txt'), 'SCSI');
    const t = r.tests.find((x) => x.name === 'SCSI.Reserve6.LUNReset')!;
    expect(t.status).toBe('passed');
    expect(t.after).toContain('[FAILED] PRIN command');
  });

  it('counts a test without a result token (tool died) as failed and incomplete', () => {
    const text = 'Suite: iSCSIcmdsn\n  Test: A ...passed\n  Test: B ...    sending a PDU\n';
    const r = parseCUnit(text, 'iSCSI');
    expect(r.tests.map((t) => [t.name, t.status, t.incomplete])).toEqual([
      ['iSCSI.iSCSIcmdsn.A', 'passed', false],
      ['iSCSI.iSCSIcmdsn.B', 'failed', true],
    ]);
    expect(r.summary).toBeUndefined();
  });

  it('treats a skipped-then-failed test as failed', () => {
    const r = parseCUnit('Suite: S\n  Test: T ...    [SKIPPED] x\nFAILED\n    1. a.c:1  - CU_ASSERT(0)\n', 'F');
    expect(r.tests[0].status).toBe('failed');
  });

  it('handles CRLF output', () => {
    const r = parseCUnit('Suite: S\r\n  Test: T ...passed\r\n  Test: U ...FAILED\r\n', 'F');
    expect(r.tests.map((t) => t.status)).toEqual(['passed', 'failed']);
  });
});

describe('parseTestList', () => {
  it('keeps only leaf names of one family', () => {
    const list = 'ALL\nALL.X\nALL.X.Y\niSCSI\niSCSI.S\niSCSI.S.A\niSCSI.S.B\nSCSI.S.C\n';
    expect(parseTestList(list, 'iSCSI')).toEqual(['iSCSI.S.A', 'iSCSI.S.B']);
  });
});

describe('growAllowlist', () => {
  it('adds sorted, keeps everything already there', () => {
    const base: Allowlist = { mustPass: { SCSI: ['SCSI.B.x'], iSCSI: ['iSCSI.A.a'] } };
    const { list, added } = growAllowlist(base, 'SCSI', ['SCSI.C.y', 'SCSI.A.z', 'SCSI.B.x']);
    expect(added).toEqual(['SCSI.A.z', 'SCSI.C.y']);
    expect(list.mustPass.SCSI).toEqual(['SCSI.A.z', 'SCSI.B.x', 'SCSI.C.y']);
    expect(list.mustPass.iSCSI).toEqual(['iSCSI.A.a']);
  });
});

describe('parseCUnit on an early xcopyd run', () => {
  // Suite teardown prints "[SKIPPED] PERSISTENT RESERVE IN is not implemented." after a
  // test's result token: that is not the test skipping.
  it('does not count teardown [SKIPPED] after "passed" as a skip', () => {
    const r = parseCUnit(fixture('xcopyd-early-iscsi-family.txt'), 'iSCSI');
    expect(r.tests).toHaveLength(15);
    const t = r.tests.find((x) => x.name === 'iSCSI.iSCSIcmdsn.iSCSICmdSnTooLow')!;
    expect(t.status).toBe('passed');
    expect(t.after).toContain('[SKIPPED] PERSISTENT RESERVE IN');
    expect(r.failed).toBe(r.summary!.failed);
    expect(r.passed + r.skipped).toBe(r.summary!.passed);
  });
});
