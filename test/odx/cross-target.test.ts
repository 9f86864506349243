/**
 * Copies across targets for the same initiator (issue 11 point 2), over iSCSI.
 * Two open targets (no ACLs) in one daemon; ESXi's XCOPY shape (LID1, two E4h
 * NAA CSCDs, one 02h segment of 4 MiB) and Windows' (PT with lifetime 0 on
 * one LU, RRTI, WUT without DEL_TKN on the other).
 *
 *  - copyScope sameInitiator: an initiator logged in to both targets copies
 *    between them both ways; one logged in to only one of them is refused
 *    with the senses of today (A/0D/02 for a CSCD, 5/23/04 for a token), as
 *    is the same initiator once its session on the other target ended, and
 *    one whose session did not prove the CHAP the other target demands;
 *  - the default (acl): the same copies are refused as before;
 *  - a target's own copyScope overrides the top-level one (the reached
 *    target decides);
 *  - every refusal is logged at info with the initiator, both targets, the
 *    refused LU and the reason.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Daemon } from '../../src/daemon';
import { validateConfig } from '../../src/config';
import { openSession, clearUnitAttentions, type TestInitiator } from '../support/initiator';
import { BS, SENSE, expectGood, expectSense, pattern, readBlocks, tokenFor, writeBlocks, writeUsingToken } from './odx';
import { b2b, e4, lid1, xcopyCdb } from '../scsi/copy/helpers';

const A = 'iqn.2026-11.org.xcopyd:cross-a';
const B = 'iqn.2026-11.org.xcopyd:cross-b';
const ALICE = 'iqn.2026-11.org.example:alice';
const BOB = 'iqn.2026-11.org.example:bob';
const NAA_A = '60014050000000000000000000000a00';
const NAA_B = '60014050000000000000000000000b00';
const SEG_BLOCKS = (4 * 1024 * 1024) / BS; // ESXi: one segment of 4 to 16 MiB
const CSCD_UNREACHABLE: ReadonlyArray<readonly [number, number, number]> = [[0x0a, 0x0d, 0x02]];
const CHAP_B = { user: 'alice', secret: 'b-secret-12345' };

interface Running {
  daemon: Daemon;
  port: number;
  logs: Array<Record<string, unknown>>;
  /** The configuration with a top-level copyScope (for reload). */
  withCopyScope(copyScope: string): ReturnType<typeof validateConfig>;
  stop(): Promise<void>;
}

async function start(over: { copyScope?: string; a?: Record<string, unknown>; b?: Record<string, unknown> } = {}): Promise<Running> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-cross-'));
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const build = (copyScope?: string) => validateConfig({
    listen: ['127.0.0.1:0'],
    dataDir,
    logLevel: 'info',
    limits: { authFailureDelayMs: 10 },
    ...(copyScope ? { copyScope } : {}),
    targets: [
      { iqn: A, luns: [{ lun: 0, path: 'a0.img', size: '32MiB', naa: NAA_A }], ...over.a },
      { iqn: B, luns: [{ lun: 0, path: 'b0.img', size: '32MiB', naa: NAA_B }], ...over.b },
    ],
  });
  const config = build(over.copyScope);
  const daemon = new Daemon(config, pino({ level: 'info' }, sink));
  await daemon.start();
  return {
    daemon,
    port: daemon.ports[0],
    logs,
    withCopyScope: build,
    async stop() {
      await daemon.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function login(d: Running, initiatorName: string, targetName: string, chap?: typeof CHAP_B): Promise<TestInitiator> {
  const c = await openSession(d.port, {
    initiatorName,
    targetName,
    chap,
    keys: { MaxRecvDataSegmentLength: '262144', MaxBurstLength: '1048576', FirstBurstLength: '262144' },
  });
  await clearUnitAttentions(c, 0).catch(() => undefined);
  return c;
}

/** ESXi's XCOPY: LID1, E4h NAA of the source and of the destination, one 02h segment. */
async function xcopy(c: TestInitiator, from: string, to: string, srcLba: number, dstLba: number, blocks = SEG_BLOCKS) {
  const params = lid1([e4(Buffer.from(from, 'hex')), e4(Buffer.from(to, 'hex'))], [b2b(0, 1, blocks, srcLba, dstLba)]);
  return c.command(0, xcopyCdb(0, params.length), { dataOut: params, timeoutMs: 60000 });
}

function refusals(d: Running): Array<Record<string, unknown>> {
  return d.logs.filter((l) => l.msg === 'cross-target copy refused');
}

describe('copyScope sameInitiator: two open targets, one initiator logged in to both', () => {
  let d: Running;
  let aliceA: TestInitiator;
  let aliceB: TestInitiator;
  beforeAll(async () => {
    d = await start({ copyScope: 'sameInitiator' });
    aliceA = await login(d, ALICE, A);
    aliceB = await login(d, ALICE, B);
  });
  afterAll(async () => {
    aliceA.close();
    aliceB.close();
    await d.stop();
  });

  it('XCOPY issued on A copies A -> B and B -> A', async () => {
    const data = pattern(SEG_BLOCKS * BS, 1);
    await writeBlocks(aliceA, 0, 0, data);
    expectGood(await xcopy(aliceA, NAA_A, NAA_B, 0, 1000), 'A -> B');
    expect((await readBlocks(aliceB, 0, 1000, SEG_BLOCKS)).equals(data)).toBe(true);
    expectGood(await xcopy(aliceA, NAA_B, NAA_A, 1000, 20000), 'B -> A');
    expect((await readBlocks(aliceA, 0, 20000, SEG_BLOCKS)).equals(data)).toBe(true);
  });

  it('PT on A, WUT on B (Windows: lifetime 0, no DEL_TKN) copies the data', async () => {
    const data = pattern(2048 * BS, 2);
    await writeBlocks(aliceA, 0, 40000, data);
    const token = await tokenFor(aliceA, 0, 0, [[40000, 2048]], { inactivity: 0 });
    expectGood(await writeUsingToken(aliceB, 0, 1, token, [[50000, 2048]]), 'WUT on B');
    expect((await readBlocks(aliceB, 0, 50000, 2048)).equals(data)).toBe(true);
  });

  it('an initiator logged in to B only may not reach A: XCOPY A/0D/02, token 5/23/04, nothing written, refusals logged', async () => {
    const bobB = await login(d, BOB, B);
    try {
      const marker = Buffer.alloc(64 * BS, 0x5a);
      await writeBlocks(aliceA, 0, 60000, marker);
      const before = refusals(d).length;
      // B -> A and A -> B, issued on B
      expectSense(await xcopy(bobB, NAA_B, NAA_A, 0, 60000, 64), CSCD_UNREACHABLE, 'bob B -> A');
      expectSense(await xcopy(bobB, NAA_A, NAA_B, 60000, 0, 64), CSCD_UNREACHABLE, 'bob A -> B');
      expect((await readBlocks(aliceA, 0, 60000, 64)).equals(marker)).toBe(true);
      // alice's token of A, used by bob on B
      const token = await tokenFor(aliceA, 0, 2, [[60000, 64]], { inactivity: 0 });
      expectSense(await writeUsingToken(bobB, 0, 3, token, [[61000, 64]]), SENSE.TOKEN_UNKNOWN, 'bob WUT');
      const logged = refusals(d).slice(before);
      expect(logged.length).toBeGreaterThanOrEqual(2);
      for (const l of logged) {
        expect(l).toMatchObject({ level: 30, initiator: BOB, fromTarget: B, target: A, lun: 0, naa: NAA_A });
        expect(String(l.reason)).toMatch(/no session/);
      }
    } finally {
      bobB.close();
    }
  });

  it('once the session on B ended, A\'s session may no longer reach B', async () => {
    const alice2 = await login(d, ALICE, B);
    const aliceA2 = await login(d, ALICE, A);
    aliceB.close();
    alice2.close();
    // the target sees the sessions end when their sockets close
    for (let i = 0; i < 100 && d.daemon.server!.sessions().some((s) => s.target?.name === B); i++) await new Promise((r) => setTimeout(r, 20));
    expectSense(await xcopy(aliceA2, NAA_A, NAA_B, 0, 0, 64), CSCD_UNREACHABLE, 'after logout');
    aliceA2.close();
    aliceB = await login(d, ALICE, B);
    expectGood(await xcopy(aliceA, NAA_A, NAA_B, 0, 0, 64), 'logged in again');
  });
});

describe('copyScope acl (the default): an open target is not reachable from another target\'s session', () => {
  let d: Running;
  beforeAll(async () => {
    d = await start();
  });
  afterAll(async () => {
    await d.stop();
  });

  it('XCOPY across the targets is A/0D/02 and a token of A is 5/23/04 on B, although alice is logged in to both', async () => {
    const aliceA = await login(d, ALICE, A);
    const aliceB = await login(d, ALICE, B);
    try {
      const marker = Buffer.alloc(64 * BS, 0x33);
      await writeBlocks(aliceB, 0, 0, marker);
      expectSense(await xcopy(aliceA, NAA_A, NAA_B, 0, 0, 64), CSCD_UNREACHABLE, 'A -> B');
      expect((await readBlocks(aliceB, 0, 0, 64)).equals(marker)).toBe(true);
      const token = await tokenFor(aliceA, 0, 0, [[0, 64]], { inactivity: 0 });
      expectSense(await writeUsingToken(aliceB, 0, 1, token, [[0, 64]]), SENSE.TOKEN_UNKNOWN, 'WUT');
      const logged = refusals(d);
      expect(logged.some((l) => l.initiator === ALICE && l.fromTarget === A && l.target === B && /copyScope acl/.test(String(l.reason)))).toBe(true);
      expect(logged.some((l) => l.initiator === ALICE && l.fromTarget === B && l.target === A)).toBe(true);
      // A reload (SIGHUP) to sameInitiator applies at once, the sessions kept; and back.
      await d.daemon.reload(d.withCopyScope('sameInitiator'));
      expectGood(await xcopy(aliceA, NAA_A, NAA_B, 0, 0, 64), 'after reload to sameInitiator');
      await d.daemon.reload(d.withCopyScope('acl'));
      expectSense(await xcopy(aliceA, NAA_A, NAA_B, 0, 0, 64), CSCD_UNREACHABLE, 'after reload back to acl');
    } finally {
      aliceA.close();
      aliceB.close();
    }
  });
});

describe('a target\'s own copyScope and CHAP', () => {
  it('the reached target decides: B with copyScope acl refuses, A (sameInitiator from the top level) may be reached', async () => {
    const d = await start({ copyScope: 'sameInitiator', b: { copyScope: 'acl' } });
    const aliceA = await login(d, ALICE, A);
    const aliceB = await login(d, ALICE, B);
    try {
      expectSense(await xcopy(aliceA, NAA_A, NAA_B, 0, 0, 64), CSCD_UNREACHABLE, 'A -> B issued on A');
      expectGood(await xcopy(aliceB, NAA_A, NAA_B, 0, 0, 64), 'A -> B issued on B');
    } finally {
      aliceA.close();
      aliceB.close();
      await d.stop();
    }
  });

  it('a session that did not prove the CHAP credentials B demands may not reach B, though alice is logged in there', async () => {
    const d = await start({ copyScope: 'sameInitiator', b: { chap: CHAP_B } });
    const aliceA = await login(d, ALICE, A);
    const aliceB = await login(d, ALICE, B, CHAP_B);
    try {
      expectSense(await xcopy(aliceA, NAA_A, NAA_B, 0, 0, 64), CSCD_UNREACHABLE, 'A (no CHAP) -> B (CHAP)');
      expect(refusals(d).some((l) => /CHAP/.test(String(l.reason)))).toBe(true);
      // B's session proved B's credentials, and A asks none: A is reachable from B.
      expectGood(await xcopy(aliceB, NAA_A, NAA_B, 0, 0, 64), 'issued on B');
    } finally {
      aliceA.close();
      aliceB.close();
      await d.stop();
    }
  });
});
