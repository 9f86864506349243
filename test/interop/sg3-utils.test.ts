/**
 * sg3_utils through the Linux kernel initiator (open-iscsi in a QEMU VM, the shared tool
 * ../shared/tools/linux-initiator; TCG, ~30-60 s), issue 3's "Linux kernel initiator" list,
 * all in one VM run (guest/sg3-utils.sh):
 *  - sg_inq; sg_vpd on every page VPD 00h lists; sg_readcap -l with lbpme=1; sg_opcodes; sg_rtpg;
 *  - sg_persist: register, reserve, read keys / reservation / full status / capabilities, release;
 *  - sg_unmap, sg_write_same --unmap (16 and 10), then sg_get_lba_status says deallocated, and
 *    here on the host the backing file has holes there (SEEK_HOLE/SEEK_DATA and st_blocks);
 *  - sg_compare_and_write: GOOD on a match, MISCOMPARE (exit 14) on a mismatch.
 *
 * Needs root (run.sh puts QEMU in its own network namespace) and the tool's image; a missing
 * prerequisite skips loudly, or fails under CI=true.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileStore } from '../../src/backing/file-store';
import {
  describeIf,
  run,
  startTarget,
  requireLinuxInitiatorVm,
  LINUX_INITIATOR_RUN_SH,
} from './harness';

const VM_TIMEOUT_S = 300;
const RUN_SH = LINUX_INITIATOR_RUN_SH;
const CMDS = path.join(__dirname, 'guest', 'sg3-utils.sh');
const BS = 512;

const ready =
  requireLinuxInitiatorVm();

describeIf(ready)('sg3_utils through the Linux kernel initiator', () => {
  it(
    'identification, VPD pages, READ CAPACITY(16), opcodes, RTPG, PR, UNMAP/WRITE SAME + GET LBA STATUS with real holes, COMPARE AND WRITE',
    async () => {
      const t = await startTarget({ name: 'sg3-utils' });
      try {
        const lun = t.dataLuns[0];
        const args = ['-p', String(t.port), '-t', t.iqn, '-T', String(VM_TIMEOUT_S), '-o', path.join(t.runDir, 'vm'), '-E', `DATA_LUN=${lun}`, CMDS];
        const r = await run(RUN_SH, args, { timeoutMs: (VM_TIMEOUT_S + 60) * 1000, logFile: path.join(t.runDir, 'run-sh.log') });
        const out = `${r.stdout}\n--- run.sh stderr ---\n${r.stderr}`;
        const diag = (): string => `${out.split('\n').slice(-150).join('\n')}\n--- target log tail (${t.logFile}) ---\n${t.logTail(40)}`;
        const markers = (name: string): string[] => [...r.stdout.matchAll(new RegExp(`^@@${name}(?: (.*))?$`, 'gm'))].map((m) => (m[1] ?? '').trim());
        const failed = markers('FAIL');
        if (r.code !== 0 || failed.length || markers('DONE').length === 0) {
          throw new Error(`run.sh exit ${r.code}${r.timedOut ? ' (timed out)' : ''}; failed: ${failed.join('; ') || '-'}\n${diag()}`);
        }
        const passed = new Set(markers('OK'));
        for (const check of ['sg_inq', 'sg_readcap', 'sg_opcodes', 'sg_rtpg', 'pr_register', 'pr_reserve', 'pr_read_keys', 'pr_read_reservation', 'pr_release', 'pr_released', 'sg_unmap', 'sg_write_same_16', 'sg_write_same_10', 'caw_match', 'caw_miscompare', 'caw_written_once']) {
          expect({ check, passed: passed.has(check) }).toEqual({ check, passed: true });
        }
        // every page VPD 00h lists was asked for and answered
        const pages = markers('VPD_PAGES')[0]?.split(/\s+/) ?? [];
        expect(pages).toEqual(expect.arrayContaining(['00', '80', '83', 'b0', 'b1', 'b2']));
        for (const p of pages) expect(passed.has(`sg_vpd_0x${p}`)).toBe(true);

        // The backing file really has holes where the guest deallocated (xcopyd: <dataDir>/lun0.img).
        if (t.kind === 'xcopyd' && t.dataDir) {
          const [a, b, c, n] = markers('DEALLOCATED')[0].split(/\s+/).map(Number);
          const file = path.join(t.dataDir, `lun${lun}.img`);
          const store = await FileStore.open({ path: file, readOnly: true });
          try {
            for (const lba of [a, b, c]) {
              const start = lba * BS;
              const end = (lba + n) * BS;
              expect({ lba, hole: await store.seekHole(start) }).toEqual({ lba, hole: start });
              expect(await store.seekData(start)).toBeGreaterThanOrEqual(end);
              expect({ lba, dataAfter: await store.seekData(end) }).toEqual({ lba, dataAfter: end }); // the 1 MiB after each range stays written
            }
          } finally {
            await store.close();
          }
          // 6 MiB written, 3 MiB of it deallocated: about 3 MiB allocated (plus a few blocks for COMPARE AND WRITE).
          const allocated = fs.statSync(file).blocks * 512;
          expect(allocated).toBeGreaterThanOrEqual(3 * 1024 * 1024);
          expect(allocated).toBeLessThan(4 * 1024 * 1024);
        }
      } finally {
        await t.stop();
      }
    },
    (VM_TIMEOUT_S + 120) * 1000,
  );
});
