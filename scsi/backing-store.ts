/**
 * The storage port of the SCSI core. A backing store knows bytes, never CDBs:
 * it declares what it can do, and the core (INQUIRY, VPD pages, the command
 * table) reads that declaration. Implementations live in src/backing/.
 *
 * Errors: implementations reject with Node-style errors carrying `code`
 * ('ENOSPC', 'EIO', 'EROFS', ...). The core maps them to sense reasons in
 * one place (mutation.ts `storeErrorToSense`).
 */

export interface BackingStoreCapabilities {
  /** Logical block size in bytes (512 or 4096). */
  readonly blockSize: number;
  /** Physical block size in bytes (>= blockSize, power-of-two multiple). */
  readonly physicalBlockSize: number;
  /** Current size in bytes (a multiple of blockSize). */
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** Deallocating a range (punchHole) frees space and later reads return zeros. */
  readonly canPunchHole: boolean;
  /** seekData/seekHole tell allocated from unallocated ranges. */
  readonly canSeekData: boolean;
  /** cloneRange shares extents between (or within) stores without copying. */
  readonly canClone: boolean;
  /** write(..., {fua: true}) is durable when it resolves. */
  readonly supportsFua: boolean;
  /** Thin (sparse) provisioning: allocation happens on write. */
  readonly thinProvisioned: boolean;
}

export interface WriteOptions {
  /** Force unit access: durable on stable storage before the promise resolves. */
  fua?: boolean;
}

/** Options for BackingStore.copyRange (the third-party copy data mover). */
export interface CopyRangeOptions {
  /** Stop between chunks when aborted; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called after each chunk with the bytes of the range done so far. */
  onProgress?: (bytesDone: number) => void;
  /** Keep holes: where the source has a hole, deallocate the destination (default true). */
  preserveHoles?: boolean;
}

/** How the bytes of a copyRange moved, for status, metrics and tests. */
export interface CopyRangeResult {
  /** Bytes of the range covered (== length on success). */
  bytes: number;
  /** Bytes shared by a reflink (FICLONERANGE) without copying. */
  cloned: number;
  /** Bytes moved inside the kernel by copy_file_range(2). */
  offloaded: number;
  /** Bytes moved through user-space buffers (fallback). */
  buffered: number;
  /** Bytes of source holes left as holes in the destination. */
  holes: number;
}

export interface BackingStore extends BackingStoreCapabilities {
  /** Read exactly `length` bytes at byte `offset` (zeros past EOF of a sparse file). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Write all of `data` at byte `offset`. */
  write(offset: number, data: Buffer, options?: WriteOptions): Promise<void>;
  /** Make every acknowledged write durable (fdatasync). */
  flush(): Promise<void>;
  /** Deallocate [offset, offset+length); later reads return zeros. Only if canPunchHole. */
  punchHole(offset: number, length: number): Promise<void>;
  /**
   * Offset of the first allocated byte at or after `offset`, or `sizeBytes`
   * if none (SEEK_DATA semantics). Only if canSeekData.
   */
  seekData(offset: number): Promise<number>;
  /** Offset of the first unallocated byte at or after `offset` (SEEK_HOLE semantics; EOF counts as a hole). */
  seekHole(offset: number): Promise<number>;
  /**
   * Copy [srcOffset, srcOffset+length) of this store to `dst` at dstOffset,
   * inside the kernel where it can (clone, then copy_file_range, then
   * buffers), without blocking the event loop. Offsets and length are bytes;
   * the caller has already range-checked them. Optional: a store without it
   * is copied by the caller through read/write.
   */
  copyRange?(dst: BackingStore, srcOffset: number, dstOffset: number, length: number, options?: CopyRangeOptions): Promise<CopyRangeResult>;
  /**
   * Compare [offset, offset+compare.length) with `compare` and, only if equal,
   * write `data` there, atomically in the storage itself (RBD: the OSD), so
   * that COMPARE AND WRITE holds against writers on other nodes too. Resolves
   * null when written, or the byte offset of the first difference within
   * `compare` when nothing was written. Optional: without it the core reads,
   * compares and writes under its range lock (atomic within this process).
   */
  compareAndWrite?(offset: number, compare: Buffer, data: Buffer, options?: WriteOptions): Promise<number | null>;
  /**
   * The longest compareAndWrite the store takes, in bytes (RBD: one 512-byte
   * sector, librbd 16.2 refuses more); a longer one takes the core's path.
   * Unset: any length.
   */
  readonly compareAndWriteMaxBytes?: number;
  /** Flush and release the underlying resources. */
  close(): Promise<void>;
}
