/**
 * A small iSCSI initiator for tests: login (None or CHAP), SendTargets,
 * SCSI commands with immediate data, unsolicited Data-Out and R2T, Data-In
 * reassembly, NOP, TMF, logout. It also lets tests send raw bytes.
 * Real-client conformance comes from libiscsi, open-iscsi and QEMU; this is
 * for precise protocol tests and hostile-input scaffolding.
 */
import net from 'node:net';
import crypto from 'node:crypto';
import { PduFramer } from '../../iscsi/framer';
import { crc32c, digestBytes } from '../../iscsi/digest';
import { BHS_LENGTH, NO_TAG, Pdu, padLength } from '../../iscsi/pdu';

export interface LoginOptions {
  initiatorName?: string;
  targetName?: string;
  sessionType?: 'Normal' | 'Discovery';
  isid?: Buffer;
  chap?: { user: string; secret: string; mutual?: { user: string; secret: string } };
  keys?: Record<string, string>;
  headerDigest?: boolean;
  dataDigest?: boolean;
}

export interface CommandResult {
  status: number;
  sense?: Buffer;
  data: Buffer;
  residual: number;
  flags: number;
  response: number;
}

export interface LoginResult {
  statusClass: number;
  statusDetail: number;
  keys: Record<string, string>;
  tsih: number;
}

function textKeys(kv: Array<[string, string]>): Buffer {
  return Buffer.from(kv.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

function parseKeys(b: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of b.toString('utf8').split('\0')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

export class TestInitiator {
  private sock!: net.Socket;
  private framer!: PduFramer;
  private queue: Pdu[] = [];
  private waiters: Array<(p: Pdu | null) => void> = [];
  closed = false;
  itt = 1;
  cmdSN = 1;
  expStatSN = 0;
  maxCmdSN = 0;
  headerDigest = false;
  dataDigest = false;
  keys: Record<string, string> = {};
  /** Unsolicited PDUs that tests may inspect (NOP-In pings, async messages, rejects). */
  readonly stray: Pdu[] = [];

  static async connect(port: number, host = '127.0.0.1'): Promise<TestInitiator> {
    const c = new TestInitiator();
    await new Promise<void>((resolve, reject) => {
      c.sock = net.connect({ port, host }, () => resolve());
      c.sock.once('error', reject);
    });
    c.sock.on('error', () => undefined);
    c.framer = new PduFramer(
      { maxDataSegmentLength: 16 * 1024 * 1024 },
      (p) => {
        const copy = { bhs: Buffer.from(p.bhs), ahs: Buffer.from(p.ahs), data: Buffer.from(p.data) };
        const w = c.waiters.shift();
        if (w) w(copy);
        else c.queue.push(copy);
      },
      () => c.sock.destroy(),
    );
    c.sock.on('data', (d) => c.framer.push(d));
    c.sock.on('close', () => {
      c.closed = true;
      for (const w of c.waiters.splice(0)) w(null);
    });
    return c;
  }

  /** Next PDU from the target, or null when the connection closed or the timeout passed. */
  next(timeoutMs = 5000): Promise<Pdu | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(null);
      }, timeoutMs);
      const w = (p: Pdu | null) => {
        clearTimeout(t);
        resolve(p);
      };
      this.waiters.push(w);
    });
  }

  /** Next PDU, skipping target NOP-In pings (answered automatically). */
  async nextReply(timeoutMs = 5000): Promise<Pdu | null> {
    for (;;) {
      const p = await this.next(timeoutMs);
      if (!p) return null;
      if ((p.bhs[0] & 0x3f) === 0x20 && p.bhs.readUInt32BE(16) === NO_TAG) {
        this.stray.push(p);
        this.nopOut(p.bhs.readUInt32BE(20), NO_TAG, Buffer.alloc(0), true);
        continue;
      }
      this.track(p);
      return p;
    }
  }

  private track(p: Pdu): void {
    const op = p.bhs[0] & 0x3f;
    if (op !== 0x31 && op !== 0x25 || (op === 0x25 && p.bhs[1] & 1)) this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    if (op !== 0x23) this.maxCmdSN = p.bhs.readUInt32BE(32);
  }

  raw(b: Buffer): void {
    this.sock.write(b);
  }

  /** Send a PDU with the given BHS and data, applying digests when negotiated. */
  sendPdu(bhs: Buffer, data: Buffer = Buffer.alloc(0)): void {
    bhs.writeUIntBE(data.length, 5, 3);
    const parts: Buffer[] = [bhs];
    if (this.headerDigest) parts.push(digestBytes(crc32c(bhs)));
    if (data.length) {
      const padded = Buffer.concat([data, Buffer.alloc(padLength(data.length))]);
      parts.push(padded);
      if (this.dataDigest) parts.push(digestBytes(crc32c(padded)));
    }
    this.sock.write(Buffer.concat(parts));
  }

  async login(opts: LoginOptions = {}): Promise<LoginResult> {
    const isid = opts.isid ?? Buffer.from([0x80, 0x12, 0x34, 0x56, crypto.randomInt(256), crypto.randomInt(256)]);
    const base: Array<[string, string]> = [
      ['InitiatorName', opts.initiatorName ?? 'iqn.2026-11.org.xcopyd:test-initiator'],
      ['SessionType', opts.sessionType ?? 'Normal'],
    ];
    if ((opts.sessionType ?? 'Normal') === 'Normal') base.push(['TargetName', opts.targetName ?? 'iqn.2026-11.org.xcopyd:default']);
    const oper: Array<[string, string]> = [
      ['HeaderDigest', opts.headerDigest ? 'CRC32C' : 'None'],
      ['DataDigest', opts.dataDigest ? 'CRC32C' : 'None'],
      ['InitialR2T', 'No'],
      ['ImmediateData', 'Yes'],
      ['MaxBurstLength', '262144'],
      ['FirstBurstLength', '65536'],
      ['MaxRecvDataSegmentLength', '65536'],
      ['MaxOutstandingR2T', '1'],
      ['ErrorRecoveryLevel', '0'],
    ].filter(([k]) => !(opts.keys && k in opts.keys)) as Array<[string, string]>;
    // Keys given by the caller replace the defaults above: a key offered twice is a protocol error.
    oper.push(...Object.entries(opts.keys ?? {}));
    const send = (flags: number, kv: Array<[string, string]>) => {
      const h = Buffer.alloc(BHS_LENGTH);
      h[0] = 0x43;
      h[1] = flags;
      isid.copy(h, 8);
      h.writeUInt32BE(this.itt, 16);
      h.writeUInt32BE(this.cmdSN, 24);
      h.writeUInt32BE(this.expStatSN, 28);
      this.sendPdu(h, textKeys(kv));
    };
    const recv = async (): Promise<{ bhs: Buffer; keys: Record<string, string> } | null> => {
      const p = await this.next();
      if (!p) return null;
      this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
      return { bhs: p.bhs, keys: parseKeys(p.data) };
    };
    const fail = (bhs: Buffer | undefined, keys: Record<string, string> = {}): LoginResult => ({
      statusClass: bhs ? bhs[36] : -1,
      statusDetail: bhs ? bhs[37] : -1,
      keys,
      tsih: 0,
    });
    let r;
    if (opts.chap) {
      send(0x80 | 0x01, [...base, ['AuthMethod', 'CHAP,None']]); // CSG 0 -> NSG 1, T
      r = await recv();
      if (!r || r.bhs[36] !== 0) return fail(r?.bhs, r?.keys);
      send(0x00, [['CHAP_A', '5']]);
      r = await recv();
      if (!r || r.bhs[36] !== 0) return fail(r?.bhs, r?.keys);
      const id = Number(r.keys.CHAP_I);
      const chal = Buffer.from(r.keys.CHAP_C.slice(2), 'hex');
      const resp = crypto.createHash('md5').update(Buffer.from([id])).update(opts.chap.secret).update(chal).digest();
      const kv: Array<[string, string]> = [
        ['CHAP_N', opts.chap.user],
        ['CHAP_R', '0x' + resp.toString('hex')],
      ];
      let myChal: Buffer | null = null;
      const myId = 77;
      if (opts.chap.mutual) {
        myChal = crypto.randomBytes(16);
        kv.push(['CHAP_I', String(myId)], ['CHAP_C', '0x' + myChal.toString('hex')]);
      }
      send(0x80 | 0x01, kv);
      r = await recv();
      if (!r || r.bhs[36] !== 0) return fail(r?.bhs, r?.keys);
      if (opts.chap.mutual && myChal) {
        const expect = crypto.createHash('md5').update(Buffer.from([myId])).update(opts.chap.mutual.secret).update(myChal).digest();
        if (r.keys.CHAP_R !== '0x' + expect.toString('hex')) throw new Error('mutual CHAP: target proof wrong');
      }
      send(0x80 | (1 << 2) | 0x03, oper);
    } else {
      send(0x80 | (1 << 2) | 0x03, [...base, ...oper]); // CSG 1 -> NSG 3
    }
    for (;;) {
      r = await recv();
      if (!r) return fail(undefined);
      Object.assign(this.keys, r.keys);
      if (r.bhs[36] !== 0) return fail(r.bhs, r.keys);
      if ((r.bhs[1] & 0x80) && (r.bhs[1] & 3) === 3) break;
      send(0x80 | (1 << 2) | 0x03, []);
    }
    this.maxCmdSN = r.bhs.readUInt32BE(32);
    this.headerDigest = this.keys.HeaderDigest === 'CRC32C';
    this.dataDigest = this.keys.DataDigest === 'CRC32C';
    this.framer.headerDigest = this.headerDigest;
    this.framer.dataDigest = this.dataDigest;
    this.itt++;
    return { statusClass: 0, statusDetail: 0, keys: this.keys, tsih: r.bhs.readUInt16BE(14) };
  }

  /** SCSI command; `dataOut` is sent as immediate data, unsolicited Data-Out and answers to R2Ts. */
  async command(lun: number, cdb: Buffer, opts: { read?: number; dataOut?: Buffer; immediate?: boolean; timeoutMs?: number } = {}): Promise<CommandResult> {
    const itt = this.itt++;
    const out = opts.dataOut ?? Buffer.alloc(0);
    const edtl = opts.read ?? out.length;
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x01 | (opts.immediate ? 0x40 : 0);
    h[1] = 0x80 | (opts.read !== undefined ? 0x40 : 0) | (out.length ? 0x20 : 0) | 1;
    h[9] = lun;
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(edtl, 20);
    h.writeUInt32BE(this.cmdSN, 24);
    if (!opts.immediate) this.cmdSN = (this.cmdSN + 1) >>> 0;
    h.writeUInt32BE(this.expStatSN, 28);
    cdb.copy(h, 32, 0, Math.min(16, cdb.length));
    const mrdsl = Number(this.keys.MaxRecvDataSegmentLength ?? 8192);
    const fbl = Number(this.keys.FirstBurstLength ?? 65536);
    const immediateOk = this.keys.ImmediateData !== 'No';
    const unsolicitedOk = this.keys.InitialR2T === 'No';
    let sent = 0;
    let imm: Buffer = Buffer.alloc(0);
    if (out.length && immediateOk) imm = out.subarray(0, Math.min(mrdsl, fbl, out.length));
    sent = imm.length;
    const unsolicitedEnd = unsolicitedOk ? Math.min(fbl, out.length) : sent;
    if (sent < unsolicitedEnd) h[1] &= ~0x80; // F=0: unsolicited Data-Out follows
    this.sendPdu(h, imm);
    let dataSN = 0;
    while (sent < unsolicitedEnd) {
      const n = Math.min(mrdsl, unsolicitedEnd - sent);
      this.dataOut(itt, NO_TAG, dataSN++, sent, out.subarray(sent, sent + n), sent + n >= unsolicitedEnd);
      sent += n;
    }
    const chunks: Buffer[] = [];
    for (;;) {
      const p = await this.nextReply(opts.timeoutMs ?? 10000);
      if (!p) throw new Error('connection closed or timed out waiting for response');
      const op = p.bhs[0] & 0x3f;
      if (p.bhs.readUInt32BE(16) !== itt) {
        this.stray.push(p);
        continue;
      }
      if (op === 0x31) {
        const ttt = p.bhs.readUInt32BE(20);
        const off = p.bhs.readUInt32BE(40);
        const len = p.bhs.readUInt32BE(44);
        let sn = 0;
        for (let o = off; o < off + len; ) {
          const n = Math.min(mrdsl, off + len - o);
          this.dataOut(itt, ttt, sn++, o, out.subarray(o, o + n), o + n >= off + len);
          o += n;
        }
        continue;
      }
      if (op === 0x25) {
        chunks.push(p.data);
        if (p.bhs[1] & 0x01) {
          return { status: p.bhs[3], data: Buffer.concat(chunks), residual: p.bhs.readUInt32BE(44), flags: p.bhs[1], response: 0 };
        }
        continue;
      }
      if (op === 0x21) {
        let sense: Buffer | undefined;
        if (p.data.length >= 2) sense = p.data.subarray(2, 2 + p.data.readUInt16BE(0));
        return { status: p.bhs[3], sense, data: Buffer.concat(chunks), residual: p.bhs.readUInt32BE(44), flags: p.bhs[1], response: p.bhs[2] };
      }
      throw new Error(`unexpected PDU opcode 0x${op.toString(16)}`);
    }
  }

  dataOut(itt: number, ttt: number, dataSN: number, offset: number, data: Buffer, final: boolean): void {
    const d = Buffer.alloc(BHS_LENGTH);
    d[0] = 0x05;
    d[1] = final ? 0x80 : 0;
    d.writeUInt32BE(itt, 16);
    d.writeUInt32BE(ttt, 20);
    d.writeUInt32BE(this.expStatSN, 28);
    d.writeUInt32BE(dataSN, 36);
    d.writeUInt32BE(offset, 40);
    this.sendPdu(d, data);
  }

  nopOut(ttt = NO_TAG, itt = this.itt++, data = Buffer.alloc(0), immediate = false): number {
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x00 | (immediate || itt === NO_TAG ? 0x40 : 0);
    h[1] = 0x80;
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(ttt, 20);
    h.writeUInt32BE(this.cmdSN, 24);
    if (!(immediate || itt === NO_TAG)) this.cmdSN = (this.cmdSN + 1) >>> 0;
    h.writeUInt32BE(this.expStatSN, 28);
    this.sendPdu(h, data);
    return itt;
  }

  async text(kv: Array<[string, string]>): Promise<Record<string, string[]>> {
    const itt = this.itt++;
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x04 | 0x40;
    h[1] = 0x80;
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(NO_TAG, 20);
    h.writeUInt32BE(this.cmdSN, 24);
    h.writeUInt32BE(this.expStatSN, 28);
    this.sendPdu(h, textKeys(kv));
    const out: Record<string, string[]> = {};
    let body = Buffer.alloc(0);
    for (;;) {
      const p = await this.nextReply();
      if (!p) throw new Error('no text response');
      body = Buffer.concat([body, p.data]);
      if (!(p.bhs[1] & 0x40)) break;
      const c = Buffer.alloc(BHS_LENGTH);
      c[0] = 0x04 | 0x40;
      c[1] = 0x80;
      c.writeUInt32BE(itt, 16);
      c.writeUInt32BE(p.bhs.readUInt32BE(20), 20);
      c.writeUInt32BE(this.cmdSN, 24);
      this.sendPdu(c);
    }
    for (const part of body.toString('utf8').split('\0')) {
      const eq = part.indexOf('=');
      if (eq > 0) (out[part.slice(0, eq)] ??= []).push(part.slice(eq + 1));
    }
    return out;
  }

  async tmf(fn: number, lun: number, refItt = NO_TAG, refCmdSN = 0): Promise<number> {
    const itt = this.itt++;
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x02 | 0x40;
    h[1] = 0x80 | fn;
    h[9] = lun;
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(refItt, 20);
    h.writeUInt32BE(this.cmdSN, 24);
    h.writeUInt32BE(this.expStatSN, 28);
    h.writeUInt32BE(refCmdSN, 32);
    this.sendPdu(h);
    for (;;) {
      const p = await this.nextReply();
      if (!p) throw new Error('no TMF response');
      if ((p.bhs[0] & 0x3f) === 0x22 && p.bhs.readUInt32BE(16) === itt) return p.bhs[2];
      this.stray.push(p);
    }
  }

  async logout(reason = 0): Promise<number> {
    const itt = this.itt++;
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x06 | 0x40;
    h[1] = 0x80 | reason;
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(this.cmdSN, 24);
    h.writeUInt32BE(this.expStatSN, 28);
    this.sendPdu(h);
    const p = await this.nextReply();
    if (!p) throw new Error('no logout response');
    return p.bhs[2];
  }

  close(): void {
    this.sock.destroy();
  }
}

/** CDB builders used across tests. */
export const cdb = {
  read10(lba: number, blocks: number): Buffer {
    const c = Buffer.alloc(10);
    c[0] = 0x28;
    c.writeUInt32BE(lba, 2);
    c.writeUInt16BE(blocks, 7);
    return c;
  },
  write10(lba: number, blocks: number, fua = false): Buffer {
    const c = Buffer.alloc(10);
    c[0] = 0x2a;
    if (fua) c[1] = 0x08;
    c.writeUInt32BE(lba, 2);
    c.writeUInt16BE(blocks, 7);
    return c;
  },
  inquiry(alloc = 96, evpd = false, page = 0): Buffer {
    const c = Buffer.alloc(6);
    c[0] = 0x12;
    if (evpd) c[1] = 1;
    c[2] = page;
    c.writeUInt16BE(alloc, 3);
    return c;
  },
  testUnitReady(): Buffer {
    return Buffer.alloc(6);
  },
  readCapacity16(): Buffer {
    const c = Buffer.alloc(16);
    c[0] = 0x9e;
    c[1] = 0x10;
    c.writeUInt32BE(32, 10);
    return c;
  },
};

// ---- Helpers for the robustness tests (hostile input, sessions, task management, shutdown) ----

/** A seeded PRNG (mulberry32): print the seed, and the same seed replays the same run. */
export class Prng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Connect and log in; throws when the login fails. */
export async function openSession(port: number, opts: LoginOptions = {}): Promise<TestInitiator> {
  const c = await TestInitiator.connect(port);
  const r = await c.login(opts);
  if (r.statusClass !== 0) {
    c.close();
    throw new Error(`login failed: class ${r.statusClass} detail ${r.statusDetail}`);
  }
  return c;
}

/** Take the pending unit attentions of `lun` (bounded). */
export async function clearUnitAttentions(c: TestInitiator, lun = 0): Promise<void> {
  for (let i = 0; i < 8; i++) {
    const r = await c.command(lun, cdb.testUnitReady());
    if (r.status === 0) return;
  }
  throw new Error(`LUN ${lun} still reports a unit attention`);
}

/** Poll `cond` until it holds or `timeoutMs` passed; returns its last value. */
export async function waitUntil(cond: () => boolean, timeoutMs = 5000, intervalMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= deadline) return cond();
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const isPing = (p: Pdu): boolean => (p.bhs[0] & 0x3f) === 0x20 && p.bhs.readUInt32BE(16) === NO_TAG;

/**
 * The next PDU for which `pred` holds, or null when the connection closed or
 * `timeoutMs` passed. Others go to `c.stray`; target pings are answered
 * unless `answerPings` is false.
 */
export async function waitForPdu(c: TestInitiator, pred: (p: Pdu) => boolean, timeoutMs = 5000, answerPings = true): Promise<Pdu | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return null;
    // c.next, not c.nextReply: pings every few hundred ms must not stretch the deadline.
    const p = await c.next(left);
    if (!p) return null;
    if (answerPings && isPing(p)) {
      c.stray.push(p);
      c.nopOut(p.bhs.readUInt32BE(20), NO_TAG, Buffer.alloc(0), true);
      continue;
    }
    if (pred(p)) return p;
    c.stray.push(p);
  }
}

/** True once the target has closed the connection (PDUs read meanwhile go to `c.stray`, pings unanswered). */
export async function waitClosed(c: TestInitiator, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!c.closed) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const p = await c.next(left);
    if (p) c.stray.push(p);
  }
  return c.closed;
}

export interface CommandHeader {
  itt: number;
  cmdSN: number;
  expStatSN?: number;
  lun: number;
  cdb: Buffer;
  edtl: number;
  read?: boolean;
  write?: boolean;
  /** F bit; clear it when unsolicited Data-Out follows. */
  final?: boolean;
  immediate?: boolean;
}

/** A SCSI Command BHS (RFC 7143 §11.3), not sent. */
export function scsiCommandBhs(o: CommandHeader): Buffer {
  const h = Buffer.alloc(BHS_LENGTH);
  h[0] = 0x01 | (o.immediate ? 0x40 : 0);
  h[1] = (o.final === false ? 0 : 0x80) | (o.read ? 0x40 : 0) | (o.write ? 0x20 : 0) | 1;
  h[9] = o.lun;
  h.writeUInt32BE(o.itt >>> 0, 16);
  h.writeUInt32BE(o.edtl >>> 0, 20);
  h.writeUInt32BE(o.cmdSN >>> 0, 24);
  h.writeUInt32BE((o.expStatSN ?? 0) >>> 0, 28);
  o.cdb.copy(h, 32, 0, Math.min(16, o.cdb.length));
  return h;
}

/**
 * Send a SCSI command without waiting for its answer. The CmdSN is the
 * initiator's next one (and advances) unless `cmdSN` is given or the command
 * is immediate. Returns its ITT and CmdSN.
 */
export function startCommand(
  c: TestInitiator,
  lun: number,
  cdbBytes: Buffer,
  o: { edtl: number; read?: boolean; write?: boolean; immediateData?: Buffer; final?: boolean; cmdSN?: number; immediate?: boolean },
): { itt: number; cmdSN: number } {
  const itt = c.itt++;
  const cmdSN = o.cmdSN ?? c.cmdSN;
  if (o.cmdSN === undefined && !o.immediate) c.cmdSN = (c.cmdSN + 1) >>> 0;
  const h = scsiCommandBhs({ itt, cmdSN, expStatSN: c.expStatSN, lun, cdb: cdbBytes, edtl: o.edtl, read: o.read, write: o.write, final: o.final, immediate: o.immediate });
  c.sendPdu(h, o.immediateData ?? Buffer.alloc(0));
  return { itt, cmdSN };
}

/** Answer an R2T with the bytes of `out` it asks for, in Data-Out PDUs of at most `mrdsl` bytes. */
export function answerR2t(c: TestInitiator, r2t: Pdu, out: Buffer, mrdsl = Number(c.keys.MaxRecvDataSegmentLength ?? 8192)): void {
  const itt = r2t.bhs.readUInt32BE(16);
  const ttt = r2t.bhs.readUInt32BE(20);
  const off = r2t.bhs.readUInt32BE(40);
  const len = r2t.bhs.readUInt32BE(44);
  let sn = 0;
  for (let o = off; o < off + len; ) {
    const n = Math.min(mrdsl, off + len - o);
    c.dataOut(itt, ttt, sn++, o, out.subarray(o, o + n), o + n >= off + len);
    o += n;
  }
}

/**
 * Collect the answer to a command started with startCommand: Data-In and the
 * SCSI Response (or the Data-In with S). R2Ts for it are answered from
 * `dataOut` when given, else returned in `r2ts`. Null when the connection
 * closed or `timeoutMs` passed first.
 */
export async function awaitResponse(
  c: TestInitiator,
  itt: number,
  o: { dataOut?: Buffer; timeoutMs?: number } = {},
): Promise<(CommandResult & { r2ts: Pdu[] }) | null> {
  const chunks: Buffer[] = [];
  const r2ts: Pdu[] = [];
  const deadline = Date.now() + (o.timeoutMs ?? 10000);
  for (;;) {
    const p = await waitForPdu(c, (x) => x.bhs.readUInt32BE(16) === itt && (x.bhs[0] & 0x3f) !== 0x3f, deadline - Date.now());
    if (!p) return null;
    const op = p.bhs[0] & 0x3f;
    if (op === 0x31) {
      if (o.dataOut) answerR2t(c, p, o.dataOut);
      else r2ts.push(p);
      continue;
    }
    if (op === 0x25) {
      chunks.push(p.data);
      if (p.bhs[1] & 0x01) {
        return { status: p.bhs[3], data: Buffer.concat(chunks), residual: p.bhs.readUInt32BE(44), flags: p.bhs[1], response: 0, r2ts };
      }
      continue;
    }
    if (op === 0x21) {
      const sense = p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : undefined;
      return { status: p.bhs[3], sense, data: Buffer.concat(chunks), residual: p.bhs.readUInt32BE(44), flags: p.bhs[1], response: p.bhs[2], r2ts };
    }
    c.stray.push(p);
  }
}

/** BHS builders for the other initiator PDUs, for tests that send them raw or mutate them. */
export const bhs = {
  nopOut(o: { itt: number; ttt?: number; cmdSN: number; expStatSN?: number; immediate?: boolean; lun?: number }): Buffer {
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x00 | (o.immediate ? 0x40 : 0);
    h[1] = 0x80;
    h[9] = o.lun ?? 0;
    h.writeUInt32BE(o.itt >>> 0, 16);
    h.writeUInt32BE((o.ttt ?? NO_TAG) >>> 0, 20);
    h.writeUInt32BE(o.cmdSN >>> 0, 24);
    h.writeUInt32BE((o.expStatSN ?? 0) >>> 0, 28);
    return h;
  },
  dataOut(o: { itt: number; ttt: number; dataSN: number; offset: number; final: boolean; expStatSN?: number; lun?: number }): Buffer {
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x05;
    h[1] = o.final ? 0x80 : 0;
    h[9] = o.lun ?? 0;
    h.writeUInt32BE(o.itt >>> 0, 16);
    h.writeUInt32BE(o.ttt >>> 0, 20);
    h.writeUInt32BE((o.expStatSN ?? 0) >>> 0, 28);
    h.writeUInt32BE(o.dataSN >>> 0, 36);
    h.writeUInt32BE(o.offset >>> 0, 40);
    return h;
  },
  tmf(o: { itt: number; fn: number; lun: number; refItt?: number; cmdSN: number; expStatSN?: number; refCmdSN?: number; immediate?: boolean }): Buffer {
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x02 | (o.immediate === false ? 0 : 0x40);
    h[1] = 0x80 | (o.fn & 0x7f);
    h[9] = o.lun;
    h.writeUInt32BE(o.itt >>> 0, 16);
    h.writeUInt32BE((o.refItt ?? NO_TAG) >>> 0, 20);
    h.writeUInt32BE(o.cmdSN >>> 0, 24);
    h.writeUInt32BE((o.expStatSN ?? 0) >>> 0, 28);
    h.writeUInt32BE((o.refCmdSN ?? 0) >>> 0, 32);
    return h;
  },
  text(o: { itt: number; ttt?: number; cmdSN: number; expStatSN?: number; final?: boolean; cont?: boolean }): Buffer {
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x04 | 0x40;
    h[1] = (o.final === false ? 0 : 0x80) | (o.cont ? 0x40 : 0);
    h.writeUInt32BE(o.itt >>> 0, 16);
    h.writeUInt32BE((o.ttt ?? NO_TAG) >>> 0, 20);
    h.writeUInt32BE(o.cmdSN >>> 0, 24);
    h.writeUInt32BE((o.expStatSN ?? 0) >>> 0, 28);
    return h;
  },
  logout(o: { itt: number; reason: number; cid?: number; cmdSN: number; expStatSN?: number }): Buffer {
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x06 | 0x40;
    h[1] = 0x80 | (o.reason & 0x7f);
    h.writeUInt32BE(o.itt >>> 0, 16);
    h.writeUInt16BE(o.cid ?? 0, 20);
    h.writeUInt32BE(o.cmdSN >>> 0, 24);
    h.writeUInt32BE((o.expStatSN ?? 0) >>> 0, 28);
    return h;
  },
  /** Login Request: CSG/NSG/T/C in flags (RFC 7143 §11.12). */
  login(o: { flags: number; isid: Buffer; itt?: number; tsih?: number; cid?: number; cmdSN?: number; versionMax?: number; versionMin?: number }): Buffer {
    const h = Buffer.alloc(BHS_LENGTH);
    h[0] = 0x43;
    h[1] = o.flags;
    h[2] = o.versionMax ?? 0;
    h[3] = o.versionMin ?? 0;
    o.isid.copy(h, 8, 0, 6);
    h.writeUInt16BE(o.tsih ?? 0, 14);
    h.writeUInt32BE((o.itt ?? 1) >>> 0, 16);
    h.writeUInt16BE(o.cid ?? 0, 20);
    h.writeUInt32BE((o.cmdSN ?? 1) >>> 0, 24);
    return h;
  },
};

/** "Key=Value\0" text for login and text requests. */
export function textData(kv: Array<[string, string]>): Buffer {
  return textKeys(kv);
}

export interface VerifiedIoResult {
  rounds: number;
  errors: number;
  miscompares: number;
  firstError?: string;
}

/**
 * Verified I/O: write random data to random blocks inside
 * [firstLba, firstLba + lbaCount) of `lun`, read it back, compare. Runs
 * `rounds` rounds, or while `keepGoing()` holds (then at least `rounds`,
 * at most `maxRounds`). Counts errors (bad status, lost connection) and
 * miscompares instead of throwing.
 */
export async function verifiedIo(
  c: TestInitiator,
  lun: number,
  firstLba: number,
  lbaCount: number,
  rng: Prng,
  o: { rounds: number; maxRounds?: number; keepGoing?: () => boolean; maxBlocks?: number; blockSize?: number },
): Promise<VerifiedIoResult> {
  const bs = o.blockSize ?? 512;
  const res: VerifiedIoResult = { rounds: 0, errors: 0, miscompares: 0 };
  const max = o.maxRounds ?? o.rounds;
  while (res.rounds < max && (res.rounds < o.rounds || (o.keepGoing?.() ?? false))) {
    res.rounds++;
    const blocks = rng.range(1, Math.min(o.maxBlocks ?? 64, lbaCount));
    const lba = firstLba + rng.int(lbaCount - blocks + 1);
    const data = rng.bytes(blocks * bs);
    try {
      const w = await c.command(lun, cdb.write10(lba, blocks), { dataOut: data });
      if (w.status !== 0) {
        res.errors++;
        res.firstError ??= `write status ${w.status} sense ${w.sense?.toString('hex')}`;
        continue;
      }
      const r = await c.command(lun, cdb.read10(lba, blocks), { read: data.length });
      if (r.status !== 0) {
        res.errors++;
        res.firstError ??= `read status ${r.status} sense ${r.sense?.toString('hex')}`;
        continue;
      }
      if (!r.data.equals(data)) res.miscompares++;
    } catch (err) {
      res.errors++;
      res.firstError ??= String(err);
      if (c.closed) break;
    }
  }
  return res;
}
