/**
 * The limits of the copy manager. The engine enforces these numbers and
 * RECEIVE COPY OPERATING PARAMETERS (84h/03h) and the Third-party Copy VPD
 * page (8Fh) report them: one set of constants, so they cannot drift
 * (SPC-5 6.18.4 "values shall be the same as the equivalent VPD fields").
 */

/** MAXIMUM CSCD DESCRIPTOR COUNT. */
export const MAX_CSCD_DESCRIPTORS = 64;
/** MAXIMUM SEGMENT DESCRIPTOR COUNT. */
export const MAX_SEGMENT_DESCRIPTORS = 64;
/**
 * MAXIMUM DESCRIPTOR LIST LENGTH (CSCD + segment bytes). At least
 * 32*(maxCSCD+1)+28 and 32+32*(maxSeg+1), so "one too many" probes are
 * reported as TOO MANY ... DESCRIPTORS and not as a length error (reference 2.5 step 7).
 */
export const MAX_DESCRIPTOR_LIST_LENGTH = 8192;
/** MAXIMUM SEGMENT LENGTH in bytes; 0 = no limit (02h is bounded by its 16-bit block count anyway). */
export const MAX_SEGMENT_LENGTH = 0;
/** MAXIMUM INLINE DATA LENGTH: no inline/embedded data segments (04h) are implemented. */
export const MAX_INLINE_DATA_LENGTH = 0;
/** HELD DATA LIMIT: no held-data segments (0Dh..0Fh). */
export const HELD_DATA_LIMIT = 0;
/** MAXIMUM STREAM DEVICE TRANSFER SIZE: no stream devices. */
export const MAX_STREAM_DEVICE_TRANSFER_SIZE = 0;
/** TOTAL CONCURRENT COPIES per device (any LIST ID USAGE). */
export const TOTAL_CONCURRENT_COPIES = 255;
/** MAXIMUM (IDENTIFIED) CONCURRENT COPIES: with LIST ID USAGE 00b/10b. */
export const MAX_IDENTIFIED_CONCURRENT_COPIES = 255;
/** log2 bytes: copy_file_range works on bytes, so any byte count is fine (0Ah). */
export const DATA_SEGMENT_GRANULARITY_LOG2 = 0;
export const INLINE_DATA_GRANULARITY_LOG2 = 0;
export const HELD_DATA_GRANULARITY_LOG2 = 0;
/** SNLID: LIST ID USAGE 11b (no list identifier) is supported. */
export const SNLID = true;

/** Segment descriptor type codes the engine implements (SPC-5 6.6.5), ascending. */
export const SegmentType = {
  BLOCK_TO_BLOCK: 0x02,
  VERIFY_CSCD: 0x07,
  BLOCK_TO_BLOCK_BYTE_OFFSET: 0x0a,
} as const;
export const SUPPORTED_SEGMENT_TYPES: readonly number[] = [SegmentType.BLOCK_TO_BLOCK, SegmentType.VERIFY_CSCD, SegmentType.BLOCK_TO_BLOCK_BYTE_OFFSET];

/** CSCD descriptor type codes (SPC-5 6.6.4). */
export const CscdType = { IDENTIFICATION: 0xe4, EXTENSION: 0xff } as const;
export const SUPPORTED_CSCD_TYPES: readonly number[] = [CscdType.IDENTIFICATION];

/** CSCD descriptor ID FFFFh: the LU that received the command (SPC-5 6.6.4.1). */
export const CSCD_ID_THIS_LU = 0xffff;
/** CSCD IDs above 07FFh that are supported (VPD 8Fh Supported CSCD IDs). */
export const SUPPORTED_CSCD_IDS: readonly number[] = [CSCD_ID_THIS_LU];

/** Bytes per internal I/O of the data mover: the unit of progress and of abort latency. */
export const COPY_CHUNK_BYTES = 64 * 1024 * 1024;
/** How long completed operations keep their status for RECEIVE COPY RESULTS (FreeBSD: 60 s). */
export const RETENTION_MS = 60_000;

// ---- ROD tokens: POPULATE TOKEN / WRITE USING TOKEN (SBC-4 5.x; reference 2.11-2.13) ----
// VPD 8Fh's Block Device ROD Token Limits, ROD Token Features and Supported ROD
// Types descriptors are built from these, and the token store enforces them.

/** MAXIMUM RANGE DESCRIPTORS per PT/WUT (Windows sends up to 64 fragments). */
export const MAX_RANGE_DESCRIPTORS = 128;
/** DEFAULT INACTIVITY TIMEOUT (s): INACTIVITY TIMEOUT 0 in POPULATE TOKEN means this. */
export const DEFAULT_INACTIVITY_TIMEOUT_S = 60;
/** MAXIMUM INACTIVITY TIMEOUT (s); a larger request -> 5/26/00 at byte 4. */
export const MAX_INACTIVITY_TIMEOUT_S = 600;
/** MINIMUM / MAXIMUM TOKEN LIFETIME (s) of ROD Token Features (FreeBSD: 1 s; the maximum = the inactivity bound). */
export const MIN_TOKEN_LIFETIME_S = 1;
export const MAX_TOKEN_LIFETIME_S = MAX_INACTIVITY_TIMEOUT_S;
/**
 * MAXIMUM BYTES IN BLOCK ROD: what one token may represent (sum over its
 * ranges). VPD 8Fh MAXIMUM TOKEN TRANSFER SIZE = this / logical block size.
 */
export const MAX_BYTES_IN_BLOCK_ROD = 2 * 1024 * 1024 * 1024;
/**
 * OPTIMAL BYTES IN BLOCK ROD TRANSFER (and OPTIMAL TRANSFER COUNT * block size).
 * Measured, not guessed (test/bench/odx-bench.ts on the CI host, page-cache
 * backed files): copy_file_range moves ~2-4 GiB/s between LUN files, the
 * buffered fallback ~1 GiB/s; 256 MiB per WRITE USING TOKEN then completes in
 * well under 0.5 s on the slowest path, an eighth of Windows' ~4 s budget.
 */
export const OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER = 256 * 1024 * 1024;
/** Live tokens per copy manager (daemon); one more -> 5/55/0D. */
export const MAX_LIVE_TOKENS = 1024;
/**
 * Bytes that point-in-time side files may hold in total (copy-on-write saves,
 * or extents a clone stops sharing). When a write would pass it, the oldest
 * tokens are cancelled (5/23/08 on their next use).
 */
export const MAX_SIDE_FILE_BYTES = 8 * 1024 * 1024 * 1024;
/**
 * A foreground WRITE USING TOKEN ends with a partial, contiguous TRANSFER COUNT
 * once this much time has passed (Windows abandons a command after ~4 s and
 * resumes from the count RRTI reports).
 */
export const WUT_DEADLINE_MS = 3000;
/** Bytes per internal WUT step: the granularity of the deadline, progress and abort. */
export const ROD_CHUNK_BYTES = 64 * 1024 * 1024;
