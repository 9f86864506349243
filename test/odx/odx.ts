/**
 * ODX conformance suite support, in the style of libiscsi's test tool: a
 * uniform trio per command (build the CDB, build/size the data, unmarshal the
 * answer) and expected errors checked against a *set* of acceptable sense
 * codes. Everything goes over iSCSI (test/support/initiator.ts) to an
 * in-process daemon (test/support/daemon.ts).
 */
import { TestInitiator, clearUnitAttentions, openSession } from '../support/initiator';
import type { CommandResult } from '../support/initiator';
import { startTestDaemon, type TestDaemon } from '../support/daemon';

export const BS = 512;
export const ROD_TYPE = { AUR: 0x0001_0000, PIT: 0x0080_0000, PIT_CV: 0x0080_0001, PIT_PERSISTENT: 0x0080_0002, PIT_ANY: 0x0080_ffff, ZERO: 0xffff_0001 } as const;

export type Range = [lba: number, blocks: number];

// ---- CDBs ---------------------------------------------------------------------------

export function populateTokenCdb(listId: number, length: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x83;
  c[1] = 0x10;
  c.writeUInt32BE(listId, 6);
  c.writeUInt32BE(length, 10);
  return c;
}

export function writeUsingTokenCdb(listId: number, length: number): Buffer {
  const c = populateTokenCdb(listId, length);
  c[1] = 0x11;
  return c;
}

export function rrtiCdb(listId: number, alloc = 4096): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x84;
  c[1] = 0x07;
  c.writeUInt32BE(listId, 2);
  c.writeUInt32BE(alloc, 10);
  return c;
}

export function reportAllRodTokensCdb(alloc = 65536): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x84;
  c[1] = 0x08;
  c.writeUInt32BE(alloc, 10);
  return c;
}

/** COPY OPERATION ABORT (83h/1Ch): the same CDB the EXTENDED COPY tests build. */
export { coaCdb as copyOperationAbortCdb } from '../scsi/copy/helpers';

export function writeSame16Cdb(lba: number, blocks: number, o: { unmap?: boolean; ndob?: boolean } = {}): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x93;
  c[1] = (o.unmap ? 0x08 : 0) | (o.ndob ? 0x01 : 0);
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt32BE(blocks, 10);
  return c;
}

export function unmapCdb(length: number): Buffer {
  const c = Buffer.alloc(10);
  c[0] = 0x42;
  c.writeUInt16BE(length, 7);
  return c;
}

export function unmapParams(ranges: Range[]): Buffer {
  const b = Buffer.alloc(8 + 16 * ranges.length);
  b.writeUInt16BE(b.length - 2, 0);
  b.writeUInt16BE(16 * ranges.length, 2);
  ranges.forEach(([lba, n], i) => {
    b.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
    b.writeUInt32BE(n, 16 + 16 * i);
  });
  return b;
}

// ---- parameter lists ----------------------------------------------------------------

function rangeDescriptors(ranges: Range[]): Buffer {
  const b = Buffer.alloc(16 * ranges.length);
  ranges.forEach(([lba, n], i) => {
    b.writeBigUInt64BE(BigInt(lba), 16 * i);
    b.writeUInt32BE(n, 16 * i + 8);
  });
  return b;
}

export function ptParams(ranges: Range[], o: { immed?: boolean; rtv?: boolean; rodType?: number; inactivity?: number; dataLength?: number; rangeLength?: number } = {}): Buffer {
  const d = rangeDescriptors(ranges);
  const h = Buffer.alloc(16);
  h.writeUInt16BE(o.dataLength ?? 14 + d.length, 0);
  h[2] = (o.rtv ? 0x02 : 0) | (o.immed ? 0x01 : 0);
  h.writeUInt32BE(o.inactivity ?? 0, 4);
  h.writeUInt32BE(o.rodType ?? 0, 8);
  h.writeUInt16BE(o.rangeLength ?? d.length, 14);
  return Buffer.concat([h, d]);
}

export function wutParams(token: Buffer, ranges: Range[], o: { immed?: boolean; delTkn?: boolean; offset?: number; dataLength?: number; rangeLength?: number } = {}): Buffer {
  const d = rangeDescriptors(ranges);
  const h = Buffer.alloc(536);
  h.writeUInt16BE(o.dataLength ?? 534 + d.length, 0);
  h[2] = (o.delTkn ? 0x02 : 0) | (o.immed ? 0x01 : 0);
  h.writeBigUInt64BE(BigInt(o.offset ?? 0), 8);
  token.copy(h, 16, 0, 512);
  h.writeUInt16BE(o.rangeLength ?? d.length, 534);
  return Buffer.concat([h, d]);
}

/** The block device zero ROD token (SBC-4): type FFFF_0001h, length 01F8h, the rest reserved. */
export function zeroToken(): Buffer {
  const t = Buffer.alloc(512);
  t.writeUInt32BE(ROD_TYPE.ZERO, 0);
  t.writeUInt16BE(0x01f8, 6);
  return t;
}

// ---- answers -------------------------------------------------------------------------

export interface Rrti {
  availableData: number;
  responseToSa: number;
  status: number;
  operationCounter: number;
  estimatedDelay: number;
  completionStatus: number;
  senseFieldLength: number;
  senseLength: number;
  units: number;
  transferCount: bigint;
  segments: number;
  sense: Buffer;
  descriptorsLength: number;
  token?: Buffer;
}

/** Windows' RECEIVE_TOKEN_INFORMATION_HEADER, then the ROD token descriptor (reference 2.9). */
export function parseRrti(b: Buffer): Rrti {
  const senseField = b[13];
  const x = 32 + senseField;
  const descriptorsLength = b.length >= x + 4 ? b.readUInt32BE(x) : 0;
  return {
    availableData: b.readUInt32BE(0),
    responseToSa: b[4] & 0x1f,
    status: b[5] & 0x7f,
    operationCounter: b.readUInt16BE(6),
    estimatedDelay: b.readUInt32BE(8),
    completionStatus: b[12],
    senseFieldLength: senseField,
    senseLength: b[14],
    units: b[15],
    transferCount: b.readBigUInt64BE(16),
    segments: b.readUInt16BE(24),
    sense: b.subarray(32, 32 + b[14]),
    descriptorsLength,
    token: descriptorsLength >= 514 ? Buffer.from(b.subarray(x + 6, x + 6 + 512)) : undefined,
  };
}

export interface Sense {
  key: number;
  asc: number;
  ascq: number;
  information: number;
  valid: boolean;
  sksv: boolean;
  cd: boolean;
  fieldPointer: number;
}

export function senseOf(r: CommandResult): Sense {
  const s = r.sense;
  if (r.status !== 2 || !s) throw new Error(`expected CHECK CONDITION, got status ${r.status}`);
  return {
    key: s[2] & 0x0f,
    asc: s[12],
    ascq: s[13],
    information: s.readUInt32BE(3),
    valid: (s[0] & 0x80) !== 0,
    sksv: (s[15] & 0x80) !== 0,
    cd: (s[15] & 0x40) !== 0,
    fieldPointer: s.readUInt16BE(16),
  };
}

/** Key/ASC/ASCQ triples, libiscsi style: the command must fail with one of them. */
export type SenseSet = ReadonlyArray<readonly [number, number, number]>;

export const SENSE = {
  INVALID_FIELD_IN_CDB: [[0x5, 0x24, 0x00]],
  INVALID_FIELD_IN_PARAMETER_LIST: [[0x5, 0x26, 0x00]],
  PARAMETER_LIST_LENGTH_ERROR: [[0x5, 0x1a, 0x00]],
  TOO_MANY_SEGMENT_DESCRIPTORS: [[0x5, 0x26, 0x08]],
  LBA_OUT_OF_RANGE: [[0x5, 0x21, 0x00]],
  TOKEN_UNKNOWN: [[0x5, 0x23, 0x04]],
  /** A forged or altered token: corrupt, or unknown (a manager that compares all 512 bytes). */
  TOKEN_FORGED: [[0x5, 0x23, 0x05], [0x5, 0x23, 0x04]],
  TOKEN_EXPIRED: [[0x5, 0x23, 0x07]],
  TOKEN_CANCELLED: [[0x5, 0x23, 0x08]],
  TOKEN_DELETED: [[0x5, 0x23, 0x09]],
  INVALID_TOKEN_LENGTH: [[0x5, 0x23, 0x0a]],
  UNSUPPORTED_TOKEN_TYPE: [[0x5, 0x23, 0x01]],
  INSUFFICIENT_RESOURCES_TOKEN: [[0x5, 0x55, 0x0d], [0x5, 0x55, 0x03]],
  /** A shortfall: COPY ABORTED when something was written, ILLEGAL REQUEST when nothing was. */
  DATA_UNDERRUN: [[0xa, 0x0d, 0x04], [0x5, 0x0d, 0x04]],
} as const satisfies Record<string, SenseSet>;

export function expectSense(r: CommandResult, set: SenseSet, what = ''): Sense {
  const s = senseOf(r);
  const ok = set.some(([k, a, q]) => k === s.key && a === s.asc && q === s.ascq);
  if (!ok) {
    const got = `${s.key.toString(16)}/${s.asc.toString(16)}/${s.ascq.toString(16)}`;
    const want = set.map(([k, a, q]) => `${k.toString(16)}/${a.toString(16)}/${q.toString(16)}`).join(' or ');
    throw new Error(`${what}: sense ${got}, expected ${want}`);
  }
  return s;
}

export function expectGood(r: CommandResult, what = ''): void {
  if (r.status !== 0) {
    const s = r.sense ? senseOf(r) : undefined;
    throw new Error(`${what}: status ${r.status}${s ? ` sense ${s.key.toString(16)}/${s.asc.toString(16)}/${s.ascq.toString(16)} fp ${s.fieldPointer}` : ''}`);
  }
}

// ---- flows -----------------------------------------------------------------------------

export async function session(port: number, o: { initiatorName?: string; targetName?: string } = {}): Promise<TestInitiator> {
  const c = await openSession(port, { ...o, keys: { MaxRecvDataSegmentLength: '262144', MaxBurstLength: '1048576', FirstBurstLength: '262144', ...{} } });
  for (const lun of [0, 1]) await clearUnitAttentions(c, lun).catch(() => undefined);
  return c;
}

export async function populateToken(c: TestInitiator, lun: number, listId: number, ranges: Range[], o: Parameters<typeof ptParams>[1] = {}): Promise<CommandResult> {
  const p = ptParams(ranges, o);
  return c.command(lun, populateTokenCdb(listId, p.length), { dataOut: p });
}

export async function rrti(c: TestInitiator, lun: number, listId: number): Promise<Rrti> {
  const r = await c.command(lun, rrtiCdb(listId), { read: 4096 });
  expectGood(r, 'RRTI');
  return parseRrti(r.data);
}

/** PT then RRTI: the 512-byte token. */
export async function tokenFor(c: TestInitiator, lun: number, listId: number, ranges: Range[], o: Parameters<typeof ptParams>[1] = {}): Promise<Buffer> {
  expectGood(await populateToken(c, lun, listId, ranges, o), 'POPULATE TOKEN');
  const info = await rrti(c, lun, listId);
  if (!info.token) throw new Error(`RRTI carried no token (status ${info.status})`);
  return info.token;
}

export async function writeUsingToken(c: TestInitiator, lun: number, listId: number, token: Buffer, ranges: Range[], o: Parameters<typeof wutParams>[2] = {}): Promise<CommandResult> {
  const p = wutParams(token, ranges, o);
  return c.command(lun, writeUsingTokenCdb(listId, p.length), { dataOut: p, timeoutMs: 60000 });
}

const IO_BLOCKS = 2048;

export async function writeBlocks(c: TestInitiator, lun: number, lba: number, data: Buffer, bs = BS): Promise<void> {
  for (let off = 0; off < data.length; off += IO_BLOCKS * bs) {
    const chunk = data.subarray(off, Math.min(data.length, off + IO_BLOCKS * bs));
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x8a;
    cdb.writeBigUInt64BE(BigInt(lba + off / bs), 2);
    cdb.writeUInt32BE(chunk.length / bs, 10);
    expectGood(await c.command(lun, cdb, { dataOut: chunk }), 'WRITE(16)');
  }
}

export async function readBlocks(c: TestInitiator, lun: number, lba: number, blocks: number, bs = BS): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let done = 0; done < blocks; done += IO_BLOCKS) {
    const n = Math.min(IO_BLOCKS, blocks - done);
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x88;
    cdb.writeBigUInt64BE(BigInt(lba + done), 2);
    cdb.writeUInt32BE(n, 10);
    const r = await c.command(lun, cdb, { read: n * bs });
    expectGood(r, 'READ(16)');
    parts.push(r.data);
  }
  return Buffer.concat(parts);
}

export function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ Math.imul(seed + 1, 40503)) >>> 0, i);
  return b;
}

export async function odxDaemon(overrides: Record<string, unknown> = {}, lunSize = '64MiB'): Promise<TestDaemon> {
  return startTestDaemon(overrides, lunSize);
}

export { TestInitiator };
