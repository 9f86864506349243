/**
 * One ROD token as this process uses it (SPC-5 5.17.6; reference 2.12):
 * the shared record (TokenState: sealed bytes, ranges, state, last use) and
 * the byte-moving parts that stay with the process that moves bytes - the
 * side file holding its point-in-time bytes, what of it is saved, and the
 * reads of the live source in flight.
 */
import type { BackingStore } from '../backing-store';
import type { LogicalUnit } from '../logical-unit';
import type { SenseReason } from '../sense';
import type { TokenInvalidation, TokenRecord } from '../state/lu-state';
import { Intervals } from './intervals';

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
export type Invalidation = TokenInvalidation;
/** A token's lifecycle, as the store's observer sees it: made, presented by WRITE USING TOKEN, invalidated. */
export type TokenEvent = 'created' | 'used' | Invalidation;
/** Called synchronously, once per event; it must not throw. */
export type TokenEventListener = (event: TokenEvent, token: RodToken) => void;

export const INVALIDATION_SENSE: Record<Invalidation, SenseReason> = {
  expired: 'TOKEN_EXPIRED',
  deleted: 'TOKEN_DELETED',
  cancelled: 'TOKEN_CANCELLED',
  revoked: 'TOKEN_REVOKED',
};

/** A piece of the ROD and where it lives in the source. */
export interface RodPiece {
  /** Byte offset in the ROD (the concatenation of the ranges). */
  rod: number;
  /** Byte offset in the source LU. */
  src: number;
  bytes: number;
}

/** A piece of the ROD, with where it lives in the token's side file too. */
export interface MappedPiece extends RodPiece {
  side: number;
}

/**
 * Each range sits in the side file at an offset congruent to its source
 * offset modulo this, so a range that is not aligned to the filesystem
 * block in the source (Windows' 512-byte LBAs) still lines up with it in
 * the side file and its middle can be cloned (FICLONERANGE) instead of read
 * and written: a multiple of any filesystem block (4 KiB, 64 KiB pages).
 */
export const SIDE_FILE_ALIGNMENT = 64 * 1024;

export interface InFlight {
  start: number;
  end: number;
  done: Promise<void>;
}

export class RodToken {
  /** Commands (and saves) using the token now: it cannot expire, its side file stays. */
  uses = 0;
  /** ROD bytes held by the side file (cow: saved; clone: all of it). */
  readonly saved = new Intervals();
  /** ROD bytes the side file took by cloning the source (shared extents: they cost space once the source changes). */
  readonly cloned = new Intervals();
  /** Cloned ROD bytes whose source has changed since (the space the side file now holds alone). */
  readonly diverged = new Intervals();
  /** Where each range starts in the side file (SIDE_FILE_ALIGNMENT), and the side file's size. */
  private readonly sideBase: number[] = [];
  readonly sideBytes: number;
  spaceBytes = 0;
  side?: SideFile;
  /** cow: the side file being made (concurrent first saves share it, so none is made twice). */
  sideMaking?: Promise<SideFile>;
  readonly inflight = new Set<InFlight>();

  constructor(
    /** The shared record (TokenState); its state and lastUse are the token's. */
    readonly record: TokenRecord,
    readonly id: bigint,
    public mode: TokenMode,
    readonly lu: LogicalUnit,
  ) {
    let next = 0;
    for (const r of record.ranges) {
      const at = next + (((r.src - next) % SIDE_FILE_ALIGNMENT) + SIDE_FILE_ALIGNMENT) % SIDE_FILE_ALIGNMENT;
      this.sideBase.push(at);
      next = at + r.bytes;
    }
    this.sideBytes = next;
  }

  get key(): string {
    return this.record.key;
  }

  get bytes(): Buffer {
    return this.record.bytes;
  }

  get rodType(): number {
    return this.record.rodType;
  }

  get state(): 'live' | Invalidation {
    return this.record.state;
  }

  get lastUse(): number {
    return this.record.lastUse;
  }

  get ranges(): readonly RodPiece[] {
    return this.record.ranges;
  }

  get bytesRepresented(): number {
    return this.record.bytesRepresented;
  }

  get inactivityMs(): number {
    return this.record.inactivityMs;
  }

  get createdAt(): number {
    return this.record.createdAt;
  }

  /** The creator LU's capacity at creation (a change invalidates the token). */
  get capacity(): bigint {
    return this.record.capacity;
  }

  get blockSize(): number {
    return this.lu.blockSize;
  }

  /** The pieces of ROD bytes [rod, rod+n) in source terms, in ROD order. */
  mapRod(rod: number, n: number): MappedPiece[] {
    const out: MappedPiece[] = [];
    const end = rod + n;
    this.ranges.forEach((r, i) => {
      const a = Math.max(rod, r.rod);
      const b = Math.min(end, r.rod + r.bytes);
      if (a < b) out.push({ rod: a, src: r.src + (a - r.rod), side: this.sideBase[i] + (a - r.rod), bytes: b - a });
    });
    return out;
  }

  /** The pieces of source bytes [src, src+n) the token covers. */
  mapSource(src: number, n: number): MappedPiece[] {
    const out: MappedPiece[] = [];
    const end = src + n;
    this.ranges.forEach((r, i) => {
      const a = Math.max(src, r.src);
      const b = Math.min(end, r.src + r.bytes);
      if (a < b) out.push({ rod: r.rod + (a - r.src), src: a, side: this.sideBase[i] + (a - r.src), bytes: b - a });
    });
    return out;
  }
}
