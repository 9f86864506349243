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
/**
 * MAXIMUM SEGMENT LENGTH in bytes (84h/03h and VPD 8Fh 8001h). Not 0 ("no
 * limit"): ESXi's xcopy-use-array-values rule takes it as its transfer size.
 * 256 MiB, as LIO reports: a 02h segment of 65535 blocks of 4096 bytes fits,
 * and the engine moves any segment in steps of COPY_CHUNK_BYTES, so a longer
 * 0Ah segment is still copied, not refused (nor does LIO refuse one).
 */
export const MAX_SEGMENT_LENGTH = 256 * 1024 * 1024;
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
 * OPTIMAL BYTES IN BLOCK ROD TRANSFER (VPD 8Fh 0106h), and OPTIMAL TRANSFER COUNT (0000h)
 * = this / logical block size: the default of RodTokenStore.optimalTransferBytes.
 *
 * Measured: `npx ts-node --transpile-only test/bench/odx-bench.ts --sweep-only --rounds N`
 * copies 1 GiB LUN 0 -> LUN 1 (ext4, the root filesystem of the dev/CI VM, 512-byte blocks)
 * over iSCSI with WRITE USING TOKENs of 1, 2, 4 ... 1024 MiB each (one token, OFFSET INTO
 * ROD advancing, destination punched and everything synced before each copy, source in the
 * page cache or dropped from it) and takes the best of the rounds, since other jobs on the
 * shared 2-core host only ever slow a round down. 2026-11-26, three runs (load 2-12), warm
 * source, best MiB/s:
 *   MiB per WUT    1     2     4     8    16    32    64   128   256   512  1024
 *   run 1        160  1423   953   988  3935  3740  3010  4588  3309  4375  4137
 *   run 2       1080  1898  2216  2990  3001  4462  3551  4691  4883  4697  4638
 *   run 3       1510  1481   767  2927  2547  2163  2825  4340  4829  2115  3355
 * A WUT costs about 1 ms besides its bytes (1 MiB WUTs: ~1-1.5 GiB/s), so throughput grows
 * with the size until the copy itself dominates: within 5 % of the best from 128 MiB in runs
 * 1 and 2, from 256 MiB in run 3 (128 MiB at 90 %); never better beyond. 128 MiB is the start
 * of that plateau, and half the time of 256 MiB against the deadline. (The dropped-source
 * column is noisier and no guide: this VM's disk is cached by its host.) The slowest 128 MiB
 * WUT seen took 155 ms; even at 150 MB/s (a cold spinning disk) it would take < 1 s, inside
 * the foreground deadline (WUT_DEADLINE_MS) and Windows' ~4 s budget with room to spare.
 */
export const OPTIMAL_BYTES_IN_BLOCK_ROD_TRANSFER = 128 * 1024 * 1024;
/**
 * Live tokens per copy manager (daemon). At the cap a POPULATE TOKEN cancels
 * the least recently used idle token (5/23/08 on its later use): Windows
 * never sets DEL_TKN, so its tokens stay until their inactivity timeout.
 * Only when every token is in use does a POPULATE TOKEN get 5/55/0D.
 */
export const MAX_LIVE_TOKENS = 1024;
/**
 * Tombstones of invalidated tokens kept (each a few hundred bytes, for twice
 * the token's inactivity timeout) so a late use is told EXPIRED / DELETED /
 * CANCELLED; past the bound the oldest go first.
 */
export const MAX_TOMBSTONES = 16 * MAX_LIVE_TOKENS;
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
