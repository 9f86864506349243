/**
 * EXTENDED COPY against real peers (issue 4, "Done when"):
 *  (a) libiscsi iscsi-test-cu SCSI.ExtendedCopy.* and SCSI.ReceiveCopyResults.*, the URL
 *      given twice (two paths to the same LU): every test passes, none skips;
 *  (b) qemu-img convert -C (EXTENDED COPY LID1 with two E4h CSCDs, one 02h segment per
 *      request) of 1 GiB of random data LUN 0 -> LUN 1, then qemu-img compare; the offload is
 *      proven by the loopback byte counters, which must move less than 2 % of the copy;
 *  (c) the Linux kernel initiator in the VM: sg_xcopy and ddpt --xcopy, 32 MiB LUN 0 -> LUN 1
 *      and within LUN 0 at another offset, destinations checked by md5.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatCounts, formatNotPassed, parseCUnit } from './cunit';
import {
  describeIf,
  md5File,
  requireTarget,
  requireTool,
  requireTools,
  run,
  startTarget,
  writeRandomFile,
  type Target,
  requireLinuxInitiatorVm,
  LINUX_INITIATOR_RUN_SH,
  loopbackBytes,
} from './harness';

const GiB = 1024 * 1024 * 1024;
const xcopydOnly = (process.env.INTEROP_TARGET ?? 'xcopyd') !== 'tgt';

// ---------------------------------------------------------------------------------------
// (a) libiscsi

const libiscsiReady = xcopydOnly && requireTool('iscsi-test-cu', 'libiscsi-bin') && requireTarget();

describeIf(libiscsiReady)('libiscsi: SCSI.ExtendedCopy.* and SCSI.ReceiveCopyResults.* (URL twice)', () => {
  let t: Target;
  beforeAll(async () => {
    t = await startTarget({ name: 'xcopy-libiscsi' });
  }, 60_000);
  afterAll(async () => {
    if (t) await t.stop();
  }, 30_000);

  it.each([
    ['SCSI.ExtendedCopy.*', 6],
    ['SCSI.ReceiveCopyResults.*', 2],
  ])('%s: every test passes, none skips', async (pattern, expected) => {
    const url = t.url(t.dataLuns[0]);
    const logFile = path.join(t.runDir, `iscsi-test-cu-${pattern.replace(/\W+/g, '_')}.txt`);
    const r = await run('iscsi-test-cu', ['-d', `--test=${pattern}`, url, url], { timeoutMs: 5 * 60_000, logFile });
    const report = parseCUnit(r.stdout, 'SCSI');
    console.log(`[xcopy] ${formatCounts(report)} (${pattern})`);
    if (report.passed !== expected || report.tests.length !== expected) {
      throw new Error(`${formatCounts(report)}\n${formatNotPassed(report)}\noutput: ${logFile}\n--- target log ---\n${t.logTail(30)}`);
    }
    expect({ failed: report.failed, skipped: report.skipped }).toEqual({ failed: 0, skipped: 0 });
    expect(report.summary?.ran).toBe(expected);
  }, 6 * 60_000);
});

// ---------------------------------------------------------------------------------------
// (b) QEMU

const qemuReady = xcopydOnly && requireTools([['qemu-img', 'qemu-utils']]) && requireTarget();

describeIf(qemuReady)('qemu-img convert -C: 1 GiB LUN 0 -> LUN 1 offloaded', () => {
  let t: Target;
  beforeAll(async () => {
    t = await startTarget({ name: 'xcopy-qemu', lunSize: GiB });
  }, 60_000);
  afterAll(async () => {
    if (t) await t.stop();
  }, 30_000);

  it('copies through EXTENDED COPY (loopback moves < 2 % of the bytes), and compare finds the LUNs identical', async () => {
    const file = path.join(t.runDir, 'random-1GiB.bin');
    writeRandomFile(file, t.lunSize);
    const log = path.join(t.runDir, 'qemu-img.log');
    const src = t.url(t.dataLuns[0]);
    const dst = t.url(t.dataLuns[1]);
    const fill = await run('qemu-img', ['convert', '-n', '-W', '-t', 'none', '-f', 'raw', '-O', 'raw', file, src], { timeoutMs: 300_000, logFile: log });
    expect(fill.code).toBe(0);
    fs.rmSync(file);

    const before = loopbackBytes();
    const started = Date.now();
    const copy = await run('qemu-img', ['convert', '-C', '-n', '-m', '1', '-f', 'raw', '-O', 'raw', src, dst], { timeoutMs: 300_000, logFile: log });
    const ms = Date.now() - started;
    const moved = loopbackBytes() - before;
    const ratio = Number(moved) / t.lunSize;
    console.log(`[xcopy] qemu-img convert -C of ${t.lunSize} bytes in ${ms} ms; lo moved ${moved} bytes (${(ratio * 100).toFixed(3)} %)`);
    if (copy.code !== 0) throw new Error(`${copy.stdout}${copy.stderr}\n--- target log ---\n${t.logTail(30)}`);
    // qemu-img falls back to READ/WRITE silently when EXTENDED COPY fails: only the counters prove the offload.
    expect(ratio).toBeLessThan(0.02);

    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, dst], { timeoutMs: 300_000, logFile: log });
    expect(cmp.stdout).toContain('Images are identical');
    expect(cmp.code).toBe(0);
  }, 15 * 60_000);
});

// ---------------------------------------------------------------------------------------
// (c) Linux kernel initiator: sg_xcopy and ddpt --xcopy

const DATA_MIB = 32;
const VM_TIMEOUT_S = 420;
const RUN_SH = LINUX_INITIATOR_RUN_SH;
const vmReady =
  xcopydOnly &&
  requireLinuxInitiatorVm();

describeIf(vmReady)('Linux kernel initiator: sg_xcopy and ddpt --xcopy', () => {
  it(
    '32 MiB LUN 0 -> LUN 1 and within LUN 0 at another offset; the destinations hold exactly the bytes written',
    async () => {
      const t = await startTarget({ name: 'xcopy-linux', lunSize: GiB / 4 });
      try {
        const data = path.join(t.runDir, 'data.bin');
        writeRandomFile(data, DATA_MIB * 1024 * 1024);
        const md5 = md5File(data);
        const args = ['-p', String(t.port), '-t', t.iqn, '-T', String(VM_TIMEOUT_S), '-o', path.join(t.runDir, 'vm'), '-f', data];
        args.push('-E', 'DATA_FILE=/harness/files/data.bin', '-E', `DATA_MIB=${DATA_MIB}`, path.join(__dirname, 'guest', 'xcopy.sh'));
        const r = await run(RUN_SH, args, { timeoutMs: (VM_TIMEOUT_S + 60) * 1000, logFile: path.join(t.runDir, 'run-sh.log') });
        const markers = new Map<string, string>();
        for (const m of r.stdout.matchAll(/^@@([A-Z_0-9]+)(?: (.*))?$/gm)) markers.set(m[1], (m[2] ?? '').trim());
        const diag = `${r.stdout.split('\n').slice(-80).join('\n')}\n--- run.sh stderr ---\n${r.stderr.slice(-3000)}\n--- target log ---\n${t.logTail(30)}`;
        if (r.code !== 0 || !markers.has('DONE')) throw new Error(`run.sh exit ${r.code}: ${markers.get('FAIL') ?? 'no @@DONE'}\n${diag}`);
        expect({
          file: markers.get('MD5_FILE'),
          sgXcopyLun1: markers.get('MD5_SG_XCOPY_LUN1'),
          sgXcopySame: markers.get('MD5_SG_XCOPY_SAME'),
          ddptLun1: markers.get('MD5_DDPT_LUN1'),
          ddptSame: markers.get('MD5_DDPT_SAME'),
        }).toEqual({ file: md5, sgXcopyLun1: md5, sgXcopySame: md5, ddptLun1: md5, ddptSame: md5 });
      } finally {
        await t.stop();
      }
    },
    (VM_TIMEOUT_S + 120) * 1000,
  );
});
