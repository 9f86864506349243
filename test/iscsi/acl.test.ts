/**
 * Access control end to end (issue 6), two ACL'd targets, an open one and a
 * CHAP-guarded one, four initiators, through the real transport:
 *
 *   A (acls): alice -> every LUN; bob -> his LUN 0 is A's LUN 1, nothing else
 *   B (acls): bob -> every LUN
 *   C (open): anyone
 *   D (acls): dave, with his own CHAP credentials
 *
 * Login, SendTargets, REPORT LUNS and the LUN map honour the ACLs; then the
 * break-out attempts (the CVE-2020-28374 class): naming by NAA, in an
 * EXTENDED COPY or through an ODX token, a logical unit the issuing
 * initiator may not reach must fail with COPY TARGET DEVICE NOT REACHABLE
 * (A/0D/02) or the token error, and leave the medium untouched.
 */
import { TestInitiator, cdb, clearUnitAttentions, openSession } from '../support/initiator';
import { startTestDaemon, type TestDaemon } from '../support/daemon';
import { b2b, e4, lid1, lid4, xcopyCdb } from '../scsi/copy/helpers';
import { SENSE, expectGood, expectSense, readBlocks, tokenFor, writeBlocks, writeUsingToken, pattern } from '../odx/odx';

const A = 'iqn.2026-11.org.xcopyd:acl-a';
const B = 'iqn.2026-11.org.xcopyd:acl-b';
const C = 'iqn.2026-11.org.xcopyd:acl-open';
const D = 'iqn.2026-11.org.xcopyd:acl-chap';
const ALICE = 'iqn.2026-11.org.example:alice';
const BOB = 'iqn.2026-11.org.example:bob';
const CAROL = 'iqn.2026-11.org.example:carol';
const DAVE = 'iqn.2026-11.org.example:dave';
const DAVE_CHAP = { user: 'dave', secret: 'dave-secret-12' };
const ERIN = 'iqn.2026-11.org.example:erin';
const ERIN_CHAP = { user: 'erin', secret: 'erin-secret-12', mutual: { user: 'target-d', secret: 'd-proves-itself' } };
const BS = 512;

let td: TestDaemon;

beforeAll(async () => {
  td = await startTestDaemon({
    targets: [
      {
        iqn: A,
        acls: [{ initiator: ALICE }, { initiator: BOB, luns: [{ lun: 0, targetLun: 1 }] }],
        luns: [
          { lun: 0, path: 'a0.img', size: '8MiB' },
          { lun: 1, path: 'a1.img', size: '8MiB' },
        ],
      },
      { iqn: B, acls: [{ initiator: BOB }], luns: [{ lun: 0, path: 'b0.img', size: '8MiB' }] },
      { iqn: C, luns: [{ lun: 0, path: 'c0.img', size: '8MiB' }] },
      { iqn: D, acls: [{ initiator: DAVE, chap: DAVE_CHAP }, { initiator: ERIN, chap: ERIN_CHAP }], luns: [{ lun: 0, path: 'd0.img', size: '8MiB' }] },
    ],
  });
});

afterAll(async () => {
  await td.stop();
});

/** The NAA designator of a target's LU (its own LUN), as VPD 83h reports it. */
function naaOf(target: string, lun: number): Buffer {
  const lt = td.daemon.targets().find((t) => t.config.iqn === target)!;
  return lt.device.logicalUnit(lun)!.identity.naa;
}

async function login(initiatorName: string, targetName: string, chap?: typeof DAVE_CHAP): Promise<TestInitiator> {
  const c = await openSession(td.port, { initiatorName, targetName, chap });
  for (const lun of [0, 1]) await clearUnitAttentions(c, lun).catch(() => undefined);
  return c;
}

function reportLunsCdb(): Buffer {
  const b = Buffer.alloc(12);
  b[0] = 0xa0;
  b.writeUInt32BE(4096, 6);
  return b;
}

async function reportLuns(c: TestInitiator): Promise<number[]> {
  const r = await c.command(0, reportLunsCdb(), { read: 4096 });
  expect(r.status).toBe(0);
  const n = r.data.readUInt32BE(0) / 8;
  return Array.from({ length: n }, (_, i) => r.data.readUInt16BE(8 + 8 * i) & 0x3fff);
}

async function xcopy(c: TestInitiator, lun: number, params: Buffer) {
  return c.command(lun, xcopyCdb(0, params.length), { dataOut: params });
}

function key(r: { status: number; sense?: Buffer }): [number, number, number] {
  expect(r.status).toBe(2);
  return [r.sense![2] & 0x0f, r.sense![12], r.sense![13]];
}

const NOT_REACHABLE: [number, number, number] = [0x0a, 0x0d, 0x02];

describe('login and discovery honour the ACLs', () => {
  it('refuses an initiator outside the ACLs with 0202h, admits the listed ones', async () => {
    for (const [who, target] of [[CAROL, A], [CAROL, B], [ALICE, B], [CAROL, D]] as const) {
      const c = await TestInitiator.connect(td.port);
      const r = await c.login({ initiatorName: who, targetName: target });
      expect([who, target, r.statusClass, r.statusDetail]).toEqual([who, target, 2, 2]);
      c.close();
    }
    for (const [who, target] of [[ALICE, A], [BOB, A], [BOB, B], [CAROL, C]] as const) {
      const c = await login(who, target);
      expect(await c.logout()).toBe(0);
      c.close();
    }
  });

  it('asks an ACL entry\'s own CHAP credentials: dave logs in with them, a wrong secret is 0201h', async () => {
    const ok = await login(DAVE, D, DAVE_CHAP);
    ok.close();
    const c = await TestInitiator.connect(td.port);
    const r = await c.login({ initiatorName: DAVE, targetName: D, chap: { user: 'dave', secret: 'not-his-secret' } });
    expect([r.statusClass, r.statusDetail]).toEqual([2, 1]);
    c.close();
    const none = await TestInitiator.connect(td.port);
    const r2 = await none.login({ initiatorName: DAVE, targetName: D });
    expect([r2.statusClass, r2.statusDetail]).toEqual([2, 1]);
    none.close();
  });

  it('mutual CHAP per ACL entry: erin checks the target\'s proof; dave\'s credentials do not open erin\'s entry', async () => {
    const c = await TestInitiator.connect(td.port);
    const r = await c.login({ initiatorName: ERIN, targetName: D, chap: ERIN_CHAP }); // throws if the target's proof is wrong
    expect(r.statusClass).toBe(0);
    c.close();
    const wrongTarget = await TestInitiator.connect(td.port);
    await expect(wrongTarget.login({ initiatorName: ERIN, targetName: D, chap: { ...ERIN_CHAP, mutual: { user: 'target-d', secret: 'not-the-target1' } } })).rejects.toThrow(/mutual/);
    wrongTarget.close();
    const borrowed = await TestInitiator.connect(td.port);
    const b = await borrowed.login({ initiatorName: ERIN, targetName: D, chap: DAVE_CHAP });
    expect([b.statusClass, b.statusDetail]).toEqual([2, 1]);
    borrowed.close();
  });

  it('SendTargets lists only the targets the initiator may log in to', async () => {
    const seen = async (who: string) => {
      const c = await openSession(td.port, { initiatorName: who, sessionType: 'Discovery' });
      const r = await c.text([['SendTargets', 'All']]);
      c.close();
      return [...(r.TargetName ?? [])].sort();
    };
    expect(await seen(ALICE)).toEqual([A, C].sort());
    expect(await seen(BOB)).toEqual([A, B, C].sort());
    expect(await seen(CAROL)).toEqual([C]);
    expect(await seen(DAVE)).toEqual([C, D].sort());
  });
});

describe('REPORT LUNS and the LUN map', () => {
  it('shows each initiator its own LUNs; bob\'s LUN 0 is A\'s LUN 1; his LUN 1 does not exist', async () => {
    const alice = await login(ALICE, A);
    const bob = await login(BOB, A);
    try {
      expect(await reportLuns(alice)).toEqual([0, 1]);
      expect(await reportLuns(bob)).toEqual([0]);
      const data = pattern(8 * BS, 11);
      await writeBlocks(alice, 1, 100, data);
      expect((await readBlocks(bob, 0, 100, 8)).equals(data)).toBe(true);
      const other = pattern(8 * BS, 12);
      await writeBlocks(alice, 0, 100, other);
      expect((await readBlocks(bob, 0, 100, 8)).equals(data)).toBe(true); // still A's LUN 1, never LUN 0
      expect(key(await bob.command(1, cdb.read10(0, 1), { read: BS }))).toEqual([0x05, 0x25, 0x00]);
      // INQUIRY to an unmapped LUN: peripheral qualifier 011b (no LU at this LUN).
      const inq = await bob.command(1, cdb.inquiry(36), { read: 36 });
      expect(inq.status).toBe(0);
      expect(inq.data[0] >> 5).toBe(3);
    } finally {
      alice.close();
      bob.close();
    }
  });
});

describe('EXTENDED COPY cannot break out of the ACLs (CVE-2020-28374 class)', () => {
  it('alice on A names B\'s LU by its NAA: A/0D/02, B untouched, either direction, LID1 and LID4', async () => {
    const bob = await login(BOB, B);
    const alice = await login(ALICE, A);
    try {
      const marker = Buffer.alloc(8 * BS, 0x5b);
      await writeBlocks(bob, 0, 0, marker);
      await writeBlocks(alice, 0, 0, pattern(8 * BS, 1));
      expect(key(await xcopy(alice, 0, lid1([e4(naaOf(A, 0)), e4(naaOf(B, 0))], [b2b(0, 1, 8, 0, 0)])))).toEqual(NOT_REACHABLE);
      const p4 = lid4([e4(naaOf(A, 0)), e4(naaOf(B, 0))], [b2b(0, 1, 8, 0, 0)], { listId: 7 });
      expect(key(await alice.command(0, xcopyCdb(1, p4.length), { dataOut: p4 }))).toEqual(NOT_REACHABLE);
      expect((await readBlocks(bob, 0, 0, 8)).equals(marker)).toBe(true);
      // Reading B into A (exfiltration) is refused the same way.
      expect(key(await xcopy(alice, 0, lid1([e4(naaOf(B, 0)), e4(naaOf(A, 0))], [b2b(0, 1, 8, 0, 0)])))).toEqual(NOT_REACHABLE);
      expect((await readBlocks(alice, 0, 0, 8)).equals(pattern(8 * BS, 1))).toBe(true);
    } finally {
      alice.close();
      bob.close();
    }
  });

  it('bob on A names A\'s LUN 0, which his LUN map leaves out: A/0D/02; his own mapped LU works', async () => {
    const bob = await login(BOB, A);
    const alice = await login(ALICE, A);
    try {
      const before = await readBlocks(alice, 0, 200, 8);
      expect(key(await xcopy(bob, 0, lid1([e4(naaOf(A, 1)), e4(naaOf(A, 0))], [b2b(0, 1, 8, 0, 200)])))).toEqual(NOT_REACHABLE);
      expect(key(await xcopy(bob, 0, lid1([e4(naaOf(A, 0)), e4(naaOf(A, 1))], [b2b(0, 1, 8, 0, 300)])))).toEqual(NOT_REACHABLE);
      expect((await readBlocks(alice, 0, 200, 8)).equals(before)).toBe(true);
      // Within his map: A's LUN 1 onto itself, named by NAA.
      const data = pattern(8 * BS, 21);
      await writeBlocks(bob, 0, 400, data);
      const ok = await xcopy(bob, 0, lid1([e4(naaOf(A, 1)), e4(naaOf(A, 1))], [b2b(0, 1, 8, 400, 500)]));
      expect(ok.status).toBe(0);
      expect((await readBlocks(alice, 1, 500, 8)).equals(data)).toBe(true);
    } finally {
      alice.close();
      bob.close();
    }
  });

  it('bob, named by both A and B, copies from his mapped LU of A to B; not from A\'s LUN 0', async () => {
    const onB = await login(BOB, B);
    const alice = await login(ALICE, A);
    try {
      const data = pattern(8 * BS, 31);
      await writeBlocks(alice, 1, 600, data);
      expectGood(await xcopy(onB, 0, lid1([e4(naaOf(A, 1)), e4(naaOf(B, 0))], [b2b(0, 1, 8, 600, 700)])), 'bob A1 -> B0');
      expect((await readBlocks(onB, 0, 700, 8)).equals(data)).toBe(true);
      expect(key(await xcopy(onB, 0, lid1([e4(naaOf(A, 0)), e4(naaOf(B, 0))], [b2b(0, 1, 8, 0, 800)])))).toEqual(NOT_REACHABLE);
    } finally {
      alice.close();
      onB.close();
    }
  });

  it('carol on the open target names every other LU: all refused', async () => {
    const carol = await login(CAROL, C);
    try {
      for (const [t, lun] of [[A, 0], [A, 1], [B, 0], [D, 0]] as const) {
        expect(key(await xcopy(carol, 0, lid1([e4(naaOf(C, 0)), e4(naaOf(t, lun))], [b2b(0, 1, 8, 0, 0)])))).toEqual(NOT_REACHABLE);
        expect(key(await xcopy(carol, 0, lid1([e4(naaOf(t, lun)), e4(naaOf(C, 0))], [b2b(0, 1, 8, 0, 0)])))).toEqual(NOT_REACHABLE);
      }
    } finally {
      carol.close();
    }
  });

  it('claiming a name is not proving it: "dave" on the open target cannot reach D, whose ACL asks dave for CHAP', async () => {
    const real = await login(DAVE, D, DAVE_CHAP);
    const claimed = await login(DAVE, C); // C asks nothing: anyone can say they are dave
    try {
      const marker = Buffer.alloc(8 * BS, 0xd0);
      await writeBlocks(real, 0, 0, marker);
      expect(key(await xcopy(claimed, 0, lid1([e4(naaOf(C, 0)), e4(naaOf(D, 0))], [b2b(0, 1, 8, 0, 0)])))).toEqual(NOT_REACHABLE);
      expect(key(await xcopy(claimed, 0, lid1([e4(naaOf(D, 0)), e4(naaOf(C, 0))], [b2b(0, 1, 8, 0, 0)])))).toEqual(NOT_REACHABLE);
      expect((await readBlocks(real, 0, 0, 8)).equals(marker)).toBe(true);
    } finally {
      real.close();
      claimed.close();
    }
  });
});

describe('ODX tokens cannot break out of the ACLs', () => {
  it('a token of A\'s LUN 0 is refused for bob (A maps him LUN 1 only) and for carol; alice may use it', async () => {
    const alice = await login(ALICE, A);
    const bobA = await login(BOB, A);
    const bobB = await login(BOB, B);
    const carol = await login(CAROL, C);
    try {
      const data = pattern(16 * BS, 41);
      await writeBlocks(alice, 0, 1000, data);
      const token = await tokenFor(alice, 0, 1, [[1000, 16]]);
      const marker = Buffer.alloc(16 * BS, 0x7e);
      for (const [who, c] of [['bob on A', bobA], ['bob on B', bobB], ['carol on C', carol]] as const) {
        await writeBlocks(c, 0, 2000, marker);
        expectSense(await writeUsingToken(c, 0, 2, token, [[2000, 16]]), SENSE.TOKEN_UNKNOWN, who);
        expect((await readBlocks(c, 0, 2000, 16)).equals(marker)).toBe(true);
      }
      expectGood(await writeUsingToken(alice, 1, 3, token, [[3000, 16]]), 'alice A0 -> A1');
      expect((await readBlocks(alice, 1, 3000, 16)).equals(data)).toBe(true);
    } finally {
      for (const c of [alice, bobA, bobB, carol]) c.close();
    }
  });
});
