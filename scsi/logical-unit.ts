/**
 * A direct-access logical unit (PDT 00h): identity from configuration, a
 * backing store, block limits and mode page state; its reservations and unit
 * attentions are in `state` (scsi/state/lu-state.ts: local, or shared by the
 * nodes of a cluster). It knows nothing of the transport.
 *
 * Every change to the medium is one Mutation (mutate(), writeBlocks();
 * scsi/mutation.ts): range lock, access check, write guard, store call,
 * error mapping and write-through, in one place for host commands and copies.
 */
import type { BackingStore } from './backing-store';
import { RangeLock } from './range-lock';
import { Mutation, storeErrorToSense, type Durability } from './mutation';
import { loadPersistedLu, writePersistedLu, type ModeState } from './persisted-lu';
import { SenseError } from './sense';
import type { LuState, LuStateFactory } from './state/lu-state';
import { localLuState } from './state/local-lu-state';

export type { ModeState };

/**
 * Stable identity, from configuration (never generated here), so copy
 * descriptors, ODX tokens and multipath WWIDs survive a restart.
 */
export interface LuIdentity {
  /** T10 VENDOR IDENTIFICATION, <= 8 ASCII chars (space padded on the wire), e.g. 'XCOPYD'. */
  vendor: string;
  /** PRODUCT IDENTIFICATION, <= 16 ASCII chars. */
  product: string;
  /** PRODUCT REVISION LEVEL, <= 4 ASCII chars. */
  revision: string;
  /** Unit serial number (VPD 80h), printable ASCII, same on every path. */
  serial: string;
  /**
   * NAA designator bytes for VPD 83h: 16 bytes NAA 6 (IEEE Registered
   * Extended, first nibble 6) or 8 bytes NAA 5. Built by the composer.
   */
  naa: Buffer;
  /** Optional EUI-64 designator (8 bytes) for VPD 83h, also from configuration. */
  eui64?: Buffer;
}

/** Limits reported in VPD B0h and enforced by the handlers (units: logical blocks). */
export interface BlockLimits {
  maxTransferLength: number;
  optimalTransferLength: number;
  optimalTransferLengthGranularity: number;
  maxCompareAndWriteLength: number;
  maxUnmapLbaCount: number;
  maxUnmapBlockDescriptorCount: number;
  optimalUnmapGranularity: number;
  maxWriteSameLength: number;
}

export interface LogicalUnitOptions {
  lun: number;
  store: BackingStore;
  identity: LuIdentity;
  /** Overrides of the default block limits (see defaultBlockLimits). */
  limits?: Partial<BlockLimits>;
  /** Initial (default) WCE of the caching mode page; default true. */
  writeCacheEnabled?: boolean;
  /**
   * Where the LU keeps what must survive a restart: persistent reservations
   * with APTPL=1 (SPC-5 5.14.6) and saved mode pages (MODE SELECT SP=1).
   * Without it, PTPL_C=0 and saving is not supported.
   */
  persistPath?: string;
  /** Where reservations and unit attentions live (default: this process, LocalLuState). */
  state?: LuStateFactory;
}

/**
 * 8 MiB per command, 64 KiB optimal; UNMAP up to 1 GiB (at most 2^20 blocks,
 * libiscsi's sanity bound) by 256 descriptors; WRITE SAME up to 65535 blocks
 * (LIO's default, so a 2-byte length always fits).
 */
export function defaultBlockLimits(blockSize: number, physicalBlockSize: number): BlockLimits {
  const perPhysical = Math.max(1, physicalBlockSize / blockSize);
  return {
    maxTransferLength: (8 * 1024 * 1024) / blockSize,
    optimalTransferLength: (64 * 1024) / blockSize,
    optimalTransferLengthGranularity: perPhysical,
    maxCompareAndWriteLength: 16,
    maxUnmapLbaCount: Math.min(1024 * 1024, (1024 * 1024 * 1024) / blockSize),
    maxUnmapBlockDescriptorCount: 256,
    optimalUnmapGranularity: Math.max(perPhysical, 4096 / blockSize),
    maxWriteSameLength: 0xffff,
  };
}

/**
 * Runs before a write lands on bytes [offset, offset+length) of the LU, while
 * the writer holds that range of `writeLock`. Point-in-time ROD tokens use it
 * to save (or account for) what is about to change (scsi/copy/token-store.ts).
 */
export type WriteGuard = (lu: LogicalUnit, offset: number, length: number) => Promise<void>;

export class LogicalUnit {
  readonly lun: number;
  readonly store: BackingStore;
  readonly identity: LuIdentity;
  readonly limits: BlockLimits;
  readonly writeLock = new RangeLock();
  readonly defaultMode: Readonly<ModeState>;
  mode: ModeState;
  /** MODE SENSE PC=11b; undefined when the LU cannot save (no persistPath). */
  savedMode: ModeState | undefined;
  /** Reservations and unit attentions (scsi/state/lu-state.ts). */
  readonly state: LuState;
  readonly persistPath: string | undefined;
  private persisting: Promise<void> = Promise.resolve();
  private readonly writeGuards = new Set<WriteGuard>();

  constructor(options: LogicalUnitOptions) {
    const { store, identity } = options;
    if (store.blockSize !== 512 && store.blockSize !== 4096) {
      throw new Error(`LUN ${options.lun}: block size ${store.blockSize} not supported (512 or 4096)`);
    }
    if (store.physicalBlockSize < store.blockSize || store.physicalBlockSize % store.blockSize !== 0) {
      throw new Error(`LUN ${options.lun}: physical block size ${store.physicalBlockSize} invalid`);
    }
    if (identity.naa.length !== 16 && identity.naa.length !== 8) {
      throw new Error(`LUN ${options.lun}: NAA designator must be 8 or 16 bytes`);
    }
    this.lun = options.lun;
    this.store = store;
    this.identity = identity;
    this.limits = { ...defaultBlockLimits(store.blockSize, store.physicalBlockSize), ...options.limits };
    this.defaultMode = Object.freeze({ writeCacheEnabled: options.writeCacheEnabled ?? true, descriptorSense: false });
    this.persistPath = options.persistPath;
    const persisted = this.persistPath ? loadPersistedLu(this.persistPath) : undefined;
    this.state = (options.state ?? localLuState)({
      naa: identity.naa,
      persisted: persisted?.reservations,
      canPersist: this.persistPath !== undefined,
      persist: () => this.persist(),
    });
    this.savedMode = this.persistPath ? { ...this.defaultMode, ...persisted?.savedMode } : undefined;
    this.mode = { ...(this.savedMode ?? this.defaultMode) };
  }

  /**
   * Write the persistent state (APTPL reservations, saved mode pages) to
   * persistPath: a temporary file renamed over the old one, one write at a
   * time, each with the state as it is when it starts.
   */
  persist(): Promise<void> {
    const path = this.persistPath;
    if (!path) return Promise.resolve();
    const run = (): Promise<void> =>
      writePersistedLu(path, {
        version: 1,
        reservations: this.state.reservations.aptpl ? this.state.reservations.snapshot() : undefined,
        savedMode: this.savedMode,
      });
    const next = this.persisting.then(run, run);
    this.persisting = next.catch(() => undefined);
    return next;
  }

  /** SBC-4 4.6 / SPC-5 table: the store's size changed (resize): CAPACITY DATA HAS CHANGED to every nexus. */
  capacityChanged(): void {
    this.state.raiseUaForAll('UA_CAPACITY_DATA_HAS_CHANGED');
  }

  get blockSize(): number {
    return this.store.blockSize;
  }

  /** Number of logical blocks (capacity). */
  get blockCount(): bigint {
    return BigInt(Math.floor(this.store.sizeBytes / this.store.blockSize));
  }

  get readOnly(): boolean {
    return this.store.readOnly;
  }

  /** log2(logical blocks per physical block), READ CAPACITY(16) byte 13. */
  get physicalBlockExponent(): number {
    return Math.log2(this.store.physicalBlockSize / this.store.blockSize);
  }

  /** Logical block provisioning management enabled: the store can deallocate. */
  get lbpme(): boolean {
    return this.store.canPunchHole;
  }

  /** SBC-4 4.5: LBA + count beyond capacity -> LOGICAL BLOCK ADDRESS OUT OF RANGE. */
  checkRange(lba: bigint, count: bigint): void {
    if (lba < 0n || count < 0n || lba + count > this.blockCount) {
      throw new SenseError('LBA_OUT_OF_RANGE', { information: lba });
    }
  }

  /** SBC-4 4.x: write to a write-protected LU -> DATA PROTECT / WRITE PROTECTED. */
  checkWritable(): void {
    if (this.store.readOnly) throw new SenseError('WRITE_PROTECTED');
  }

  addWriteGuard(guard: WriteGuard): void {
    this.writeGuards.add(guard);
  }

  removeWriteGuard(guard: WriteGuard): void {
    this.writeGuards.delete(guard);
  }

  /**
   * The write guards (point-in-time tokens) for bytes about to change. Only
   * Mutation calls it, holding the range (scsi/mutation.ts).
   */
  async beforeWrite(offset: number, length: number): Promise<void> {
    if (this.writeGuards.size === 0 || length <= 0) return;
    for (const guard of [...this.writeGuards]) await guard(this, offset, length);
  }

  /**
   * Start a change of bytes [offset, offset+length): wait for and hold the
   * whole blocks they touch, run `check` (a copy's per-chunk access check)
   * once they are held, and return the Mutation that writes, zeroes,
   * deallocates or moves, then commits. The caller releases it in a finally.
   */
  async mutate(offset: number, length: number, durability: Durability = 'auto', check?: () => void): Promise<Mutation> {
    const bs = this.store.blockSize;
    const start = Math.floor(offset / bs);
    const end = length > 0 ? Math.ceil((offset + length) / bs) : start + 1;
    const m = await this.writeLock.take(new Mutation(this, start, end, durability));
    if (check) {
      try {
        check();
      } catch (err) {
        m.release();
        throw err;
      }
    }
    return m;
  }

  /** Read whole blocks, mapping store failures to sense. */
  async readBlocks(lba: bigint, count: number): Promise<Buffer> {
    try {
      return await this.store.read(Number(lba) * this.blockSize, count * this.blockSize);
    } catch (err) {
      throw storeErrorToSense(err, false);
    }
  }

  /**
   * Write whole blocks as one mutation (lock, guard, store, durability).
   * FUA -> durable before it resolves (SBC-4 5.40); with WCE=0 every write is
   * durable too (write-through).
   */
  async writeBlocks(lba: bigint, data: Buffer, fua: boolean): Promise<void> {
    const offset = Number(lba) * this.store.blockSize;
    const m = await this.mutate(offset, data.length, fua ? 'fua' : 'auto');
    try {
      await m.write(offset, data);
      await m.commit();
    } finally {
      m.release();
    }
  }

  /** The end of a change made of 'deferred' mutations: durable now if WCE=0 (write-through). */
  async syncIfWriteThrough(): Promise<void> {
    if (!this.mode.writeCacheEnabled) await this.flush();
  }

  async flush(): Promise<void> {
    try {
      await this.store.flush();
    } catch (err) {
      throw storeErrorToSense(err, true);
    }
  }
}
