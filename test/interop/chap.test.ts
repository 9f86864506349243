/**
 * CHAP with the Linux kernel initiator (issue 6, "Done when": CHAP), one VM run against one
 * daemon with three targets:
 *   chap-oneway  target-level one-way CHAP;
 *   chap-mutual  target-level CHAP with mutual credentials (the target authenticates back);
 *   chap-acl     an ACL entry for the VM with its own CHAP and mutual credentials.
 * open-iscsi logs in with CHAP and with mutual CHAP (the session shows username and
 * username_in; 1 MiB written and read back with O_DIRECT through each). Refused, each with
 * iscsiadm exit 24 (ISCSI_ERR_LOGIN_AUTH_FAILED) and, in the daemon's log, login status 0201h
 * (authentication failure) after the failed-login delay: no CHAP, a wrong secret, an unknown
 * user, a wrong secret on the mutual target, another target's credentials on the ACL entry.
 * And the other direction: an initiator that expects another target secret refuses the
 * target's answer (iscsiadm 19, a non-retryable login failure), so that session never reaches
 * full feature phase.
 * (linux-initiator.test.ts keeps its one-way CHAP write / re-login / read run.)
 */
import * as path from 'node:path';
import {
  describeIf,
  loginOutcomes,
  md5File,
  pollUntil,
  requireLinuxInitiatorVm,
  runLinuxInitiatorVm,
  startTarget,
  writeRandomFile,
  type Target,
} from './harness';

const ONEWAY = 'iqn.2026-11.org.xcopyd:chap-oneway';
const MUTUAL = 'iqn.2026-11.org.xcopyd:chap-mutual';
const ACL = 'iqn.2026-11.org.xcopyd:chap-acl';
const VM = 'iqn.2026-11.org.example:chap-vm';
const ONEWAY_CHAP = { user: 'oneway-user', secret: 'oneway-secret12' };
const MUTUAL_CHAP = { user: 'mutual-user', secret: 'mutual-secret12', mutual: { user: 'mutual-target', secret: 'target-secret1' } };
const ACL_CHAP = { user: 'vm-acl', secret: 'vm-acl-secret1', mutual: { user: 'acl-target', secret: 'acl-tgt-secret' } };
const BAD_PASS = 'wrong-secret12';
/** limits.authFailureDelayMs's default (iscsi/types.ts): a refused CHAP login waits this long. */
const AUTH_FAILURE_DELAY_MS = 1000;

const CONFIG = [
  'targets:',
  `  - iqn: ${ONEWAY}`,
  `    chap: { user: ${ONEWAY_CHAP.user}, secret: ${ONEWAY_CHAP.secret} }`,
  '    luns: [{ lun: 0, path: oneway0.img, size: 64MiB }]',
  `  - iqn: ${MUTUAL}`,
  `    chap: { user: ${MUTUAL_CHAP.user}, secret: ${MUTUAL_CHAP.secret}, mutual: { user: ${MUTUAL_CHAP.mutual.user}, secret: ${MUTUAL_CHAP.mutual.secret} } }`,
  '    luns: [{ lun: 0, path: mutual0.img, size: 64MiB }]',
  `  - iqn: ${ACL}`,
  '    acls:',
  `      - initiator: ${VM}`,
  `        chap: { user: ${ACL_CHAP.user}, secret: ${ACL_CHAP.secret}, mutual: { user: ${ACL_CHAP.mutual.user}, secret: ${ACL_CHAP.mutual.secret} } }`,
  '    luns: [{ lun: 0, path: acl0.img, size: 64MiB }]',
  '',
].join('\n');

const xcopydOnly = (process.env.INTEROP_TARGET ?? 'xcopyd') !== 'tgt';
const ready = xcopydOnly && requireLinuxInitiatorVm();
const VM_TIMEOUT_S = 300;

describeIf(ready)('CHAP with the Linux kernel initiator: one-way, mutual, per ACL entry, and refusals', () => {
  let t: Target;
  beforeAll(async () => {
    t = await startTarget({ name: 'chap', configYaml: CONFIG, iqn: ONEWAY });
  }, 60_000);
  afterAll(async () => {
    if (t) await t.stop();
  }, 30_000);

  it(
    'logs in with CHAP and mutual CHAP and does I/O; wrong secrets are refused with 0201h; a target that fails mutual CHAP is refused by the initiator',
    async () => {
      const data = path.join(t.runDir, 'data.bin');
      writeRandomFile(data, 1024 * 1024);
      const md5 = md5File(data);
      const vm = await runLinuxInitiatorVm(t, {
        name: 'chap',
        script: path.join(__dirname, 'guest', 'chap.sh'),
        args: ['-L', '-i', VM],
        files: [data],
        timeoutS: VM_TIMEOUT_S,
        env: {
          ONEWAY_IQN: ONEWAY,
          ONEWAY_USER: ONEWAY_CHAP.user,
          ONEWAY_PASS: ONEWAY_CHAP.secret,
          MUTUAL_IQN: MUTUAL,
          MUTUAL_USER: MUTUAL_CHAP.user,
          MUTUAL_PASS: MUTUAL_CHAP.secret,
          MUTUAL_TUSER: MUTUAL_CHAP.mutual.user,
          MUTUAL_TPASS: MUTUAL_CHAP.mutual.secret,
          ACL_IQN: ACL,
          ACL_USER: ACL_CHAP.user,
          ACL_PASS: ACL_CHAP.secret,
          ACL_TUSER: ACL_CHAP.mutual.user,
          ACL_TPASS: ACL_CHAP.mutual.secret,
          BAD_PASS,
        },
      });
      if (vm.code !== 0 || !vm.markers.has('DONE')) throw new Error(vm.diag());
      const m = (k: string) => vm.marker(k);
      const AUTH = '24 - iSCSI login failed due to authorization failure';

      // the sessions that were let in: CHAP as configured, and working I/O
      expect({
        oneway: [m('RC_ONEWAY'), m('USER_ONEWAY'), m('USER_IN_ONEWAY'), m('MD5_ONEWAY')],
        mutual: [m('RC_MUTUAL'), m('USER_MUTUAL'), m('USER_IN_MUTUAL'), m('MD5_MUTUAL')],
        acl: [m('RC_ACL'), m('USER_ACL'), m('USER_IN_ACL'), m('MD5_ACL')],
      }).toEqual({
        oneway: ['0', ONEWAY_CHAP.user, '<empty>', md5],
        mutual: ['0', MUTUAL_CHAP.user, MUTUAL_CHAP.mutual.user, md5],
        acl: ['0', ACL_CHAP.user, ACL_CHAP.mutual.user, md5],
      });
      // the refused ones, as iscsiadm reports them
      // (a target that fails mutual CHAP is a failure on the initiator's side: open-iscsi gives
      // up with 19, ISCSI_ERR_FATAL_LOGIN, and does not retry)
      const refused = ['ONEWAY_NO_CHAP', 'ONEWAY_BAD_SECRET', 'ONEWAY_BAD_USER', 'MUTUAL_BAD_SECRET', 'MUTUAL_TARGET_FAILS', 'ACL_OTHER_CREDENTIALS'];
      expect(Object.fromEntries(refused.map((k) => [k, `${m(`RC_${k}`)} ${m(`MSG_${k}`)}`]))).toEqual({
        ...Object.fromEntries(refused.map((k) => [k, `24 ${AUTH}`])),
        MUTUAL_TARGET_FAILS: '19 19 - encountered non-retryable iSCSI login failure',
      });

      // and as the daemon logged them, in order: 0201h after the failed-login delay; the
      // login whose target failed mutual CHAP never reached full feature phase
      const want = [
        `${VM} 0201`, // one-way: no CHAP offered
        `${VM} 0201`, // one-way: wrong secret
        `${VM} 0201`, // one-way: unknown user
        `${VM} admitted ${ONEWAY}`,
        `${VM} 0201`, // mutual: wrong initiator secret
        `${VM} abandoned`, // mutual: the initiator refused the target's answer
        `${VM} admitted ${MUTUAL}`,
        `${VM} 0201`, // ACL entry: another target's credentials
        `${VM} admitted ${ACL}`,
      ];
      // open-iscsi under TCG sometimes opens a second TCP connection for one iscsiadm login
      // (the kernel logs "Login/Text in progress. Cannot start new task" and iscsid starts
      // over): the first one is abandoned after its Login request, which is the initiator's
      // doing. CI saw it once, before "admitted chap-mutual". So a run of abandoned logins
      // counts as one, and an abandoned login right before an admitted one is a retry; the
      // login whose target failed mutual CHAP must still be there, after the wrong secret.
      const line = (o: { initiator: string; outcome: string; target?: string }) => `${o.initiator} ${o.outcome}${o.target ? ` ${o.target}` : ''}`;
      const withoutRetries = (v: string[]) =>
        v.filter((s, i) => !(s.endsWith(' abandoned') && (v[i + 1]?.endsWith(' abandoned') || v[i + 1]?.includes(' admitted '))));
      const targetFailsLogged = (v: string[]) => {
        const admitted = v.indexOf(`${VM} admitted ${MUTUAL}`);
        return admitted > 0 && v[admitted - 1] === `${VM} abandoned` && v.slice(0, admitted).filter((s) => s === `${VM} 0201`).length === 4;
      };
      const same = (v: string[]) => JSON.stringify(withoutRetries(v)) === JSON.stringify(withoutRetries(want)) && targetFailsLogged(v);
      const outcomes = await pollUntil(
        () => loginOutcomes(t).filter((o) => o.sessionType === 'Normal'),
        (v) => same(v.map(line)),
      );
      const logged = outcomes.map(line);
      expect(withoutRetries(logged)).toEqual(withoutRetries(want));
      expect(targetFailsLogged(logged)).toBe(true);
      const delays = outcomes.filter((o) => o.outcome === '0201').map((o) => o.ms!);
      expect(delays.every((ms) => ms >= AUTH_FAILURE_DELAY_MS - 50)).toBe(true);
      console.log(`[chap] VM run ${vm.ms} ms; refused CHAP logins answered after ${delays.join(', ')} ms`);
    },
    (VM_TIMEOUT_S + 120) * 1000,
  );
});
