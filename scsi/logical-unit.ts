/**
 * A direct-access logical unit (PDT 00h): identity from configuration, a
 * backing store, block limits, mode page state and the unit attention queues
 * of every I_T nexus. It knows nothing of the transport.
 */
import type { BackingStore } from './backing-store';
import { RangeLock } from './range-lock';
import { SenseError, type UnitAttentionReason } from './sense';

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
}

/** 8 MiB per command, 64 KiB optimal, UNMAP up to 1 GiB by 256 descriptors. */
export function defaultBlockLimits(blockSize: number, physicalBlockSize: number): BlockLimits {
  const perPhysical = Math.max(1, physicalBlockSize / blockSize);
  return {
    maxTransferLength: (8 * 1024 * 1024) / blockSize,
    optimalTransferLength: (64 * 1024) / blockSize,
    optimalTransferLengthGranularity: perPhysical,
    maxCompareAndWriteLength: 16,
    maxUnmapLbaCount: (1024 * 1024 * 1024) / blockSize,
    maxUnmapBlockDescriptorCount: 256,
    optimalUnmapGranularity: Math.max(perPhysical, 4096 / blockSize),
    maxWriteSameLength: (64 * 1024 * 1024) / blockSize,
  };
}

/** Changeable mode parameters (current values). A LU reset keeps them; only MODE SELECT (not yet) changes them. */
export interface ModeState {
  /** Caching page 08h, WCE. */
  writeCacheEnabled: boolean;
}

const MAX_QUEUED_UAS = 16;

export class LogicalUnit {
  readonly lun: number;
  readonly store: BackingStore;
  readonly identity: LuIdentity;
  readonly limits: BlockLimits;
  readonly writeLock = new RangeLock();
  readonly defaultMode: Readonly<ModeState>;
  mode: ModeState;
  private readonly uaQueues = new Map<string, UnitAttentionReason[]>();

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
    this.defaultMode = Object.freeze({ writeCacheEnabled: options.writeCacheEnabled ?? true });
    this.mode = { ...this.defaultMode };
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

  /** Read whole blocks, mapping store failures to sense. */
  async readBlocks(lba: bigint, count: number): Promise<Buffer> {
    try {
      return await this.store.read(Number(lba) * this.blockSize, count * this.blockSize);
    } catch (err) {
      throw storeErrorToSense(err, false);
    }
  }

  /**
   * Write whole blocks. FUA -> durable before it resolves (SBC-4 5.40); with
   * WCE=0 every write is durable too (write-through).
   */
  async writeBlocks(lba: bigint, data: Buffer, fua: boolean): Promise<void> {
    const durable = fua || !this.mode.writeCacheEnabled;
    try {
      await this.store.write(Number(lba) * this.blockSize, data, { fua: durable && this.store.supportsFua });
      if (durable && !this.store.supportsFua) await this.store.flush();
    } catch (err) {
      throw storeErrorToSense(err, true);
    }
  }

  async flush(): Promise<void> {
    try {
      await this.store.flush();
    } catch (err) {
      throw storeErrorToSense(err, true);
    }
  }

  // ---- unit attentions (SAM-5 5.14, SPC-5 5.14) --------------------------------

  /** A new I_T nexus sees this LU: start its queue with `reason` (POWER ON/RESET). */
  addNexus(nexusKey: string, reason: UnitAttentionReason): void {
    this.uaQueues.set(nexusKey, []);
    this.queueUa(nexusKey, reason);
  }

  removeNexus(nexusKey: string): void {
    this.uaQueues.delete(nexusKey);
  }

  /** Establish `reason` for one nexus. Reset-class UAs (29h) supersede everything queued. */
  queueUa(nexusKey: string, reason: UnitAttentionReason): void {
    let q = this.uaQueues.get(nexusKey);
    if (!q) {
      q = [];
      this.uaQueues.set(nexusKey, q);
    }
    if (isResetUa(reason)) q.length = 0;
    if (q.includes(reason) || q.length >= MAX_QUEUED_UAS) return;
    q.push(reason);
  }

  /** Establish `reason` for every known nexus except `exceptKey`. */
  queueUaForAll(reason: UnitAttentionReason, exceptKey?: string): void {
    for (const key of this.uaQueues.keys()) if (key !== exceptKey) this.queueUa(key, reason);
  }

  /** Take the highest-priority pending UA for a nexus (oldest first; resets are alone). */
  takeUa(nexusKey: string): UnitAttentionReason | undefined {
    return this.uaQueues.get(nexusKey)?.shift();
  }

  peekUa(nexusKey: string): UnitAttentionReason | undefined {
    return this.uaQueues.get(nexusKey)?.[0];
  }
}

function isResetUa(reason: UnitAttentionReason): boolean {
  return reason === 'UA_POWER_ON_RESET' || reason === 'UA_POWER_ON_OCCURRED' ||
    reason === 'UA_BUS_DEVICE_RESET_FUNCTION' || reason === 'UA_I_T_NEXUS_LOSS';
}

/**
 * The one place backing-store failures become sense:
 * ENOSPC/EDQUOT -> 7/27/07; EIO -> 3/11/00 on reads, 3/0C/00 on writes;
 * EROFS -> 7/27/00. Anything else is rethrown (-> INTERNAL TARGET FAILURE).
 */
export function storeErrorToSense(err: unknown, writing: boolean): unknown {
  if (err instanceof SenseError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new SenseError('SPACE_ALLOCATION_FAILED_WRITE_PROTECT');
    case 'EIO':
      return new SenseError(writing ? 'WRITE_ERROR' : 'MEDIUM_ERROR_READ');
    case 'EROFS':
      return new SenseError('WRITE_PROTECTED');
    default:
      return err;
  }
}
