/**
 * Limits that stop abuse (issue 7): one test per limit of iscsi/types.ts
 * IscsiLimits (config `limits`), against an in-process daemon.
 *
 *  - DataSegmentLength beyond the negotiated MaxRecvDataSegmentLength: Reject
 *    and the connection dropped, and no buffer of that size is ever
 *    allocated (Buffer allocations are watched while the header arrives);
 *    a write whose EDTL exceeds maxWriteBuffer: CHECK CONDITION before any
 *    R2T, nothing of its size allocated; unsolicited data beyond
 *    FirstBurstLength and Data-Out beyond an R2T's length: rejected.
 *  - loginTimeoutMs: a silent connection and a slow-loris login (one byte
 *    at a time, and endless C-bit continuations) are dropped although bytes
 *    keep arriving.
 *  - logoutTimeoutMs: a logout answers even when a command never gets its
 *    data, and an initiator that never closes after the response is closed.
 *  - maxSessionsPerInitiator / maxSessions: the login past the cap is
 *    answered 0302h (OUT OF RESOURCES); reinstating a session with its ISID
 *    at the cap works (it replaces the session, it does not add one).
 *  - authFailureDelayMs: a failed CHAP response is answered only after the
 *    delay — checked by ordering, not wall time: a good CHAP login started
 *    after the bad one completes before the bad one's answer arrives.
 *  - maxConnectionsPerAddress / maxConnections: connections past the caps
 *    are closed at accept; other addresses (127.0.0.2) are not affected by
 *    one address's cap.
 */
import net from 'node:net';
import { startTestDaemon, type TestDaemon } from '../support/daemon';
import {
  TestInitiator, awaitResponse, bhs, cdb, clearUnitAttentions, openSession, scsiCommandBhs, startCommand, textData, waitClosed, waitForPdu, waitUntil,
} from '../support/initiator';
import { BHS_LENGTH, NO_TAG, padLength, type Pdu } from '../../iscsi/pdu';

jest.setTimeout(60_000);

const opcode = (p: Pdu): number => p.bhs[0] & 0x3f;
const ittOf = (p: Pdu): number => p.bhs.readUInt32BE(16);
const IQN = 'iqn.2026-11.org.xcopyd:default';
const isid = (n: number): Buffer => Buffer.from([0x80, 0, 0, 0x11, 0, n]);

/** Largest Buffer allocation (bytes) made while `fn` runs. */
async function largestAllocationDuring(fn: () => Promise<void>): Promise<number> {
  let largest = 0;
  const spies = (['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const).map((k) => {
    const orig = Buffer[k].bind(Buffer) as (n: number, ...rest: unknown[]) => Buffer;
    return jest.spyOn(Buffer, k).mockImplementation(((n: number, ...rest: unknown[]) => {
      largest = Math.max(largest, n);
      return orig(n, ...rest);
    }) as never);
  });
  try {
    await fn();
  } finally {
    for (const s of spies) s.mockRestore();
  }
  return largest;
}

/** A raw socket to the daemon, optionally from another loopback address. */
function rawConnect(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves true when the socket is closed by the peer within `ms`, false otherwise. */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed || s.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function loginPdu(flags: number, kv: Array<[string, string]>, id = isid(1)): Buffer {
  const data = textData(kv);
  const h = bhs.login({ flags, isid: id });
  h.writeUIntBE(data.length, 5, 3);
  return Buffer.concat([h, data, Buffer.alloc(padLength(data.length))]);
}

describe('data segment and burst limits', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({ limits: { authFailureDelayMs: 10, maxWriteBuffer: 1024 * 1024 } });
  });
  afterAll(async () => td.stop());

  it('a DataSegmentLength beyond MaxRecvDataSegmentLength is rejected and the connection dropped before any buffer of that size exists', async () => {
    const c = await openSession(td.port);
    await clearUnitAttentions(c, 0);
    const mrdsl = Number(c.keys.MaxRecvDataSegmentLength ?? 262144);
    const targetMrdsl = 262144; // DEFAULT_TARGET_KEY_CONFIG: what the target declared it receives
    expect(mrdsl).toBeGreaterThan(0);
    const claimed = 0xfffff0; // ~16 MiB, far beyond 256 KiB
    let reject: Pdu | null = null;
    const largest = await largestAllocationDuring(async () => {
      const h = scsiCommandBhs({ itt: 0x77, cmdSN: c.cmdSN, lun: 0, cdb: cdb.write10(0, 8), edtl: claimed, write: true });
      h.writeUIntBE(claimed, 5, 3);
      c.raw(h); // the header only: the data never comes
      c.raw(Buffer.alloc(1000, 0xab)); // and a little of it
      reject = await waitForPdu(c, (p) => opcode(p) === 0x3f, 5000);
      expect(await waitClosed(c, 5000)).toBe(true);
    });
    expect(reject).not.toBeNull();
    expect(reject!.bhs[2]).toBe(0x04); // PROTOCOL ERROR
    expect(largest).toBeLessThan(targetMrdsl + 1024);
    expect(largest).toBeLessThan(claimed);
  });

  it('a write beyond maxWriteBuffer: CHECK CONDITION 5/24/00 before any R2T, no buffer of its size', async () => {
    const c = await openSession(td.port, { keys: { InitialR2T: 'Yes', ImmediateData: 'No' } });
    await clearUnitAttentions(c, 0);
    const edtl = 64 * 1024 * 1024;
    let r: Awaited<ReturnType<typeof c.command>> | null = null;
    const largest = await largestAllocationDuring(async () => {
      const { itt } = startCommand(c, 0, cdb.write10(0, edtl / 512 > 0xffff ? 0xffff : edtl / 512), { edtl, write: true, final: true });
      const p = await waitForPdu(c, (x) => ittOf(x) === itt && (opcode(x) === 0x21 || opcode(x) === 0x31), 5000);
      expect(p).not.toBeNull();
      expect(opcode(p!)).toBe(0x21); // a response, not an R2T
      r = { status: p!.bhs[3], sense: p!.data.subarray(2), data: Buffer.alloc(0), residual: 0, flags: 0, response: 0 };
    });
    expect(r!.status).toBe(2);
    expect([r!.sense![2] & 0x0f, r!.sense![12], r!.sense![13]]).toEqual([5, 0x24, 0]);
    expect(largest).toBeLessThan(1024 * 1024);
    // The session carries on.
    const ok = await c.command(0, cdb.write10(0, 8), { dataOut: Buffer.alloc(4096, 3) });
    expect(ok.status).toBe(0);
    await c.logout();
    c.close();
  });

  it('an EDTL far beyond what the CDB transfers reserves only what the command asks for', async () => {
    // WRITE(10) of one block with an EDTL of almost 1 MiB (maxWriteBuffer here): the target solicits
    // 512 bytes and must not reserve the whole EDTL for them (queue depth x EDTL otherwise).
    const c = await openSession(td.port, { keys: { InitialR2T: 'Yes', ImmediateData: 'No' } });
    await clearUnitAttentions(c, 0);
    const edtl = 1024 * 1024 - 512;
    const out = Buffer.alloc(edtl, 7);
    let status = -1;
    const largest = await largestAllocationDuring(async () => {
      const { itt } = startCommand(c, 0, cdb.write10(0, 1), { edtl, write: true });
      const r = await awaitResponse(c, itt, { dataOut: out, timeoutMs: 5000 });
      status = r?.status ?? -1;
    });
    expect(status).toBe(0);
    expect(largest).toBeLessThan(256 * 1024);
    c.close();
  });

  it('unsolicited Data-Out beyond FirstBurstLength, and Data-Out beyond an R2T, are rejected (PROTOCOL ERROR)', async () => {
    const c = await openSession(td.port, { keys: { InitialR2T: 'No', ImmediateData: 'No', FirstBurstLength: '8192', MaxBurstLength: '16384' } });
    await clearUnitAttentions(c, 0);
    const data = Buffer.alloc(32 * 1024, 5);
    // Unsolicited: 8 KiB allowed, 12 KiB sent.
    const { itt } = startCommand(c, 0, cdb.write10(0, 64), { edtl: data.length, write: true, final: false });
    c.dataOut(itt, NO_TAG, 0, 0, data.subarray(0, 12 * 1024), true);
    const rej = await waitForPdu(c, (p) => opcode(p) === 0x3f, 5000);
    expect(rej).not.toBeNull();
    expect(rej!.bhs[2]).toBe(0x04);
    // R2T: answer with more than it asked for.
    const c2 = await openSession(td.port, { keys: { InitialR2T: 'Yes', ImmediateData: 'No', MaxBurstLength: '16384' } });
    await clearUnitAttentions(c2, 0);
    const s2 = startCommand(c2, 0, cdb.write10(0, 64), { edtl: data.length, write: true });
    const r2t = await waitForPdu(c2, (p) => opcode(p) === 0x31 && ittOf(p) === s2.itt, 5000);
    expect(r2t).not.toBeNull();
    const want = r2t!.bhs.readUInt32BE(44);
    c2.dataOut(s2.itt, r2t!.bhs.readUInt32BE(20), 0, 0, Buffer.alloc(want + 512, 1), true);
    const rej2 = await waitForPdu(c2, (p) => opcode(p) === 0x3f, 5000);
    expect(rej2).not.toBeNull();
    expect(rej2!.bhs[2]).toBe(0x04);
    c.close();
    c2.close();
  });
});

describe('login and logout timeouts', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({ limits: { authFailureDelayMs: 10, loginTimeoutMs: 600, logoutTimeoutMs: 500 } });
  });
  afterAll(async () => td.stop());

  it('a connection that never logs in is dropped after loginTimeoutMs', async () => {
    const s = await rawConnect(td.port);
    expect(s.destroyed).toBe(false);
    expect(await closedWithin(s, 10_000)).toBe(true);
  });

  it('slow-loris: a login PDU sent one byte at a time is dropped although bytes keep arriving', async () => {
    const s = await rawConnect(td.port);
    const pdu = loginPdu(0x87, [['InitiatorName', 'iqn.2026-11.org.xcopyd:loris'], ['TargetName', IQN]]);
    let i = 0;
    const drip = setInterval(() => {
      if (i < pdu.length && !s.destroyed) s.write(pdu.subarray(i, ++i));
    }, 50);
    try {
      expect(await closedWithin(s, 10_000)).toBe(true);
      expect(i).toBeLessThan(pdu.length); // it never got to send the whole request
    } finally {
      clearInterval(drip);
    }
  });

  it('slow-loris: endless C-bit continuations are dropped (each answered, the login never completes)', async () => {
    const s = await rawConnect(td.port);
    s.on('data', () => undefined);
    let n = 0;
    const drip = setInterval(() => {
      if (s.destroyed) return;
      const kv: Array<[string, string]> = n === 0 ? [['InitiatorName', 'iqn.2026-11.org.xcopyd:loris2'], ['TargetName', IQN]] : [[`X-${n}`, 'y']];
      s.write(loginPdu(0x40 | 0x04, kv)); // C=1, CSG=1, not transit
      n++;
    }, 100);
    try {
      expect(await closedWithin(s, 10_000)).toBe(true);
      expect(n).toBeGreaterThan(2);
    } finally {
      clearInterval(drip);
    }
  });

  it('logout answers although a write never gets its data; the session is gone afterwards', async () => {
    const c = await openSession(td.port, { keys: { InitialR2T: 'Yes', ImmediateData: 'No' } });
    await clearUnitAttentions(c, 0);
    const before = td.daemon.server!.sessions().length;
    const { itt } = startCommand(c, 0, cdb.write10(0, 8), { edtl: 4096, write: true });
    expect(await waitForPdu(c, (p) => opcode(p) === 0x31 && ittOf(p) === itt, 5000)).not.toBeNull();
    // Never answer the R2T; log out.
    const lo = bhs.logout({ itt: c.itt++, reason: 0, cmdSN: c.cmdSN, expStatSN: c.expStatSN });
    c.sendPdu(lo);
    const resp = await waitForPdu(c, (p) => opcode(p) === 0x26, 10_000);
    expect(resp).not.toBeNull();
    expect(resp!.bhs[2]).toBe(0);
    expect(await waitClosed(c, 10_000)).toBe(true);
    expect(await waitUntil(() => td.daemon.server!.sessions().length === before - 1, 5000)).toBe(true);
  });

  it('an initiator that never closes after the Logout Response is closed by the target', async () => {
    // allowHalfOpen: this side never answers the target's FIN; only the target's timer ends the connection.
    const s = await new Promise<net.Socket>((resolve, reject) => {
      const x = net.connect({ port: td.port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(x));
      x.once('error', reject);
    });
    s.on('error', () => undefined);
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    const opcodes = (): number[] => {
      const all = Buffer.concat(got);
      const out: number[] = [];
      for (let o = 0; o + BHS_LENGTH <= all.length; ) {
        out.push(all[o] & 0x3f);
        const dsl = all.readUIntBE(o + 5, 3);
        o += BHS_LENGTH + dsl + padLength(dsl);
      }
      return out;
    };
    s.write(loginPdu(0x87, [['InitiatorName', 'iqn.2026-11.org.xcopyd:half-open'], ['TargetName', IQN], ['HeaderDigest', 'None'], ['DataDigest', 'None']]));
    expect(await waitUntil(() => opcodes().includes(0x23), 5000)).toBe(true);
    const conns = td.daemon.server!.connectionCount();
    s.write(bhs.logout({ itt: 9, reason: 0, cmdSN: 1, expStatSN: 1 }));
    expect(await waitUntil(() => opcodes().includes(0x26), 5000)).toBe(true);
    expect(await waitUntil(() => td.daemon.server!.connectionCount() === conns - 1, 10_000)).toBe(true);
    s.destroy();
  });
});

describe('session caps', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({ limits: { authFailureDelayMs: 10, maxSessions: 4, maxSessionsPerInitiator: 2 } });
  });
  afterAll(async () => td.stop());

  async function tryLogin(name: string, id: Buffer): Promise<{ c: TestInitiator; cls: number; det: number }> {
    const c = await TestInitiator.connect(td.port);
    const r = await c.login({ initiatorName: `iqn.2026-11.org.xcopyd:${name}`, isid: id });
    return { c, cls: r.statusClass, det: r.statusDetail };
  }

  it('per initiator: the third session is refused 0302h; reinstating an ISID at the cap works; total: the fifth is refused', async () => {
    const a1 = await tryLogin('cap-a', isid(1));
    const a2 = await tryLogin('cap-a', isid(2));
    expect([a1.cls, a2.cls]).toEqual([0, 0]);
    const a3 = await tryLogin('cap-a', isid(3));
    expect([a3.cls, a3.det]).toEqual([3, 2]);
    expect(await waitClosed(a3.c, 5000)).toBe(true);

    // The connection of a1 hangs (never read again); the initiator logs in again with the same ISID.
    const a1again = await tryLogin('cap-a', isid(1));
    expect([a1again.cls, a1again.det]).toEqual([0, 0]);
    expect(await waitClosed(a1.c, 5000)).toBe(true);
    expect(td.daemon.server!.sessions().filter((s) => s.initiatorName.endsWith('cap-a')).length).toBe(2);

    const b1 = await tryLogin('cap-b', isid(1));
    const b2 = await tryLogin('cap-b', isid(2));
    expect([b1.cls, b2.cls]).toEqual([0, 0]);
    const c1 = await tryLogin('cap-c', isid(1));
    expect([c1.cls, c1.det]).toEqual([3, 2]);
    // One leaves, the next one gets in.
    expect(await b2.c.logout()).toBe(0);
    b2.c.close();
    await waitClosed(b2.c, 5000);
    const c2 = await tryLogin('cap-c', isid(1));
    expect(c2.cls).toBe(0);
    for (const x of [a1again, a2, b1, c2]) x.c.close();
  });
});

describe('failed CHAP is delayed', () => {
  let td: TestDaemon;
  const chap = { user: 'limits', secret: 'limits-secret-1' };
  beforeAll(async () => {
    td = await startTestDaemon({
      limits: { authFailureDelayMs: 3000 },
      targets: [{ iqn: IQN, chap, luns: [{ lun: 0, path: 'lun0.img', size: '4MiB' }] }],
    });
  });
  afterAll(async () => td.stop());

  it('a wrong CHAP response is answered 0201h only after a good login that started later has completed', async () => {
    const order: string[] = [];
    const bad = (async () => {
      const c = await TestInitiator.connect(td.port);
      const r = await c.login({ chap: { user: chap.user, secret: 'wrong-secret-99' } });
      order.push('bad');
      c.close();
      return r;
    })();
    // Let the bad login reach its CHAP response first.
    await new Promise((r) => setTimeout(r, 200));
    const good = await TestInitiator.connect(td.port);
    const g = await good.login({ chap });
    order.push('good');
    const b = await bad;
    expect(g.statusClass).toBe(0);
    expect([b.statusClass, b.statusDetail]).toEqual([2, 1]);
    expect(order).toEqual(['good', 'bad']);
    good.close();
  });
});

describe('connection caps', () => {
  let td: TestDaemon;
  beforeAll(async () => {
    td = await startTestDaemon({ limits: { authFailureDelayMs: 10, maxConnections: 5, maxConnectionsPerAddress: 3, loginTimeoutMs: 30_000 } });
  });
  afterAll(async () => td.stop());

  it('past maxConnectionsPerAddress one address is refused at accept, another is not; past maxConnections everyone is', async () => {
    const held: net.Socket[] = [];
    for (let i = 0; i < 3; i++) held.push(await rawConnect(td.port, '127.0.0.1'));
    // The accept of the last one may still be on its way: give the server a turn.
    await new Promise((r) => setTimeout(r, 100));
    const fourth = await rawConnect(td.port, '127.0.0.1');
    expect(await closedWithin(fourth, 5000)).toBe(true);
    const other1 = await rawConnect(td.port, '127.0.0.2');
    const other2 = await rawConnect(td.port, '127.0.0.2');
    await new Promise((r) => setTimeout(r, 100));
    expect(await closedWithin(other1, 300)).toBe(false);
    expect(await closedWithin(other2, 300)).toBe(false);
    // Five connections now: a sixth, from a third address, is over the total.
    const sixth = await rawConnect(td.port, '127.0.0.3');
    expect(await closedWithin(sixth, 5000)).toBe(true);
    // Room again once one of 127.0.0.1's connections goes: a login from there works.
    held.shift()!.destroy();
    expect(await waitUntil(() => td.daemon.server!.connectionCount() === 4, 5000)).toBe(true);
    const ok = await openSession(td.port);
    expect(td.daemon.server!.sessions().length).toBe(1);
    ok.close();
    for (const s of [...held, other1, other2]) s.destroy();
  });
});
