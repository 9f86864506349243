import { randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { LogicalUnit } from '../logical-unit';
import { SenseError } from '../sense';
import type { TokenRecord, TokenState } from '../state/lu-state';
import { designatorsOf } from './cscd';
import { LocalTokenState } from './local-token-state';
import { PointInTime, type PointInTimeHost } from './point-in-time';
import {
  MAX_LIVE_TOKENS,
  MAX_SIDE_FILE_BYTES,
  OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER,
  WUT_DEADLINE_MS,
} from './limits';
import {
  ROD_TOKEN_BYTES,
  RodType,
  encodeCreatorDescriptor,
  encodeRodToken,
  encodeTargetDeviceDescriptor,
  verifyRodToken,
  type RodTokenFields,
} from './rod-token';
import {
  INVALIDATION_SENSE,
  RodToken,
  type BlockRange,
  type Invalidation,
  type RodPiece,
  type SideFileFactory,
  type TokenEventListener,
  type TokenMode,
} from './token-record';

export { RodToken };
export type { BlockRange, Invalidation, RodPiece, SideFile, SideFileFactory, TokenEvent, TokenEventListener, TokenMode } from './token-record';

export interface RodTokenStoreOptions {
  logger: Logger;
  /** HMAC key (src/token-secret.ts keeps it in the data directory): the local TokenState's sealing key. */
  secret?: Buffer;
  /** Where token records live; default: a LocalTokenState sealed with `secret`. */
  state?: TokenState;
  /** Where side files are made (src/rod-side-files.ts: next to the LU files). */
  sideFiles: SideFileFactory;
  maxLiveTokens?: number;
  maxSideFileBytes?: number;
  /** Foreground WRITE USING TOKEN and POPULATE TOKEN deadline (ms). */
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
  /** Date.now() by which the command must end (a foreground PT: Windows' budget); the image not taken by then is copy on write. */
  deadline?: number;
}

/** CSPRNG bytes for tokens, drawn 4 KiB at a time: one randomBytes(32) per POPULATE TOKEN cost ~10 us (issue 12). */
const randomPool = Buffer.alloc(4096);
let randomAt = randomPool.length;

/** 32 fresh random bytes of a token (a copy: the pool is refilled under it). */
function tokenRandom(): Buffer {
  if (randomAt + 32 > randomPool.length) {
    randomFillSync(randomPool);
    randomAt = 0;
  }
  const r = Buffer.from(randomPool.subarray(randomAt, randomAt + 32));
  randomPool.fill(0, randomAt, randomAt + 32); // never handed out twice, not kept once used
  randomAt += 32;
  return r;
}

/** A TokenState that forgets old tombstones when the store sweeps (LocalTokenState). */
interface Forgetting {
  forget(now: number): number;
}

export class RodTokenStore implements PointInTimeHost {
  /** Tokens this process moves bytes for, live ones only, oldest first. */
  private readonly live = new Map<string, RodToken>();
  /** The secret each live token was sealed with (resolve's fast path holds only while it is still the sealing key). */
  private readonly sealedWith = new WeakMap<RodToken, Buffer>();
  private readonly state: TokenState;
  private readonly pit: PointInTime;
  readonly logger: Logger;
  readonly sideFiles: SideFileFactory;
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
    if (!options.state && !options.secret) throw new Error('RodTokenStore: a TokenState or a secret');
    this.state = options.state ?? new LocalTokenState(options.secret!);
    this.onEvent = options.onEvent;
    this.logger = options.logger;
    this.sideFiles = options.sideFiles;
    this.maxLiveTokens = options.maxLiveTokens ?? MAX_LIVE_TOKENS;
    this.maxSideFileBytes = options.maxSideFileBytes ?? MAX_SIDE_FILE_BYTES;
    this.wutDeadlineMs = options.wutDeadlineMs ?? WUT_DEADLINE_MS;
    this.optimalTransferBytes = options.optimalTransferBytes ?? OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER;
    this.sweepMs = options.sweepMs ?? 1000;
    this.pit = new PointInTime(this);
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
    // Reference 2.11: no resources for another token -> 5/55/0D; idle tokens make room first.
    while (this.live.size >= this.maxLiveTokens) {
      if (!this.cancelLeastRecentlyUsed()) throw new SenseError('INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN');
    }
    const lu = o.lu;
    const bs = lu.blockSize;
    const mapped: RodPiece[] = [];
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
      random: tokenRandom(),
    };
    const secret = this.state.sealingKey().secret;
    const record: TokenRecord = {
      key: id.toString(16),
      bytes: encodeRodToken(fields, secret),
      rodType: type,
      pointInTime: mode,
      luNaa: lu.identity.naa.toString('hex'),
      capacity: lu.blockCount,
      ranges: mapped,
      bytesRepresented: rod,
      inactivityMs: o.inactivityS * 1000,
      createdAt: now,
      state: 'live',
      lastUse: now,
    };
    const token = new RodToken(record, id, mode, lu);
    this.sealedWith.set(token, secret);

    // Hold every range (ascending LBA: no lock-order cycles) while the image is taken.
    const held = [...o.ranges].filter((r) => r.blocks > 0).sort((a, b) => (a.lba < b.lba ? -1 : a.lba > b.lba ? 1 : 0));
    const releases: Array<() => void> = [];
    try {
      for (const r of held) releases.push(await lu.writeLock.acquire(r.lba, BigInt(r.blocks)));
      if (mode === 'clone') await this.pit.takeImage(token, { signal: o.signal, deadline: o.deadline });
      // The image may have ended as copy on write (no clones there, or the deadline): the record says so.
      // It is not shared before state.create, so it is still ours to set.
      (token.record as { pointInTime: TokenRecord['pointInTime'] }).pointInTime = token.mode;
      await this.state.create(token.record);
      this.live.set(token.key, token);
      this.pit.watch(token);
    } catch (err) {
      if (token.side) await token.side.remove().catch(() => undefined);
      throw err;
    } finally {
      for (const release of releases) release();
    }
    this.scheduleSweep();
    this.logger.debug({ token: token.key, mode: token.mode, bytes: rod, ranges: mapped.length }, 'ROD token created');
    this.onEvent?.('created', token);
    return token;
  }

  // ---- lookup (WRITE USING TOKEN) -----------------------------------------------

  /**
   * The live token a presented one names. Order (reference 2.12): length
   * 23/0A, ROD type 23/01, MAC 23/05, then the record: invalidated ones give
   * their reason; a sealed token with no record is from before a restart
   * (cancelled) or long expired.
   */
  resolve(presented: Buffer): RodToken {
    const secret = this.state.sealingKey().secret;
    // A live token of ours presented byte for byte (compared in constant time) passes the length,
    // type and MAC checks by construction as long as its key still seals: no HMAC per WRITE USING
    // TOKEN (issue 12). Anything else, a single byte off, takes the full checks in their order.
    const live = presented.length === ROD_TOKEN_BYTES ? this.live.get(presented.readBigUInt64BE(8).toString(16)) : undefined;
    const known = live !== undefined && this.sealedWith.get(live) === secret && live.bytes.length === presented.length && timingSafeEqual(live.bytes, presented);
    const f = known ? undefined : verifyRodToken(presented, secret);
    const key = known ? live.key : f!.id.toString(16);
    const t = known ? live : this.live.get(key);
    if (t) {
      if (!known && !t.bytes.equals(presented)) throw new SenseError('TOKEN_CORRUPT');
      // The creator's capacity changed: the represented LBAs may be gone (reference 2.12).
      if (t.lu.blockCount !== t.capacity) this.invalidate(t, 'cancelled');
      else if (t.uses === 0 && Date.now() - t.lastUse > t.inactivityMs) this.invalidate(t, 'expired');
      if (t.state !== 'live') throw new SenseError(INVALIDATION_SENSE[t.state]);
      this.onEvent?.('used', t);
      return t;
    }
    const record = this.state.get(key);
    if (record && record.state !== 'live') throw new SenseError(INVALIDATION_SENSE[record.state]);
    throw new SenseError(f!.createdMs < this.startedAt ? 'TOKEN_CANCELLED' : 'TOKEN_EXPIRED');
  }

  /** A command starts using the token (it cannot expire meanwhile). */
  hold(t: RodToken): void {
    t.uses++;
  }

  /** ...and ends: the inactivity timer restarts (SPC-5: after each completed use). */
  release(t: RodToken): void {
    t.uses = Math.max(0, t.uses - 1);
    void this.state.touch(t.key, Date.now());
    if (t.state !== 'live' && t.uses === 0) this.drop(t);
  }

  /** DEL_TKN, expiry, cancellation, revocation. */
  invalidate(t: RodToken, why: Invalidation): void {
    if (t.state !== 'live') return;
    void this.state.invalidate(t.key, why, Date.now() + 2 * Math.max(t.inactivityMs, 60_000));
    this.live.delete(t.key);
    this.pit.unwatch(t);
    this.logger.debug({ token: t.key, why }, 'ROD token invalidated');
    this.onEvent?.(why, t);
    if (t.uses === 0) this.drop(t);
    this.scheduleSweep();
  }

  /**
   * At the live-token cap: cancel the idle token used least recently (SPC-5
   * 5.17.6.3 lets the copy manager cancel a token; its next use gets 5/23/08).
   * False when every token is in use.
   */
  private cancelLeastRecentlyUsed(): boolean {
    let lru: RodToken | undefined;
    for (const t of this.live.values()) if (t.uses === 0 && (!lru || t.lastUse < lru.lastUse)) lru = t;
    if (!lru) return false;
    this.logger.info({ token: lru.key, idleMs: Date.now() - lru.lastUse, live: this.live.size }, 'live-token cap reached: cancelling the least recently used idle token');
    this.invalidate(lru, 'cancelled');
    return true;
  }

  /** Tombstones of invalidated tokens kept now (bounded: maxTombstones). */
  get tombstoneCount(): number {
    return this.state instanceof LocalTokenState ? this.state.tombstones : this.state.list().filter((r) => r.state !== 'live').length;
  }

  get maxTombstones(): number {
    return this.state instanceof LocalTokenState ? this.state.maxTombstones : Infinity;
  }

  set maxTombstones(n: number) {
    if (this.state instanceof LocalTokenState) this.state.maxTombstones = n;
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
   * destination range and has run its write guard).
   */
  readInto(t: RodToken, dst: Parameters<PointInTime['readInto']>[1], rod: number, dstOffset: number, n: number, signal?: AbortSignal): Promise<void> {
    return this.pit.readInto(t, dst, rod, dstOffset, n, signal);
  }

  /**
   * Account `bytes` more side-file space to `t`. Past the bound, the oldest
   * tokens holding space are cancelled first; false if `t` itself had to go.
   */
  reserve(t: RodToken, bytes: number): boolean {
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
    const state = this.state as TokenState & Partial<Forgetting>;
    const records = state.forget ? state.forget(now) : this.live.size;
    if (this.live.size === 0 && records === 0 && this.sweepTimer) {
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
