/**
 * The ROD token store of the copy manager (SPC-5 5.17.6; SBC-4 4.x "ROD
 * tokens"; reference 2.11, 2.12): live tokens and what they represent, their
 * lifetime, and the point-in-time machinery.
 *
 * Kinds of token (`mode`):
 *  - clone (PIT, the filesystem shares extents): POPULATE TOKEN clones the
 *    ranges into a per-token side file; the token reads only from it. Writes
 *    to the source cost nothing here except the space accounting.
 *  - cow (PIT elsewhere): the token reads the source live; before a write
 *    lands on a range it covers (LogicalUnit.beforeWrite), the old extent is
 *    copied, in the kernel (BackingStore.copyRange), to the side file, and
 *    the token reads that part from there.
 *  - vulnerable (PIT change vulnerable, RTV=1): reads live; a write to a
 *    covered range cancels it.
 *  - reference (access upon reference, RTV=1): reads live, as FreeBSD does.
 *
 * A read from the live source registers the source range as in flight; a
 * writer's guard waits for overlapping reads after it has saved, so no copy
 * ever sees a torn mix of old and new bytes.
 *
 * Side files are bounded in total (MAX_SIDE_FILE_BYTES): past the bound the
 * oldest tokens holding space are cancelled (5/23/08 on their next use).
 * Tokens expire after their inactivity timeout (one coarse sweep timer),
 * never while in use; invalidated tokens leave a tombstone for twice their
 * timeout so a later use gets EXPIRED / DELETED / CANCELLED, not UNKNOWN.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { BackingStore } from '../backing-store';
import type { LogicalUnit, WriteGuard } from '../logical-unit';
import { SenseError, type SenseReason } from '../sense';
import { designatorsOf } from './cscd';
import { CopyIoError, moveData } from './mover';
import {
  MAX_LIVE_TOKENS,
  MAX_SIDE_FILE_BYTES,
  OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER,
  WUT_DEADLINE_MS,
} from './limits';
import {
  RodType,
  encodeCreatorDescriptor,
  encodeRodToken,
  encodeTargetDeviceDescriptor,
  verifyRodToken,
  type RodTokenFields,
} from './rod-token';

/** A private file (or memory) holding a token's point-in-time bytes at their ROD offsets. */
export interface SideFile {
  readonly store: BackingStore;
  remove(): Promise<void>;
}

/** Makes side files; the composer places them next to the LU files (same filesystem: clones, copy_file_range). */
export type SideFileFactory = (o: { name: string; bytes: number; blockSize: number; source: BackingStore }) => Promise<SideFile>;

export interface BlockRange {
  lba: bigint;
  blocks: number;
}

export type TokenMode = 'clone' | 'cow' | 'vulnerable' | 'reference';
export type Invalidation = 'expired' | 'deleted' | 'cancelled' | 'revoked';
/** A token's lifecycle, as the store's observer sees it: made, presented by WRITE USING TOKEN, invalidated. */
export type TokenEvent = 'created' | 'used' | Invalidation;
/** Called synchronously, once per event; it must not throw. */
export type TokenEventListener = (event: TokenEvent, token: RodToken) => void;

const INVALIDATION_SENSE: Record<Invalidation, SenseReason> = {
  expired: 'TOKEN_EXPIRED',
  deleted: 'TOKEN_DELETED',
  cancelled: 'TOKEN_CANCELLED',
  revoked: 'TOKEN_REVOKED',
};

/** Sorted, disjoint half-open intervals of numbers (ROD byte offsets). */
export class Intervals {
  private readonly list: Array<[number, number]> = [];
  total = 0;

  add(start: number, end: number): void {
    if (end <= start) return;
    const out: Array<[number, number]> = [];
    let s = start;
    let e = end;
    let placed = false;
    for (const [a, b] of this.list) {
      if (b < s) out.push([a, b]);
      else if (a > e) {
        if (!placed) {
          out.push([s, e]);
          placed = true;
        }
        out.push([a, b]);
      } else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    if (!placed) out.push([s, e]);
    this.list.length = 0;
    this.list.push(...out);
    this.total = out.reduce((n, [a, b]) => n + b - a, 0);
  }

  /** [start, end) cut into pieces, each wholly inside (true) or outside (false) the set. */
  split(start: number, end: number): Array<[number, number, boolean]> {
    const out: Array<[number, number, boolean]> = [];
    let at = start;
    for (const [a, b] of this.list) {
      if (b <= at) continue;
      if (a >= end) break;
      if (a > at) out.push([at, a, false]);
      const to = Math.min(b, end);
      out.push([Math.max(a, at), to, true]);
      at = to;
      if (at >= end) break;
    }
    if (at < end) out.push([at, end, false]);
    return out;
  }
}

/** One range of the source, placed in the ROD. */
interface MappedRange {
  /** Byte offset in the ROD (the concatenation of the ranges). */
  rod: number;
  /** Byte offset in the source LU. */
  src: number;
  bytes: number;
}

/** A piece of the ROD and where it lives in the source. */
export interface RodPiece {
  rod: number;
  src: number;
  bytes: number;
}

interface InFlight {
  start: number;
  end: number;
  done: Promise<void>;
}

export class RodToken {
  state: 'live' | Invalidation = 'live';
  /** Commands (and saves) using the token now: it cannot expire, its side file stays. */
  uses = 0;
  lastUse: number;
  /** ROD bytes held by the side file (cow: saved; clone: all of it). */
  readonly saved = new Intervals();
  /** clone: ROD bytes whose source has changed since (the space the side file now holds alone). */
  readonly diverged = new Intervals();
  spaceBytes = 0;
  side?: SideFile;
  /** cow: the side file being made (concurrent first saves share it, so none is made twice). */
  sideMaking?: Promise<SideFile>;
  readonly inflight = new Set<InFlight>();

  constructor(
    readonly id: bigint,
    readonly bytes: Buffer,
    readonly rodType: number,
    public mode: TokenMode,
    readonly lu: LogicalUnit,
    readonly ranges: readonly MappedRange[],
    readonly bytesRepresented: number,
    readonly inactivityMs: number,
    readonly createdAt: number,
    /** The creator LU's capacity at creation (a change invalidates the token). */
    readonly capacity: bigint,
  ) {
    this.lastUse = createdAt;
  }

  get key(): string {
    return this.id.toString(16);
  }

  get blockSize(): number {
    return this.lu.blockSize;
  }

  /** The pieces of ROD bytes [rod, rod+n) in source terms, in ROD order. */
  mapRod(rod: number, n: number): RodPiece[] {
    const out: RodPiece[] = [];
    const end = rod + n;
    for (const r of this.ranges) {
      const a = Math.max(rod, r.rod);
      const b = Math.min(end, r.rod + r.bytes);
      if (a < b) out.push({ rod: a, src: r.src + (a - r.rod), bytes: b - a });
    }
    return out;
  }

  /** The pieces of source bytes [src, src+n) the token covers. */
  mapSource(src: number, n: number): RodPiece[] {
    const out: RodPiece[] = [];
    const end = src + n;
    for (const r of this.ranges) {
      const a = Math.max(src, r.src);
      const b = Math.min(end, r.src + r.bytes);
      if (a < b) out.push({ rod: r.rod + (a - r.src), src: a, bytes: b - a });
    }
    return out;
  }
}

export interface RodTokenStoreOptions {
  logger: Logger;
  /** HMAC key (src/token-secret.ts keeps it in the data directory). */
  secret: Buffer;
  /** Where side files are made; default: memory (tests, stores without files). */
  sideFiles?: SideFileFactory;
  maxLiveTokens?: number;
  maxSideFileBytes?: number;
  /** Foreground WRITE USING TOKEN deadline (ms). */
  wutDeadlineMs?: number;
  /** VPD 8Fh OPTIMAL TRANSFER COUNT x block size (default: the measured OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER). */
  optimalTransferBytes?: number;
  /** Period of the expiry sweep (ms). */
  sweepMs?: number;
  /** Lifecycle observer (the daemon's metrics); settable later through `onEvent`. */
  onEvent?: TokenEventListener;
}

export interface CreateTokenOptions {
  lu: LogicalUnit;
  ranges: readonly BlockRange[];
  rodType: number;
  inactivityS: number;
  /** SCSI target device name for the TARGET DEVICE DESCRIPTOR. */
  targetName: string;
  signal?: AbortSignal;
}

export class RodTokenStore {
  private readonly live = new Map<string, RodToken>();
  private readonly tombstones = new Map<string, { why: Invalidation; until: number }>();
  private readonly byLu = new Map<LogicalUnit, Set<RodToken>>();
  private readonly guard: WriteGuard;
  private readonly logger: Logger;
  private readonly secret: Buffer;
  private readonly sideFiles: SideFileFactory;
  /** Tunable at run time (tests, operators): the limits of limits.ts by default. */
  maxLiveTokens: number;
  maxSideFileBytes: number;
  wutDeadlineMs: number;
  optimalTransferBytes: number;
  private readonly sweepMs: number;
  private readonly bootNonce = BigInt(randomBytes(4).readUInt32BE(0));
  private counter = 0;
  private sweepTimer?: NodeJS.Timeout;
  private readonly dropping = new Set<Promise<void>>();
  /** Bytes held by side files (accounted). */
  spaceUsed = 0;
  readonly startedAt = Date.now();
  /** Lifecycle observer: unset costs nothing. */
  onEvent?: TokenEventListener;

  constructor(options: RodTokenStoreOptions) {
    this.onEvent = options.onEvent;
    this.logger = options.logger;
    this.secret = options.secret;
    this.sideFiles = options.sideFiles ?? memorySideFiles;
    this.maxLiveTokens = options.maxLiveTokens ?? MAX_LIVE_TOKENS;
    this.maxSideFileBytes = options.maxSideFileBytes ?? MAX_SIDE_FILE_BYTES;
    this.wutDeadlineMs = options.wutDeadlineMs ?? WUT_DEADLINE_MS;
    this.optimalTransferBytes = options.optimalTransferBytes ?? OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER;
    this.sweepMs = options.sweepMs ?? 1000;
    this.guard = (lu, offset, length) => this.beforeWrite(lu, offset, length);
  }

  get liveCount(): number {
    return this.live.size;
  }

  /** Live tokens, oldest first. */
  tokens(): RodToken[] {
    return [...this.live.values()];
  }

  // ---- creation (POPULATE TOKEN) ----------------------------------------------

  /**
   * Create a token for `ranges` of `lu`. Point-in-time consistency: the
   * ranges' write locks are held (ascending LBA) while the token takes its
   * image, so no write is half-way through any of them.
   */
  async create(o: CreateTokenOptions): Promise<RodToken> {
    // Reference 2.11: no resources for another token -> 5/55/0D.
    if (this.live.size >= this.maxLiveTokens) throw new SenseError('INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN');
    const lu = o.lu;
    const bs = lu.blockSize;
    const mapped: MappedRange[] = [];
    let rod = 0;
    for (const r of o.ranges) {
      if (r.blocks === 0) continue;
      mapped.push({ rod, src: Number(r.lba) * bs, bytes: r.blocks * bs });
      rod += r.blocks * bs;
    }
    const type = o.rodType === RodType.PIT_ANY ? RodType.PIT_PERSISTENT : o.rodType;
    let mode: TokenMode;
    if (type === RodType.ACCESS_UPON_REFERENCE) mode = 'reference';
    else if (type === RodType.PIT_CHANGE_VULNERABLE) mode = 'vulnerable';
    else mode = lu.store.canClone ? 'clone' : 'cow';
    const now = Date.now();
    const id = (this.bootNonce << 32n) | BigInt(this.counter++ >>> 0);
    if (this.counter > 0xffffffff) this.counter = 0;
    const naa = designatorsOf(lu).find((d) => d.designatorType === 0x03) ?? designatorsOf(lu)[0];
    const fields: RodTokenFields = {
      rodType: type,
      id,
      creator: encodeCreatorDescriptor(naa, bs),
      bytesRepresented: BigInt(rod),
      logicalBlockLength: bs,
      physicalBlockExponent: lu.physicalBlockExponent,
      lbpme: lu.lbpme,
      lbprz: lu.lbpme,
      targetDescriptor: encodeTargetDeviceDescriptor(o.targetName),
      createdMs: now,
      inactivityTimeoutS: o.inactivityS,
      random: randomBytes(32),
    };
    const token = new RodToken(id, encodeRodToken(fields, this.secret), type, mode, lu, mapped, rod, o.inactivityS * 1000, now, lu.blockCount);

    // Hold every range (ascending LBA: no lock-order cycles) while the image is taken.
    const held = [...o.ranges].filter((r) => r.blocks > 0).sort((a, b) => (a.lba < b.lba ? -1 : a.lba > b.lba ? 1 : 0));
    const releases: Array<() => void> = [];
    try {
      for (const r of held) releases.push(await lu.writeLock.acquire(r.lba, BigInt(r.blocks)));
      if (mode === 'clone') await this.cloneImage(token, o.signal);
      this.live.set(token.key, token);
      if (mode !== 'reference') this.watch(token);
    } catch (err) {
      if (token.side) await token.side.remove().catch(() => undefined);
      throw err;
    } finally {
      for (const release of releases) release();
    }
    this.scheduleSweep();
    this.logger.debug({ token: token.key, mode, bytes: rod, ranges: mapped.length }, 'ROD token created');
    this.onEvent?.('created', token);
    return token;
  }

  /** clone mode: share the ranges into the side file; a filesystem that will not clone turns the token into cow. */
  private async cloneImage(token: RodToken, signal?: AbortSignal): Promise<void> {
    const side = await this.sideFiles({ name: token.key, bytes: token.bytesRepresented, blockSize: token.blockSize, source: token.lu.store });
    token.side = side;
    if (!side.store.canClone) {
      token.mode = 'cow';
      return;
    }
    for (const r of token.ranges) {
      await copyBetween(token.lu.store, side.store, r.src, r.rod, r.bytes, signal);
      token.saved.add(r.rod, r.rod + r.bytes);
    }
  }

  private watch(token: RodToken): void {
    let set = this.byLu.get(token.lu);
    if (!set) {
      set = new Set();
      this.byLu.set(token.lu, set);
      token.lu.addWriteGuard(this.guard);
    }
    set.add(token);
  }

  private unwatch(token: RodToken): void {
    const set = this.byLu.get(token.lu);
    if (!set) return;
    set.delete(token);
    if (set.size === 0) {
      this.byLu.delete(token.lu);
      token.lu.removeWriteGuard(this.guard);
    }
  }

  // ---- lookup (WRITE USING TOKEN) -----------------------------------------------

  /**
   * The live token a presented one names. Order (reference 2.12): length
   * 23/0A, ROD type 23/01, MAC 23/05, then the record: invalidated ones give
   * their reason; a sealed token with no record is from before a restart
   * (cancelled) or long expired.
   */
  resolve(presented: Buffer): RodToken {
    const f = verifyRodToken(presented, this.secret);
    const key = f.id.toString(16);
    const t = this.live.get(key);
    if (t) {
      if (!t.bytes.equals(presented)) throw new SenseError('TOKEN_CORRUPT');
      // The creator's capacity changed: the represented LBAs may be gone (reference 2.12).
      if (t.lu.blockCount !== t.capacity) this.invalidate(t, 'cancelled');
      else if (t.uses === 0 && Date.now() - t.lastUse > t.inactivityMs) this.invalidate(t, 'expired');
      if (t.state !== 'live') throw new SenseError(INVALIDATION_SENSE[t.state]);
      this.onEvent?.('used', t);
      return t;
    }
    const tomb = this.tombstones.get(key);
    if (tomb) throw new SenseError(INVALIDATION_SENSE[tomb.why]);
    throw new SenseError(f.createdMs < this.startedAt ? 'TOKEN_CANCELLED' : 'TOKEN_EXPIRED');
  }

  /** A command starts using the token (it cannot expire meanwhile). */
  hold(t: RodToken): void {
    t.uses++;
  }

  /** ...and ends: the inactivity timer restarts (SPC-5: after each completed use). */
  release(t: RodToken): void {
    t.uses = Math.max(0, t.uses - 1);
    t.lastUse = Date.now();
    if (t.state !== 'live' && t.uses === 0) this.drop(t);
  }

  /** DEL_TKN, expiry, cancellation, revocation. */
  invalidate(t: RodToken, why: Invalidation): void {
    if (t.state !== 'live') return;
    t.state = why;
    this.live.delete(t.key);
    this.unwatch(t);
    this.tombstones.set(t.key, { why, until: Date.now() + 2 * Math.max(t.inactivityMs, 60_000) });
    this.logger.debug({ token: t.key, why }, 'ROD token invalidated');
    this.onEvent?.(why, t);
    if (t.uses === 0) this.drop(t);
    this.scheduleSweep();
  }

  /** Cancel every token of `lu` (LU removed, resized, device closing). */
  cancelFor(lu: LogicalUnit): void {
    for (const t of [...this.live.values()]) if (t.lu === lu) this.invalidate(t, 'cancelled');
  }

  private drop(t: RodToken): void {
    const p = this.dropSide(t);
    this.dropping.add(p);
    void p.finally(() => this.dropping.delete(p));
  }

  private async dropSide(t: RodToken): Promise<void> {
    this.spaceUsed -= t.spaceBytes;
    t.spaceBytes = 0;
    const side = t.side;
    t.side = undefined;
    t.sideMaking = undefined;
    if (side) await side.remove().catch((err) => this.logger.warn({ err, token: t.key }, 'removing a side file failed'));
  }

  // ---- reading the ROD ---------------------------------------------------------------

  /**
   * Copy ROD bytes [rod, rod+n) to `dst` at dstOffset (the caller holds the
   * destination range's write lock and has run its beforeWrite).
   */
  async readInto(t: RodToken, dst: BackingStore, rod: number, dstOffset: number, n: number, signal?: AbortSignal): Promise<void> {
    for (const p of t.mapRod(rod, n)) {
      const at = dstOffset + (p.rod - rod);
      if (t.mode === 'clone' || t.mode === 'cow') {
        // One piece at a time, each looked up in `saved` right before it is read: a writer may
        // save (and then overwrite) a later piece while an earlier one is being copied. The
        // lookup and readLive's in-flight registration happen in the same tick.
        for (let a = p.rod; a < p.rod + p.bytes; ) {
          const [, b, saved] = t.saved.split(a, p.rod + p.bytes)[0];
          if (saved) {
            if (!t.side) throw new SenseError('TOKEN_CANCELLED');
            await copyBetween(t.side.store, dst, a, at + (a - p.rod), b - a, signal);
          } else {
            await this.readLive(t, p.src + (a - p.rod), dst, at + (a - p.rod), b - a, signal);
          }
          a = b;
        }
      } else {
        await this.readLive(t, p.src, dst, at, p.bytes, signal);
      }
      if (t.state !== 'live') throw new SenseError(INVALIDATION_SENSE[t.state]);
    }
  }

  /** Read straight from the source, registered so a writer waits for it after saving. */
  private async readLive(t: RodToken, src: number, dst: BackingStore, dstOffset: number, n: number, signal?: AbortSignal): Promise<void> {
    if (t.state !== 'live') throw new SenseError(INVALIDATION_SENSE[t.state]);
    let finish!: () => void;
    const entry: InFlight = { start: src, end: src + n, done: new Promise<void>((r) => (finish = r)) };
    t.inflight.add(entry);
    try {
      await copyBetween(t.lu.store, dst, src, dstOffset, n, signal);
    } finally {
      t.inflight.delete(entry);
      finish();
    }
  }

  // ---- the write guard (point in time) -------------------------------------------------

  /** LogicalUnit.beforeWrite for LUs with watched tokens. */
  private async beforeWrite(lu: LogicalUnit, offset: number, length: number): Promise<void> {
    const set = this.byLu.get(lu);
    if (!set) return;
    for (const t of [...set]) {
      if (t.state !== 'live') continue;
      const pieces = t.mapSource(offset, length);
      if (pieces.length === 0) continue;
      if (t.mode === 'vulnerable') {
        await waitInflight(t, offset, length);
        this.invalidate(t, 'cancelled'); // SPC-5: change vulnerable tokens may be invalidated by writes
        continue;
      }
      this.hold(t);
      try {
        if (t.mode === 'clone') {
          for (const p of pieces) {
            for (const [a, b, known] of t.diverged.split(p.rod, p.rod + p.bytes)) {
              if (known) continue;
              if (!this.reserve(t, b - a)) break;
              t.diverged.add(a, b);
            }
          }
        } else {
          await this.save(t, pieces);
        }
        await waitInflight(t, offset, length);
      } finally {
        this.release(t);
      }
    }
  }

  /** cow: copy the not yet saved parts of `pieces` from the source into the side file. */
  private async save(t: RodToken, pieces: RodPiece[]): Promise<void> {
    for (const p of pieces) {
      for (const [a, b, saved] of t.saved.split(p.rod, p.rod + p.bytes)) {
        if (saved) continue;
        if (!this.reserve(t, b - a)) return;
        const side = await this.sideOf(t);
        if (t.state !== 'live') return;
        await copyBetween(t.lu.store, side.store, p.src + (a - p.rod), a, b - a);
        t.saved.add(a, b);
      }
    }
  }

  /** cow: the token's side file, made once even when several writers save at the same time. */
  private sideOf(t: RodToken): Promise<SideFile> {
    if (t.side) return Promise.resolve(t.side);
    t.sideMaking ??= this.sideFiles({ name: t.key, bytes: t.bytesRepresented, blockSize: t.blockSize, source: t.lu.store }).then(
      (side) => (t.side = side),
      (err: unknown) => {
        t.sideMaking = undefined;
        throw err;
      },
    );
    return t.sideMaking;
  }

  /**
   * Account `bytes` more side-file space to `t`. Past the bound, the oldest
   * tokens holding space are cancelled first; false if `t` itself had to go.
   */
  private reserve(t: RodToken, bytes: number): boolean {
    while (this.spaceUsed + bytes > this.maxSideFileBytes) {
      const victims = [...this.live.values()].filter((x) => x === t || x.spaceBytes > 0);
      const oldest = victims[0];
      if (!oldest) break;
      this.logger.info({ token: oldest.key, held: oldest.spaceBytes, used: this.spaceUsed }, 'side-file bound reached: cancelling the oldest token');
      this.invalidate(oldest, 'cancelled');
      if (oldest === t) return false;
    }
    if (t.state !== 'live') return false;
    this.spaceUsed += bytes;
    t.spaceBytes += bytes;
    return true;
  }

  // ---- lifetime ---------------------------------------------------------------------------

  private scheduleSweep(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => this.sweep(), this.sweepMs);
    this.sweepTimer.unref();
  }

  /** Expire idle tokens, forget old tombstones (one coarse timer). */
  sweep(now = Date.now()): void {
    for (const t of [...this.live.values()]) {
      if (t.uses === 0 && now - t.lastUse > t.inactivityMs) this.invalidate(t, 'expired');
    }
    for (const [k, v] of this.tombstones) if (v.until <= now) this.tombstones.delete(k);
    if (this.live.size === 0 && this.tombstones.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** Cancel everything and remove the side files (daemon stop). */
  async close(): Promise<void> {
    for (const t of [...this.live.values()]) this.invalidate(t, 'cancelled');
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    await Promise.all([...this.dropping]);
  }
}

async function waitInflight(t: RodToken, offset: number, length: number): Promise<void> {
  const end = offset + length;
  for (;;) {
    const hit = [...t.inflight].filter((f) => f.start < end && offset < f.end);
    if (hit.length === 0) return;
    await Promise.all(hit.map((f) => f.done));
  }
}

/**
 * Move bytes between two stores with the copy engine's one data mover; a
 * failure comes out as the store's own error (a writer's guard or a WUT maps it).
 */
async function copyBetween(src: BackingStore, dst: BackingStore, srcOffset: number, dstOffset: number, n: number, signal?: AbortSignal): Promise<void> {
  try {
    await moveData(src, dst, srcOffset, dstOffset, n, { signal });
  } catch (err) {
    throw err instanceof CopyIoError ? err.failure : err;
  }
}

const BUFFER_BYTES = 1024 * 1024;

/** A sparse in-memory side file (1 MiB pages), for devices built without a file factory. */
class MemorySideStore implements BackingStore {
  readonly physicalBlockSize: number;
  readonly readOnly = false;
  readonly canPunchHole = true;
  readonly canSeekData = false;
  readonly canClone = false;
  readonly supportsFua = false;
  readonly thinProvisioned = true;
  private readonly pages = new Map<number, Buffer>();

  constructor(
    readonly sizeBytes: number,
    readonly blockSize: number,
  ) {
    this.physicalBlockSize = blockSize;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    for (let done = 0; done < length; ) {
      const at = offset + done;
      const page = Math.floor(at / BUFFER_BYTES);
      const off = at % BUFFER_BYTES;
      const k = Math.min(BUFFER_BYTES - off, length - done);
      this.pages.get(page)?.copy(out, done, off, off + k);
      done += k;
    }
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    for (let done = 0; done < data.length; ) {
      const at = offset + done;
      const page = Math.floor(at / BUFFER_BYTES);
      const off = at % BUFFER_BYTES;
      const k = Math.min(BUFFER_BYTES - off, data.length - done);
      let p = this.pages.get(page);
      if (!p) {
        p = Buffer.alloc(BUFFER_BYTES);
        this.pages.set(page, p);
      }
      data.copy(p, off, done, done + k);
      done += k;
    }
  }

  async flush(): Promise<void> {}

  async punchHole(offset: number, length: number): Promise<void> {
    await this.write(offset, Buffer.alloc(length));
  }

  async seekData(offset: number): Promise<number> {
    return offset;
  }

  async seekHole(): Promise<number> {
    return this.sizeBytes;
  }

  async close(): Promise<void> {
    this.pages.clear();
  }
}

export const memorySideFiles: SideFileFactory = async (o) => {
  const store = new MemorySideStore(o.bytes, o.blockSize);
  return { store, remove: () => store.close() };
};
