/**
 * Access control with real clients (issue 6, "Done when": ACLs with two targets and two
 * initiators). One daemon, its own config:
 *
 *   target A (LUNs 0,1,2 = 48, 64, 80 MiB)   target B (LUNs 0,1 = 96, 112 MiB)   target C (16 MiB)
 *     alice     -> every LUN                   bob        -> every LUN              alice
 *     bob       -> his 0 = A's 2               linux-vm   -> its 0 = B's 0
 *     linux-vm  -> its 0,1 = A's 1,2           linux-vm-b -> its 0 = B's 1
 *
 * Every LU has its own serial and NAA, so a LUN number seen by a client is checked against
 * the LU behind it.
 *  (a) libiscsi's tools with -i: iscsi-ls (SendTargets) shows each initiator only its
 *      targets, iscsi-ls -s (login + REPORT LUNS) only its LUNs with its numbers, iscsi-inq
 *      (VPD 80h) and iscsi-readcapacity16 name the LU behind each number; a login to a
 *      target outside the ACLs is refused with 0202h, an unmapped LUN answers 5/25/00.
 *  (b) the Linux kernel initiator in the VM, with two InitiatorNames (the VM's and a second
 *      open-iscsi iface): discovery, refused logins (iscsiadm 24, the daemon logs 0202h),
 *      sg_luns, sg_xcopy and ddpt --odx between the LUNs it may reach (within A, and from A
 *      to B, whose ACL names it too); then the break-out attempts (the CVE-2020-28374 class)
 *      with sg_raw: EXTENDED COPY naming by NAA an LU the issuing initiator is not mapped to
 *      (on its own target, on a target that names it with another map, on a target that does
 *      not name it) fails with COPY TARGET DEVICE NOT REACHABLE (A/0D/02, the field pointer
 *      at the CSCD), and a ROD token populated by linux-vm is
 *      refused to linux-vm-b, which cannot reach its source, with INVALID TOKEN OPERATION,
 *      TOKEN UNKNOWN (5/23/04); the same token still works for linux-vm. The LUs no attempt
 *      may touch are all zeros on the host afterwards.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  describeIf,
  loginOutcomes,
  md5File,
  pollUntil,
  requireLinuxInitiatorVm,
  requireTarget,
  requireTools,
  run,
  runLinuxInitiatorVm,
  startTarget,
  writeRandomFile,
  type RunResult,
  type Target,
} from './harness';
import { b2b, e4, lid1 } from '../scsi/copy/helpers';
import { wutParams } from '../odx/odx';

const MiB = 1024 * 1024;
const A = 'iqn.2026-11.org.xcopyd:acl-a';
const B = 'iqn.2026-11.org.xcopyd:acl-b';
const C = 'iqn.2026-11.org.xcopyd:acl-c';
const ALICE = 'iqn.2026-11.org.example:alice';
const BOB = 'iqn.2026-11.org.example:bob';
const CAROL = 'iqn.2026-11.org.example:carol'; // in no ACL
const VM = 'iqn.2026-11.org.example:linux-vm';
const VMB = 'iqn.2026-11.org.example:linux-vm-b';

type Lu = 'A0' | 'A1' | 'A2' | 'B0' | 'B1' | 'C0';
const SIZE_MIB: Record<Lu, number> = { A0: 48, A1: 64, A2: 80, B0: 96, B1: 112, C0: 16 };
const SERIAL: Record<Lu, string> = { A0: 'ACLA0', A1: 'ACLA1', A2: 'ACLA2', B0: 'ACLB0', B1: 'ACLB1', C0: 'ACLC0' };
const NAA: Record<Lu, string> = {
  A0: '6001405000000000000000000000a000',
  A1: '6001405000000000000000000000a001',
  A2: '6001405000000000000000000000a002',
  B0: '6001405000000000000000000000b000',
  B1: '6001405000000000000000000000b001',
  C0: '6001405000000000000000000000c000',
};
const naa = (lu: Lu) => Buffer.from(NAA[lu], 'hex');
const lunLine = (lun: number, lu: Lu) =>
  `      - { lun: ${lun}, path: ${lu.toLowerCase()}.img, size: ${SIZE_MIB[lu]}MiB, serial: ${SERIAL[lu]}, naa: '${NAA[lu]}' }`;

const CONFIG = [
  'targets:',
  `  - iqn: ${A}`,
  '    acls:',
  `      - initiator: ${ALICE}`,
  `      - { initiator: ${BOB}, luns: [{ lun: 0, targetLun: 2 }] }`,
  `      - { initiator: ${VM}, luns: [{ lun: 0, targetLun: 1 }, { lun: 1, targetLun: 2 }] }`,
  '    luns:',
  lunLine(0, 'A0'),
  lunLine(1, 'A1'),
  lunLine(2, 'A2'),
  `  - iqn: ${B}`,
  '    acls:',
  `      - initiator: ${BOB}`,
  `      - { initiator: ${VM}, luns: [0] }`,
  `      - { initiator: ${VMB}, luns: [{ lun: 0, targetLun: 1 }] }`,
  '    luns:',
  lunLine(0, 'B0'),
  lunLine(1, 'B1'),
  `  - iqn: ${C}`,
  '    acls:',
  `      - initiator: ${ALICE}`,
  '    luns:',
  lunLine(0, 'C0'),
  '',
].join('\n');

const xcopydOnly = (process.env.INTEROP_TARGET ?? 'xcopyd') !== 'tgt';
const daemonReady = xcopydOnly && requireTarget();
const libiscsiReady =
  daemonReady &&
  requireTools([
    ['iscsi-ls', 'libiscsi-bin'],
    ['iscsi-inq', 'libiscsi-bin'],
    ['iscsi-readcapacity16', 'libiscsi-bin'],
  ]);
const vmReady = daemonReady && requireLinuxInitiatorVm();

let t: Target;

function isAllZero(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(MiB);
    for (let off = 0; ; off += buf.length) {
      const n = fs.readSync(fd, buf, 0, buf.length, off);
      if (n === 0) return true;
      for (let i = 0; i < n; i++) if (buf[i] !== 0) return false;
    }
  } finally {
    fs.closeSync(fd);
  }
}

describeIf(daemonReady && (libiscsiReady || vmReady))('ACLs: three targets, four initiator names; each sees and reaches only its LUs', () => {
  beforeAll(async () => {
    t = await startTarget({ name: 'acl', configYaml: CONFIG, iqn: A });
  }, 60_000);
  afterAll(async () => {
    if (t) await t.stop();
  }, 30_000);

  describeIf(libiscsiReady)('libiscsi tools with -i INITIATOR', () => {
    const portal = () => `iscsi://127.0.0.1:${t.port}`;
    const tool = async (cmd: string, who: string, args: string[]): Promise<RunResult> =>
      run(cmd, ['-i', who, ...args], { timeoutMs: 60_000, logFile: path.join(t.runDir, 'libiscsi-tools.log') });

    /** iscsi-ls [-s]: target -> LUN numbers (empty without -s). */
    async function ls(who: string, showLuns: boolean): Promise<Record<string, number[]>> {
      const r = await tool('iscsi-ls', who, [...(showLuns ? ['-s'] : []), portal()]);
      if (r.code !== 0) throw new Error(`iscsi-ls -i ${who} failed (${r.code}): ${r.stdout}${r.stderr}\n${t.logTail(20)}`);
      const seen: Record<string, number[]> = {};
      let cur = '';
      for (const line of r.stdout.split('\n')) {
        const tm = /^Target:(\S+) Portal:/.exec(line);
        if (tm) seen[(cur = tm[1])] = [];
        const lm = /^Lun:(\d+)\s/.exec(line);
        if (lm) seen[cur].push(Number(lm[1]));
      }
      return seen;
    }

    it('SendTargets (iscsi-ls) lists for each initiator only the targets whose ACLs name it', async () => {
      const seen: Record<string, string[]> = {};
      for (const who of [ALICE, BOB, CAROL, VM, VMB]) seen[who] = Object.keys(await ls(who, false)).sort();
      expect(seen).toEqual({ [ALICE]: [A, C], [BOB]: [A, B], [CAROL]: [], [VM]: [A, B], [VMB]: [B] });
    });

    it('REPORT LUNS (iscsi-ls -s) shows only the mapped LUNs, with the initiator\'s own numbers', async () => {
      expect(await ls(ALICE, true)).toEqual({ [A]: [0, 1, 2], [C]: [0] });
      expect(await ls(BOB, true)).toEqual({ [A]: [0], [B]: [0, 1] });
      expect(await ls(VM, true)).toEqual({ [A]: [0, 1], [B]: [0] });
      expect(await ls(VMB, true)).toEqual({ [B]: [0] });
    });

    it('each LUN number leads to the mapped LU: serial (iscsi-inq, VPD 80h) and capacity (iscsi-readcapacity16)', async () => {
      const cases: Array<[who: string, target: string, lun: number, lu: Lu]> = [
        [ALICE, A, 0, 'A0'],
        [ALICE, A, 1, 'A1'],
        [ALICE, A, 2, 'A2'],
        [ALICE, C, 0, 'C0'],
        [BOB, A, 0, 'A2'],
        [BOB, B, 0, 'B0'],
        [BOB, B, 1, 'B1'],
        [VM, A, 0, 'A1'],
        [VM, A, 1, 'A2'],
        [VM, B, 0, 'B0'],
        [VMB, B, 0, 'B1'],
      ];
      const got: string[] = [];
      const want: string[] = [];
      for (const [who, target, lun, lu] of cases) {
        const url = `${portal()}/${target}/${lun}`;
        const inq = await tool('iscsi-inq', who, ['-e', '1', '-c', '128', url]);
        const cap = await tool('iscsi-readcapacity16', who, ['-s', url]);
        const serial = /Unit Serial Number:\[(.*)\]/.exec(inq.stdout)?.[1];
        got.push(`${who} ${target}/${lun}: ${serial} ${cap.stdout.trim()} (${inq.code},${cap.code})`);
        want.push(`${who} ${target}/${lun}: ${SERIAL[lu]} ${SIZE_MIB[lu] * MiB} (0,0)`);
      }
      expect(got).toEqual(want);
    });

    it('a login to a target outside the ACLs is refused with 0202h; an unmapped LUN does not exist (5/25/00)', async () => {
      const denied: Array<[string, string]> = [
        [ALICE, B],
        [CAROL, A],
        [CAROL, B],
        [CAROL, C],
        [BOB, C],
        [VM, C],
        [VMB, A],
        [VMB, C],
      ];
      const before = loginOutcomes(t).length;
      for (const [who, target] of denied) {
        const r = await tool('iscsi-inq', who, [`${portal()}/${target}/0`]);
        expect([who, target, r.code === 0, `${r.stdout}${r.stderr}`.trim()]).toEqual([
          who,
          target,
          false,
          'Login Failed. Failed to log in to target. Status: Authorization failure(514)',
        ]);
      }
      // the daemon logged each as 0202h, for the initiator that asked
      const want = denied.map(([who]) => `${who} 0202`);
      const logged = await pollUntil(
        () => loginOutcomes(t).slice(before).map((o) => `${o.initiator} ${o.outcome}`),
        (v) => JSON.stringify(v) === JSON.stringify(want),
      );
      expect(logged).toEqual(want);
      // bob's LUN 1 on A and alice's LUN 3: no such LU (libiscsi's TEST UNIT READY after login)
      for (const [who, lun] of [[BOB, 1], [ALICE, 3]] as const) {
        const r = await tool('iscsi-readcapacity16', who, [`${portal()}/${A}/${lun}`]);
        expect([who, lun, r.code === 0, `${r.stdout}${r.stderr}`.trim()]).toEqual([
          who,
          lun,
          false,
          'Login Failed. SENSE KEY:ILLEGAL_REQUEST(5) ASCQ:LOGICAL_UNIT_NOT_SUPPORTED(0x2500)',
        ]);
      }
    });
  });

  describeIf(vmReady)('the Linux kernel initiator, as linux-vm and linux-vm-b', () => {
    const VM_TIMEOUT_S = 420;
    const DATA_MIB = 8;

    it(
      'discovery, login and REPORT LUNS honour the ACLs; sg_xcopy and ddpt --odx work within them; XCOPY and token break-outs fail with the right sense',
      async () => {
        // parameter lists for sg_raw, built here with the in-process tests' builders
        const files = path.join(t.runDir, 'acl');
        fs.mkdirSync(files, { recursive: true });
        const seg = (dstLba: number) => [b2b(0, 1, 16, 0, dstLba)];
        const lists: Record<string, Buffer> = {
          'xc-own-ok.bin': lid1([e4(naa('A1')), e4(naa('A2'))], seg(65536)),
          'xc-cross-ok.bin': lid1([e4(naa('A1')), e4(naa('B0'))], seg(65536)),
          'xc-to-a0.bin': lid1([e4(naa('A1')), e4(naa('A0'))], seg(0)),
          'xc-from-a0.bin': lid1([e4(naa('A0')), e4(naa('A2'))], seg(0)),
          'xc-to-b1.bin': lid1([e4(naa('A1')), e4(naa('B1'))], seg(0)),
          'xc-b-to-a0.bin': lid1([e4(naa('B0')), e4(naa('A0'))], seg(0)),
          'xc-to-c0.bin': lid1([e4(naa('A1')), e4(naa('C0'))], seg(0)),
          'xc-vmb-from-a1.bin': lid1([e4(naa('A1')), e4(naa('B1'))], seg(0)),
          'xc-vmb-to-b0.bin': lid1([e4(naa('B1')), e4(naa('B0'))], seg(0)),
        };
        const wut = wutParams(Buffer.alloc(512), [[98304, 2048]]);
        lists['wut-head.bin'] = wut.subarray(0, 16);
        lists['wut-tail.bin'] = wut.subarray(16 + 512);
        for (const [name, b] of Object.entries(lists)) fs.writeFileSync(path.join(files, name), b);
        const data = path.join(t.runDir, 'data.bin');
        writeRandomFile(data, DATA_MIB * MiB);
        const md5 = md5File(data);

        const before = loginOutcomes(t).length;
        const vm = await runLinuxInitiatorVm(t, {
          name: 'acl',
          script: path.join(__dirname, 'guest', 'acl.sh'),
          args: ['-i', VM],
          env: { A_IQN: A, B_IQN: B, C_IQN: C, VMB_IQN: VMB, DATA_MIB: String(DATA_MIB) },
          files: [files, data, path.join(__dirname, 'guest', 'ddpt-odx-client.sh')],
          timeoutS: VM_TIMEOUT_S,
        });
        if (vm.code !== 0 || !vm.markers.has('DONE')) throw new Error(vm.diag());
        const m = (k: string) => vm.marker(k);
        const lastLba = (lu: Lu) => String((SIZE_MIB[lu] * MiB) / 512 - 1);

        // discovery, refused logins, REPORT LUNS, the LU behind each number
        expect({
          discVm: m('DISC_VM'),
          loginVmToC: m('LOGIN_VM_C'),
          lunsVmA: m('LUNS_VM_A'),
          lunsVmB: m('LUNS_VM_B'),
          vmA0: [m('SERIAL_VM_A0'), m('LAST_LBA_VM_A0')],
          vmA1: [m('SERIAL_VM_A1'), m('LAST_LBA_VM_A1')],
          vmB0: [m('SERIAL_VM_B0'), m('LAST_LBA_VM_B0')],
          discVmb: m('DISC_VMB'),
          loginVmbToA: m('LOGIN_VMB_A'),
          lunsVmb: m('LUNS_VMB'),
          vmb0: [m('SERIAL_VMB_0'), m('LAST_LBA_VMB_0')],
        }).toEqual({
          discVm: `${A} ${B}`,
          loginVmToC: '24', // ISCSI_ERR_LOGIN_AUTH_FAILED: "login failed due to authorization failure"
          lunsVmA: '0000000000000000 0001000000000000',
          lunsVmB: '0000000000000000',
          vmA0: [SERIAL.A1, lastLba('A1')],
          vmA1: [SERIAL.A2, lastLba('A2')],
          vmB0: [SERIAL.B0, lastLba('B0')],
          discVmb: B,
          loginVmbToA: '24',
          lunsVmb: '0000000000000000',
          vmb0: [SERIAL.B1, lastLba('B1')],
        });
        const wantLogins = [`${VM} admitted ${A}`, `${VM} admitted ${B}`, `${VM} 0202`, `${VMB} 0202`, `${VMB} admitted ${B}`];
        const logins = await pollUntil(
          () =>
            loginOutcomes(t)
              .slice(before)
              .filter((o) => o.sessionType === 'Normal')
              .map((o) => `${o.initiator} ${o.outcome}${o.target ? ` ${o.target}` : ''}`),
          (v) => JSON.stringify(v) === JSON.stringify(wantLogins),
        );
        expect(logins).toEqual(wantLogins);

        // copies within the map
        expect({
          file: m('MD5_FILE'),
          sgXcopy: m('MD5_SG_XCOPY'),
          sgXcopyAtoB: m('MD5_SG_XCOPY_CROSS'),
          ddptOdx: m('MD5_DDPT_ODX'),
          ddptOdxAtoB: m('MD5_DDPT_ODX_CROSS'),
        }).toEqual({ file: md5, sgXcopy: md5, sgXcopyAtoB: md5, ddptOdx: md5, ddptOdxAtoB: md5 });

        // break-outs: exact sense bytes (sg_raw exits 10 for COPY ABORTED, 5 for ILLEGAL
        // REQUEST). EXTENDED COPY: fixed format, COPY ABORTED, 0D/02,
        // sense-key specific = SKSV, field pointer (from the start of the parameter list) at
        // the CSCD descriptor that names the unreachable LU: 16 for the first, 48 for the second.
        const notReachable = (fieldPointer: number) =>
          `rc=10 status=Check_Condition sense=${senseHex(0x0a, 0x0d, 0x02, [0x80, fieldPointer >> 8, fieldPointer & 0xff])}`;
        expect({
          ownOk: m('RAW_XC_OWN_OK'),
          crossOk: m('RAW_XC_CROSS_OK'),
          toA0: m('RAW_XC_TO_A0'),
          fromA0: m('RAW_XC_FROM_A0'),
          toB1: m('RAW_XC_TO_B1'),
          onBToA0: m('RAW_XC_B_TO_A0'),
          toC0: m('RAW_XC_TO_C0'),
          vmbFromA1: m('RAW_XC_VMB_FROM_A1'),
          vmbToB0: m('RAW_XC_VMB_TO_B0'),
        }).toEqual({
          ownOk: 'rc=0 status=Good sense=',
          crossOk: 'rc=0 status=Good sense=',
          toA0: notReachable(48),
          fromA0: notReachable(16),
          toB1: notReachable(48),
          onBToA0: notReachable(48),
          toC0: notReachable(48),
          vmbFromA1: notReachable(16),
          vmbToB0: notReachable(48),
        });
        // the token: linux-vm-b cannot reach A1, so the token is unknown to it; linux-vm may use it
        expect({
          ptTransferCount: m('PT_TC'),
          tokenBytes: m('TOKEN_BYTES'),
          wutVmb: m('RAW_WUT_VMB'),
          wutVm: m('RAW_WUT_VM'),
          wutVmData: m('MD5_WUT_VM'),
        }).toEqual({
          ptTransferCount: '2048',
          tokenBytes: '512',
          wutVmb: `rc=5 status=Check_Condition sense=${senseHex(0x05, 0x23, 0x04)}`,
          wutVm: 'rc=0 status=Good sense=',
          wutVmData: m('MD5_FILE_1MIB'),
        });

        // on the host: nothing reached the LUs no one of them may write
        const dataDir = t.dataDir!;
        expect({ a0: isAllZero(path.join(dataDir, 'a0.img')), b1: isAllZero(path.join(dataDir, 'b1.img')), c0: isAllZero(path.join(dataDir, 'c0.img')) }).toEqual({
          a0: true,
          b1: true,
          c0: true,
        });
        // A2's first 16 blocks still hold sg_xcopy's copy (the A0 -> A2 attempt would have zeroed them)
        const a2 = fs.readFileSync(path.join(dataDir, 'a2.img')).subarray(0, 16 * 512);
        expect(a2.equals(fs.readFileSync(data).subarray(0, 16 * 512))).toBe(true);
        console.log(`[acl] VM run ${vm.ms} ms; ddpt range descriptors shift: ${m('SHIFT')}`);
      },
      (VM_TIMEOUT_S + 120) * 1000,
    );
  });
});

/** Fixed-format sense data (18 bytes) as sg_raw prints it: lowercase hex, space separated. */
function senseHex(key: number, asc: number, ascq: number, sks: [number, number, number] = [0, 0, 0]): string {
  const b = Buffer.alloc(18);
  b[0] = 0x70;
  b[2] = key;
  b[7] = 10;
  b[12] = asc;
  b[13] = ascq;
  b[15] = sks[0];
  b[16] = sks[1];
  b[17] = sks[2];
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
}
