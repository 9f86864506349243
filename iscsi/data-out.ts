/**
 * The write-data sequencer of one SCSI command (RFC 7143 §4.2.3.4, §11.7,
 * §11.8): it owns the buffer and every counter of the data that fulfils
 * ScsiTask.dataOut(): immediate data, the unsolicited burst (up to
 * FirstBurstLength, InitialR2T=No), and the R2T sequences (MaxBurstLength
 * each, at most MaxOutstandingR2T at once) with their TTTs, DataSN and
 * buffer offsets. It never sends anything: `accept()` returns a verdict the
 * connection maps to Reject or to soliciting more, and `openR2t()` describes
 * the next R2T for the connection to send. DataPDUInOrder and
 * DataSequenceInOrder are Yes (login-keys), so every PDU must come at the
 * next offset of its sequence.
 *
 * The buffer holds only the first burst when the command arrives; it grows to
 * what the core asks for (want()) when the command runs, so a queued command
 * pins no more than the negotiated first burst, and EDTL is never reserved.
 */

/** What one Data-Out PDU did (accept()). Errors are data sequence errors: Reject and end the task. */
export type DataOutVerdict =
  /** Stored; nothing else to do but see whether the core's bytes are complete. */
  | 'accepted'
  /** Stored, and it ended the unsolicited burst or an R2T sequence: solicit what is still missing. */
  | 'burst-done'
  | DataOutError;

export type DataOutError =
  | 'outside-solicited'
  | 'unexpected-unsolicited'
  | 'unknown-ttt'
  | 'out-of-sequence'
  | 'missing-final'
  | 'early-final';

/** Log text of each error verdict. */
export const DATA_OUT_ERRORS: Readonly<Record<DataOutError, string>> = {
  'outside-solicited': 'Data-Out outside the first burst and every R2T',
  'unexpected-unsolicited': 'unexpected unsolicited Data-Out',
  'unknown-ttt': 'Data-Out with unknown target transfer tag',
  'out-of-sequence': 'Data-Out out of sequence',
  'missing-final': 'Data-Out sequence complete without F bit',
  'early-final': 'Data-Out F bit before the sequence was complete',
};

/** One outstanding R2T: the sequence of Data-Out PDUs that answers it. */
interface R2tSequence {
  offset: number;
  length: number;
  received: number;
  nextDataSN: number;
}

/** An R2T to send (openR2t). */
export interface R2tRequest {
  readonly r2tSN: number;
  readonly bufferOffset: number;
  readonly desiredLength: number;
}

/** What the sequencer needs of the command and the session's negotiated keys. */
export interface DataOutSetup {
  readonly expectedDataTransferLength: number;
  /** The command PDU's data segment (immediate data); copied. */
  readonly immediateData: Buffer;
  /** The command PDU's F bit: set, no unsolicited Data-Out follows. */
  readonly final: boolean;
  readonly initialR2T: boolean;
  readonly firstBurstLength: number;
  readonly maxBurstLength: number;
  readonly maxOutstandingR2T: number;
}

const NO_TTTS: readonly number[] = [];

export class DataOutSequencer {
  private buf: Buffer | null = null;
  /** Bytes received (immediate + unsolicited + solicited). */
  private received = 0;
  private readonly immediateLength: number;
  /** Unsolicited Data-Out bytes still expected after the immediate data. */
  private readonly unsolicitedExpected: number;
  private unsolicitedReceived = 0;
  private unsolicitedNextDataSN = 0;
  private unsolicitedDone: boolean;
  /** Bytes the core asked for; -1 until it asks. */
  private wanted = -1;
  /** Next buffer offset to solicit with an R2T. */
  private nextR2tOffset: number;
  private r2tSN = 0;
  private readonly maxBurstLength: number;
  private readonly maxOutstandingR2T: number;
  /** Outstanding R2Ts by TTT. Made on the first R2T: a write carried by immediate data never needs one. */
  private r2ts: Map<number, R2tSequence> | null = null;

  constructor(s: DataOutSetup) {
    const edtl = s.expectedDataTransferLength;
    const immediate = s.immediateData.length;
    this.maxBurstLength = s.maxBurstLength;
    this.maxOutstandingR2T = s.maxOutstandingR2T;
    this.immediateLength = immediate;
    this.received = immediate;
    let unsolicited = 0;
    if (!s.initialR2T && !s.final) unsolicited = Math.max(0, Math.min(s.firstBurstLength, edtl) - immediate);
    this.unsolicitedExpected = unsolicited;
    this.unsolicitedDone = unsolicited === 0;
    this.nextR2tOffset = immediate + unsolicited;
    const firstBurst = immediate + unsolicited;
    if (firstBurst > 0) {
      this.buf = Buffer.allocUnsafe(firstBurst);
      if (immediate > 0) s.immediateData.copy(this.buf, 0);
    }
  }

  /**
   * The core asks for `length` bytes from offset 0 (at most EDTL, checked by
   * the caller). Grows the buffer to it; returns the bytes when they have all
   * arrived, else null (solicit, then wait for complete()).
   */
  want(length: number): Buffer | null {
    if (!this.buf || this.buf.length < length) {
      const grown = Buffer.allocUnsafe(length);
      if (this.buf) this.buf.copy(grown, 0);
      this.buf = grown;
    }
    this.wanted = length;
    return this.complete();
  }

  /** The bytes the core asked for, once they have all arrived (and the unsolicited burst ended); else null. */
  complete(): Buffer | null {
    if (this.wanted < 0 || this.received < this.wanted || !this.unsolicitedDone) return null;
    return this.buf!.subarray(0, this.wanted);
  }

  /** Whether another R2T may go out now (R2Ts follow the unsolicited burst; MaxOutstandingR2T). */
  needsR2t(): boolean {
    return this.unsolicitedDone && this.nextR2tOffset < this.wanted && (this.r2ts === null || this.r2ts.size < this.maxOutstandingR2T);
  }

  /** Open the next R2T sequence (at most MaxBurstLength) under `ttt`; call only when needsR2t(). */
  openR2t(ttt: number): R2tRequest {
    const offset = this.nextR2tOffset;
    const length = Math.min(this.maxBurstLength, this.wanted - offset);
    (this.r2ts ??= new Map()).set(ttt, { offset, length, received: 0, nextDataSN: 0 });
    this.nextR2tOffset = offset + length;
    return { r2tSN: this.r2tSN++, bufferOffset: offset, desiredLength: length };
  }

  /** TTTs of the R2Ts still open (the connection retires them when the task ends). */
  openTtts(): Iterable<number> {
    return this.r2ts ? this.r2ts.keys() : NO_TTTS;
  }

  /** Forget the buffer and the open R2Ts (task ended). */
  release(): void {
    this.buf = null;
    this.r2ts = null;
  }

  /**
   * One Data-Out PDU: `ttt` NO_TAG (0xffffffff) for unsolicited data. Stores
   * its bytes when it is the next PDU of its sequence; else says why not.
   */
  accept(ttt: number, dataSN: number, offset: number, final: boolean, data: Buffer): DataOutVerdict {
    const len = data.length;
    const buf = this.buf;
    // Nothing was solicited there: not in the first burst and no R2T covers it. The buffer is never
    // longer than EDTL (the first burst is within it, the core asks for no more), so neither is the data.
    if (!buf || offset + len > buf.length) return 'outside-solicited';
    if (ttt === 0xffffffff) {
      // Unsolicited data (RFC 7143 §4.2.3.4): only when InitialR2T=No, within FirstBurstLength.
      if (this.unsolicitedDone || offset !== this.immediateLength + this.unsolicitedReceived ||
          dataSN !== this.unsolicitedNextDataSN || this.unsolicitedReceived + len > this.unsolicitedExpected) {
        return 'unexpected-unsolicited';
      }
      data.copy(buf, offset);
      this.unsolicitedReceived += len;
      this.unsolicitedNextDataSN++;
      this.received += len;
      if (!final && this.unsolicitedReceived < this.unsolicitedExpected) return 'accepted';
      // F before FirstBurstLength: the initiator sent less than it may; the rest is solicited by R2T.
      if (this.unsolicitedReceived < this.unsolicitedExpected) this.nextR2tOffset = this.immediateLength + this.unsolicitedReceived;
      this.unsolicitedDone = true;
      return 'burst-done';
    }
    const seq = this.r2ts?.get(ttt);
    if (!seq) return 'unknown-ttt';
    if (dataSN !== seq.nextDataSN || offset !== seq.offset + seq.received || seq.received + len > seq.length) {
      return 'out-of-sequence';
    }
    data.copy(buf, offset);
    seq.received += len;
    seq.nextDataSN++;
    this.received += len;
    if (seq.received < seq.length) return final ? 'early-final' : 'accepted';
    if (!final) return 'missing-final';
    this.r2ts!.delete(ttt);
    return 'burst-done';
  }
}
