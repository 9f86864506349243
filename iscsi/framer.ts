/**
 * Splits a TCP byte stream into iSCSI PDUs, whatever the segmentation
 * (RFC 7143 §11.2: BHS, AHS, header digest, data segment, padding, data
 * digest). A PDU that arrived whole inside one chunk is handed out as
 * `subarray` views of that chunk; a PDU that straddles chunks is assembled
 * into one buffer of exactly its size, allocated once its header is known.
 * Lengths are checked against the negotiated limit before any memory is
 * reserved for the data segment.
 */
import { BHS_LENGTH, Pdu, dataSegmentLength, padLength, totalAhsLength } from './pdu';
import { DIGEST_LENGTH, crc32c, digestMatches } from './digest';

export type FramerErrorCode = 'HEADER_DIGEST' | 'DATA_DIGEST' | 'DATA_SEGMENT_TOO_LONG' | 'BAD_AHS';

export class FramerError extends Error {
  constructor(
    readonly code: FramerErrorCode,
    message: string,
    /** The BHS of the offending PDU (a copy), when known. */
    readonly bhs?: Buffer,
  ) {
    super(message);
  }
}

export interface FramerOptions {
  /** Largest data segment accepted (our MaxRecvDataSegmentLength; 8192 during login). */
  maxDataSegmentLength: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
}

/** AHS can be at most 255 words (RFC 7143 §11.2.1.2). */
const MAX_AHS = 255 * 4;

export class PduFramer {
  maxDataSegmentLength: number;
  headerDigest: boolean;
  dataDigest: boolean;

  private partial: Buffer | null = null;
  private filled = 0;
  private need = 0;
  private headerKnown = false;
  private failed = false;

  constructor(
    opts: FramerOptions,
    private readonly onPdu: (pdu: Pdu) => void,
    private readonly onError: (err: FramerError) => void,
  ) {
    this.maxDataSegmentLength = opts.maxDataSegmentLength;
    this.headerDigest = opts.headerDigest ?? false;
    this.dataDigest = opts.dataDigest ?? false;
  }

  /** Bytes held for an incomplete PDU (for memory accounting and tests). */
  get buffered(): number {
    return this.partial ? this.filled : 0;
  }

  /** BHS + AHS + header digest of the header whose BHS starts at `off` (only the BHS must be present). */
  private headerLength(buf: Buffer, off: number): number {
    return BHS_LENGTH + totalAhsLength(buf, off) + (this.headerDigest ? DIGEST_LENGTH : 0);
  }

  /**
   * RFC 7143 §7.8: with a header digest error "the length field of the header
   * may have been corrupted", so the digest is checked before the lengths are
   * used. The whole header (`headerLength`) must be present.
   */
  private checkHeaderDigest(buf: Buffer, off: number): FramerError | null {
    if (!this.headerDigest) return null;
    const end = off + BHS_LENGTH + totalAhsLength(buf, off);
    if (digestMatches(buf, end, crc32c(buf.subarray(off, end)))) return null;
    return new FramerError('HEADER_DIGEST', 'header digest mismatch', copyBhs(buf, off));
  }

  /**
   * Total length of the PDU whose BHS starts at `off`, or a FramerError.
   * Only the BHS (48 bytes) must be present.
   */
  private pduLength(buf: Buffer, off: number): number | FramerError {
    const ahs = totalAhsLength(buf, off);
    if (ahs > MAX_AHS) return new FramerError('BAD_AHS', `TotalAHSLength ${ahs}`, copyBhs(buf, off));
    const dsl = dataSegmentLength(buf, off);
    if (dsl > this.maxDataSegmentLength) {
      return new FramerError(
        'DATA_SEGMENT_TOO_LONG',
        `DataSegmentLength ${dsl} exceeds ${this.maxDataSegmentLength}`,
        copyBhs(buf, off),
      );
    }
    let n = BHS_LENGTH + ahs;
    if (this.headerDigest) n += DIGEST_LENGTH;
    if (dsl > 0) {
      n += dsl + padLength(dsl);
      if (this.dataDigest) n += DIGEST_LENGTH;
    }
    return n;
  }

  push(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len && !this.failed) {
      if (this.partial === null) {
        const avail = len - off;
        if (avail < BHS_LENGTH || avail < this.headerLength(chunk, off)) {
          const need = avail < BHS_LENGTH ? BHS_LENGTH : this.headerLength(chunk, off);
          this.partial = Buffer.allocUnsafe(need);
          chunk.copy(this.partial, 0, off, len);
          this.filled = avail;
          this.need = need;
          this.headerKnown = false;
          return;
        }
        const badHeader = this.checkHeaderDigest(chunk, off);
        if (badHeader) return this.fail(badHeader);
        const total = this.pduLength(chunk, off);
        if (typeof total !== 'number') return this.fail(total);
        if (avail >= total) {
          this.emit(chunk, off, total);
          off += total;
          continue;
        }
        this.partial = Buffer.allocUnsafe(total);
        chunk.copy(this.partial, 0, off, len);
        this.filled = avail;
        this.need = total;
        this.headerKnown = true;
        return;
      }
      const take = Math.min(this.need - this.filled, len - off);
      chunk.copy(this.partial, this.filled, off, off + take);
      this.filled += take;
      off += take;
      if (this.filled < this.need) return;
      if (!this.headerKnown) {
        const headerLength = this.headerLength(this.partial, 0);
        if (this.need < headerLength) {
          // BHS in; wait for the AHS and header digest before trusting any length.
          const header = Buffer.allocUnsafe(headerLength);
          this.partial.copy(header, 0, 0, this.filled);
          this.partial = header;
          this.need = headerLength;
          continue;
        }
        const badHeader = this.checkHeaderDigest(this.partial, 0);
        if (badHeader) return this.fail(badHeader);
        const total = this.pduLength(this.partial, 0);
        if (typeof total !== 'number') return this.fail(total);
        if (total > this.need) {
          const whole = Buffer.allocUnsafe(total);
          this.partial.copy(whole, 0, 0, this.filled);
          this.partial = whole;
          this.need = total;
          this.headerKnown = true;
          continue;
        }
      }
      const done = this.partial;
      this.partial = null;
      this.emit(done, 0, this.need);
    }
  }

  /** Stop framing (connection closing): later bytes are ignored. */
  stop(): void {
    this.failed = true;
    this.partial = null;
  }

  private fail(err: FramerError): void {
    this.failed = true;
    this.partial = null;
    this.onError(err);
  }

  private emit(buf: Buffer, off: number, total: number): void {
    const ahsLen = totalAhsLength(buf, off);
    const dsl = dataSegmentLength(buf, off);
    const bhs = buf.subarray(off, off + BHS_LENGTH);
    let p = off + BHS_LENGTH;
    const ahs = buf.subarray(p, p + ahsLen);
    p += ahsLen;
    // The header digest was checked before the lengths were used.
    if (this.headerDigest) p += DIGEST_LENGTH;
    const data = buf.subarray(p, p + dsl);
    if (dsl > 0 && this.dataDigest) {
      const padded = dsl + padLength(dsl);
      const crc = crc32c(buf.subarray(p, p + padded));
      if (!digestMatches(buf, p + padded, crc)) {
        return this.fail(new FramerError('DATA_DIGEST', 'data digest mismatch', copyBhs(buf, off)));
      }
    }
    void total;
    this.onPdu({ bhs, ahs, data });
  }
}

function copyBhs(buf: Buffer, off: number): Buffer {
  return Buffer.from(buf.subarray(off, off + BHS_LENGTH));
}
