/**
 * The transport end to end against an in-process daemon, with the test
 * initiator: login variants, data transfer in every shape (immediate,
 * unsolicited, R2T, multi-PDU Data-In), residuals, NOP, TMF, discovery,
 * logout, digests, CHAP, and the login failures with their status codes.
 */
import crypto from 'node:crypto';
import { TestInitiator, cdb } from '../support/initiator';
import { startTestDaemon, TestDaemon } from '../support/daemon';

let td: TestDaemon;

beforeAll(async () => {
  td = await startTestDaemon({
    targets: [
      {
        iqn: 'iqn.2026-11.org.xcopyd:default',
        luns: [
          { lun: 0, path: 'lun0.img', size: '64MiB' },
          { lun: 1, path: 'lun1.img', size: '64MiB' },
        ],
      },
      {
        iqn: 'iqn.2026-11.org.xcopyd:chap',
        chap: { user: 'alice', secret: 'alicesecret12', mutual: { user: 'tgt', secret: 'targetsecret1' } },
        luns: [{ lun: 0, path: 'chap0.img', size: '8MiB' }],
      },
      {
        iqn: 'iqn.2026-11.org.xcopyd:private',
        allowedInitiators: ['iqn.2026-11.org.xcopyd:friend'],
        luns: [{ lun: 0, path: 'priv0.img', size: '8MiB' }],
      },
    ],
  });
});

afterAll(async () => {
  await td.stop();
});

async function session(opts: Parameters<TestInitiator['login']>[0] = {}): Promise<TestInitiator> {
  const c = await TestInitiator.connect(td.port);
  const r = await c.login(opts);
  expect(r.statusClass).toBe(0);
  return c;
}

/** Clear the power-on unit attention. */
async function clearUa(c: TestInitiator, lun = 0): Promise<void> {
  for (let i = 0; i < 4; i++) {
    const r = await c.command(lun, cdb.testUnitReady());
    if (r.status === 0) return;
  }
}

describe('login', () => {
  it('logs in to a Normal session and announces TPGT and its MaxRecvDataSegmentLength', async () => {
    const c = await TestInitiator.connect(td.port);
    const r = await c.login();
    expect(r.statusClass).toBe(0);
    expect(r.tsih).toBeGreaterThan(0);
    expect(r.keys.TargetPortalGroupTag).toBe('1');
    expect(Number(r.keys.MaxRecvDataSegmentLength)).toBeGreaterThanOrEqual(8192);
    expect(await c.logout()).toBe(0);
    c.close();
  });

  it('refuses an unknown target with 0203h', async () => {
    const c = await TestInitiator.connect(td.port);
    const r = await c.login({ targetName: 'iqn.2026-11.org.xcopyd:nope' });
    expect([r.statusClass, r.statusDetail]).toEqual([2, 3]);
    c.close();
  });

  it('refuses a missing TargetName with 0207h', async () => {
    const c = await TestInitiator.connect(td.port);
    const h = Buffer.alloc(48);
    h[0] = 0x43;
    h[1] = 0x87;
    h.writeUInt32BE(1, 16);
    c.sendPdu(h, Buffer.from('InitiatorName=iqn.2026-11.org.xcopyd:x\0SessionType=Normal\0'));
    const p = await c.next();
    expect(p).not.toBeNull();
    expect([p!.bhs[36], p!.bhs[37]]).toEqual([2, 7]);
    c.close();
  });

  it('refuses an unsupported version with 0205h', async () => {
    const c = await TestInitiator.connect(td.port);
    const h = Buffer.alloc(48);
    h[0] = 0x43;
    h[1] = 0x87;
    h[2] = 5;
    h[3] = 3; // version-min 3
    c.sendPdu(h, Buffer.from('InitiatorName=iqn.2026-11.org.xcopyd:x\0TargetName=iqn.2026-11.org.xcopyd:default\0'));
    const p = await c.next();
    expect([p!.bhs[36], p!.bhs[37]]).toEqual([2, 5]);
    c.close();
  });

  it('refuses an initiator outside the ACL with 0202h, and admits the one inside', async () => {
    const c = await TestInitiator.connect(td.port);
    const r = await c.login({ targetName: 'iqn.2026-11.org.xcopyd:private' });
    expect([r.statusClass, r.statusDetail]).toEqual([2, 2]);
    c.close();
    const ok = await session({ targetName: 'iqn.2026-11.org.xcopyd:private', initiatorName: 'iqn.2026-11.org.xcopyd:friend' });
    await ok.logout();
    ok.close();
  });

  it('drops a connection that sends a SCSI command before login', async () => {
    const c = await TestInitiator.connect(td.port);
    const h = Buffer.alloc(48);
    h[0] = 0x01;
    h[1] = 0x80;
    c.sendPdu(h);
    expect(await c.next(3000)).toBeNull();
    expect(c.closed).toBe(true);
  });

  it('does mutual CHAP and refuses a wrong secret with 0201h', async () => {
    const good = await session({
      targetName: 'iqn.2026-11.org.xcopyd:chap',
      chap: { user: 'alice', secret: 'alicesecret12', mutual: { user: 'tgt', secret: 'targetsecret1' } },
    });
    await clearUa(good);
    const inq = await good.command(0, cdb.inquiry(), { read: 96 });
    expect(inq.status).toBe(0);
    await good.logout();
    good.close();

    const bad = await TestInitiator.connect(td.port);
    const r = await bad.login({ targetName: 'iqn.2026-11.org.xcopyd:chap', chap: { user: 'alice', secret: 'wrongsecret12' } });
    expect([r.statusClass, r.statusDetail]).toEqual([2, 1]);
    bad.close();

    const none = await TestInitiator.connect(td.port);
    const r2 = await none.login({ targetName: 'iqn.2026-11.org.xcopyd:chap' });
    expect([r2.statusClass, r2.statusDetail]).toEqual([2, 1]);
    none.close();
  });

  it('reinstates a session that reuses the ISID', async () => {
    const isid = Buffer.from([0x80, 1, 2, 3, 4, 5]);
    const a = await session({ isid });
    const b = await session({ isid });
    // The old connection is closed by the target.
    expect(await a.next(3000)).toBeNull();
    await clearUa(b);
    expect((await b.command(0, cdb.testUnitReady())).status).toBe(0);
    await b.logout();
    b.close();
  });
});

describe('discovery', () => {
  it('answers SendTargets=All in a discovery session, hiding targets the initiator may not see', async () => {
    const c = await session({ sessionType: 'Discovery' });
    const r = await c.text([['SendTargets', 'All']]);
    expect(r.TargetName).toEqual(expect.arrayContaining(['iqn.2026-11.org.xcopyd:default', 'iqn.2026-11.org.xcopyd:chap']));
    expect(r.TargetName).not.toContain('iqn.2026-11.org.xcopyd:private');
    expect(r.TargetAddress[0]).toMatch(/^127\.0\.0\.1:\d+,1$/);
    await c.logout();
    c.close();
  });

  it('answers SendTargets by name and empty in a normal session', async () => {
    const c = await session();
    const byName = await c.text([['SendTargets', 'iqn.2026-11.org.xcopyd:chap']]);
    expect(byName.TargetName).toEqual(['iqn.2026-11.org.xcopyd:chap']);
    const own = await c.text([['SendTargets', '']]);
    expect(own.TargetName).toEqual(['iqn.2026-11.org.xcopyd:default']);
    await c.logout();
    c.close();
  });
});

describe('full feature phase', () => {
  let c: TestInitiator;
  beforeAll(async () => {
    c = await session();
    await clearUa(c);
  });
  afterAll(async () => {
    await c.logout();
    c.close();
  });

  it('reads back what it wrote: immediate + unsolicited + R2T, multi-PDU Data-In', async () => {
    for (const blocks of [1, 8, 128, 513, 2048]) {
      const data = crypto.randomBytes(blocks * 512);
      const w = await c.command(0, cdb.write10(1000, blocks), { dataOut: data });
      expect(w.status).toBe(0);
      const r = await c.command(0, cdb.read10(1000, blocks), { read: blocks * 512 });
      expect(r.status).toBe(0);
      expect(r.data.equals(data)).toBe(true);
    }
  });

  it('reports underflow when the initiator buffer is larger than the data', async () => {
    const r = await c.command(0, cdb.read10(0, 1), { read: 4096 });
    expect(r.status).toBe(0);
    expect(r.flags & 0x02).toBe(0x02);
    expect(r.residual).toBe(4096 - 512);
    expect(r.data.length).toBe(512);
  });

  it('reports overflow and sends only EDTL bytes when the buffer is too small', async () => {
    const r = await c.command(0, cdb.read10(0, 4), { read: 1024 });
    expect(r.status).toBe(0);
    expect(r.flags & 0x04).toBe(0x04);
    expect(r.residual).toBe(1024);
    expect(r.data.length).toBe(1024);
  });

  it('returns CHECK CONDITION with sense for an LBA out of range', async () => {
    const r = await c.command(0, cdb.read10(0x7fffffff, 1), { read: 512 });
    expect(r.status).toBe(2);
    expect(r.sense![2] & 0x0f).toBe(5);
    expect(r.sense![12]).toBe(0x21);
  });

  it('answers NOP-Out with an echo', async () => {
    const itt = c.nopOut(0xffffffff, undefined, Buffer.from('ping!'));
    const p = await c.nextReply();
    expect(p!.bhs[0] & 0x3f).toBe(0x20);
    expect(p!.bhs.readUInt32BE(16)).toBe(itt);
    expect(p!.data.toString()).toBe('ping!');
  });

  it('rejects an unknown opcode and keeps the session', async () => {
    const h = Buffer.alloc(48);
    h[0] = 0x1c | 0x40;
    h[1] = 0x80;
    c.sendPdu(h);
    const p = await c.nextReply();
    expect(p!.bhs[0] & 0x3f).toBe(0x3f);
    expect(p!.bhs[2]).toBe(0x05);
    expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);
  });

  it('runs task management: LU reset completes and leaves a unit attention', async () => {
    expect(await c.tmf(5, 0)).toBe(0);
    const r = await c.command(0, cdb.testUnitReady());
    expect(r.status).toBe(2);
    expect(r.sense![2] & 0x0f).toBe(6);
    expect(r.sense![12]).toBe(0x29);
    expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);
  });

  it('answers ABORT TASK for an unknown task with "task does not exist"', async () => {
    expect(await c.tmf(1, 0, 0x12345)).toBe(1);
  });

  it('discards a command whose CmdSN is outside the window', async () => {
    const saved = c.cmdSN;
    c.cmdSN = (c.maxCmdSN + 5) >>> 0;
    await expect(c.command(0, cdb.testUnitReady(), { timeoutMs: 1000 })).rejects.toThrow();
    c.cmdSN = saved;
    expect((await c.command(0, cdb.testUnitReady())).status).toBe(0);
  });
});

describe('digests', () => {
  it('negotiates CRC32C header and data digests and moves data with them', async () => {
    const c = await session({ headerDigest: true, dataDigest: true });
    expect(c.keys.HeaderDigest).toBe('CRC32C');
    expect(c.keys.DataDigest).toBe('CRC32C');
    await clearUa(c);
    const data = crypto.randomBytes(300 * 512);
    expect((await c.command(0, cdb.write10(77, 300), { dataOut: data })).status).toBe(0);
    const r = await c.command(0, cdb.read10(77, 300), { read: data.length });
    expect(r.data.equals(data)).toBe(true);
    await c.logout();
    c.close();
  });

  it('drops the connection on a corrupted header digest', async () => {
    const c = await session({ headerDigest: true });
    const h = Buffer.alloc(48);
    h[0] = 0x00 | 0x40;
    h[1] = 0x80;
    h.writeUInt32BE(0xffffffff, 16);
    h.writeUInt32BE(0xffffffff, 20);
    c.raw(Buffer.concat([h, Buffer.from([1, 2, 3, 4])]));
    expect(await c.next(3000)).toBeNull();
  });
});
