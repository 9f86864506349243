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
