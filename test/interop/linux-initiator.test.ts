/**
 * The Linux kernel initiator (open-iscsi + iscsi_tcp) in a QEMU VM, through the shared tool
 * ../shared/tools/linux-initiator (run.sh; TCG, ~30-60 s per run). Two runs:
 *  (a) CRC32C header and data digests required by the initiator (no "None" offered);
 *  (b) CHAP: the VM's init logs in with run.sh -u; on the second login a wrong secret must
 *      be refused first.
 * Each: log in, write 32 MiB of random data with O_DIRECT, log out, log in again, read the
 * bytes back with O_DIRECT, compare md5 (guest/write-relogin-read.sh).
 *
 * Needs root (run.sh puts QEMU in its own network namespace) and the tool's image
 * (build.sh; .ci/run builds it first).
 */
import * as path from 'node:path';
import {
  describeIf,
  md5File,
  run,
  startTarget,
  writeRandomFile,
  type ChapSecret,
  type Target,
  requireLinuxInitiatorVm,
  LINUX_INITIATOR_RUN_SH,
} from './harness';

const DATA_MIB = 32;
const VM_TIMEOUT_S = 300;
const RUN_SH = LINUX_INITIATOR_RUN_SH;
const CMDS = path.join(__dirname, 'guest', 'write-relogin-read.sh');
/** The CHAP contract with xcopyd's --config (see harness.xcopydConfigYaml). */
const CHAP: ChapSecret = { user: 'harnessuser', secret: 'harnesssecret12' };

const ready =
  requireLinuxInitiatorVm();

interface VmRun {
  code: number | null;
  out: string;
  markers: Map<string, string[]>;
}

async function runVm(t: Target, name: string, extraArgs: string[], env: Record<string, string>): Promise<VmRun> {
  const data = path.join(t.runDir, 'data.bin');
  writeRandomFile(data, DATA_MIB * 1024 * 1024);
  const args = ['-p', String(t.port), '-t', t.iqn, '-T', String(VM_TIMEOUT_S), '-o', path.join(t.runDir, `vm-${name}`), '-f', data];
  const vars: Record<string, string> = {
    DATA_FILE: '/harness/files/data.bin',
    DATA_MIB: String(DATA_MIB),
    DATA_LUN: String(t.dataLuns[0]),
    ...env,
  };
  for (const [k, v] of Object.entries(vars)) args.push('-E', `${k}=${v}`);
  args.push(...extraArgs, CMDS);
  const r = await run(RUN_SH, args, {
    timeoutMs: (VM_TIMEOUT_S + 60) * 1000,
    logFile: path.join(t.runDir, `run-sh-${name}.log`),
  });
  const out = `${r.stdout}\n--- run.sh stderr ---\n${r.stderr}`;
  const markers = new Map<string, string[]>();
  for (const m of r.stdout.matchAll(/^@@([A-Z_0-9]+)(?: (.*))?$/gm)) {
    const list = markers.get(m[1]) ?? [];
    list.push((m[2] ?? '').trim());
    markers.set(m[1], list);
  }
  const md5 = md5File(data);
  const vm: VmRun = { code: r.code, out, markers };
  const diag = () => `${out.split('\n').slice(-120).join('\n')}\n--- target log tail (${t.logFile}) ---\n${t.logTail(40)}`;
  if (r.code !== 0 || !markers.has('DONE')) {
    throw new Error(`run.sh exit ${r.code}${r.timedOut ? ' (timed out)' : ''}, ${markers.get('FAIL')?.join('; ') ?? 'no @@DONE'}\n${diag()}`);
  }
  expect({ file: markers.get('MD5_FILE')?.[0], read: markers.get('MD5_READ')?.[0] }).toEqual({ file: md5, read: md5 });
  return vm;
}

function count(text: string, re: RegExp): number {
  return [...text.matchAll(re)].length;
}

describeIf(ready)('Linux kernel initiator (open-iscsi in a VM)', () => {
  it(
    'with CRC32C header and data digests required: write 32 MiB O_DIRECT, log out, log in, read back',
    async () => {
      const t = await startTarget({ name: 'linux-digests' });
      try {
        const vm = await runVm(
          t,
          'digests',
          ['-e', 'node.conn[0].iscsi.HeaderDigest = CRC32C', '-e', 'node.conn[0].iscsi.DataDigest = CRC32C'],
          {},
        );
        // both sessions (before and after the re-login) negotiated the digests
        expect(count(vm.out, /^\s*HeaderDigest: CRC32C$/gm)).toBeGreaterThanOrEqual(2);
        expect(count(vm.out, /^\s*DataDigest: CRC32C$/gm)).toBeGreaterThanOrEqual(2);
        expect(vm.markers.has('LOGGED_OUT')).toBe(true);
      } finally {
        await t.stop();
      }
    },
    (VM_TIMEOUT_S + 120) * 1000,
  );

  it(
    'with CHAP: log in, write 32 MiB O_DIRECT, log out, refuse no-CHAP and a wrong secret, log in, read back',
    async () => {
      const t = await startTarget({ name: 'linux-chap', chap: CHAP });
      try {
        const vm = await runVm(t, 'chap', ['-u', `${CHAP.user}:${CHAP.secret}`], {
          CHAP_USER: CHAP.user,
          CHAP_PASS: CHAP.secret,
          BAD_PASS: 'wrongsecret123',
        });
        expect(vm.markers.has('NO_CHAP_REFUSED')).toBe(true);
        expect(vm.markers.has('BAD_CHAP_REFUSED')).toBe(true);
        expect(count(vm.out, new RegExp(`^\\s*username: ${CHAP.user}$`, 'gm'))).toBeGreaterThanOrEqual(2);
      } finally {
        await t.stop();
      }
    },
    (VM_TIMEOUT_S + 120) * 1000,
  );
});
