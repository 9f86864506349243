/**
 * One SCSI command as the iSCSI transport carries it: the ScsiTask the core
 * sees, plus the write-data bookkeeping (immediate data, unsolicited
 * Data-Out, R2T sequences) that fulfils task.dataOut() (RFC 7143 §4.2.3.4,
 * §11.7, §11.8). The core never sees an R2T.
 */
import { Latch } from '../scsi/latch';
import type { ItNexus, ScsiTask } from '../scsi/types';

export class TransportError extends Error {
  constructor(
    readonly code: 'PROTOCOL' | 'ABORTED' | 'CONNECTION_LOST',
    message: string,
  ) {
    super(message);
  }
}

export interface R2tSequence {
  ttt: number;
  offset: number;
  length: number;
  received: number;
  nextDataSN: number;
}

/** What the task needs from its connection to solicit data. */
export interface DataSolicitor {
  /** Send R2Ts for the task until `upTo` bytes are requested (bounded by MaxOutstandingR2T). */
  solicit(task: IscsiTask): void;
}

export class IscsiTask implements ScsiTask {
  /**
   * Made on first use of `signal` (copies and long commands ask for it; a 4 KiB
   * READ or WRITE never does): `aborted` and abort() work without it.
   */
  private controller: AbortController | null = null;
  private abortReason: Error | null = null;
  /**
   * Write data. When the command arrives it holds only the first burst
   * (immediate + unsolicited data, at most FirstBurstLength); it grows to the
   * length the core asks for (at most EDTL) when the command runs, so queued
   * commands pin no more memory than the negotiated first burst.
   */
  writeBuf: Buffer | null = null;
  /** Bytes of write data received (immediate + unsolicited + solicited). */
  received = 0;
  immediateLength = 0;
  /** Unsolicited Data-Out bytes still expected after immediate data. */
  unsolicitedExpected = 0;
  unsolicitedReceived = 0;
  unsolicitedNextDataSN = 0;
  unsolicitedDone = true;
  /** Bytes the core asked for (dataOut length). -1 until it asks. */
  wanted = -1;
  /** Next offset to solicit with an R2T. */
  nextR2tOffset = 0;
  r2tSN = 0;
  readonly r2ts = new Map<number, R2tSequence>();
  /** Data-In PDUs and R2Ts sent (ExpDataSN in the response). */
  dataSN = 0;
  delivered = false;
  finished = false;
  private waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private readonly settledLatch = new Latch();

  constructor(
    readonly itt: number,
    readonly lun: number,
    /** The raw 8-byte LUN field, copied. */
    readonly lunField: Buffer,
    readonly cdb: Buffer,
    readonly nexus: ItNexus,
    readonly expectedDataTransferLength: number,
    readonly attribute: number,
    readonly isWrite: boolean,
    readonly isRead: boolean,
    readonly cmdSN: number,
    readonly immediate: boolean,
    private readonly solicitor: DataSolicitor,
    /** ScsiTask.maxDataOutLength: the core refuses a command that asks for more (limits.maxWriteBuffer). */
    readonly maxDataOutLength: number,
  ) {}

  /** True once the task was aborted (same as signal.aborted, without making the signal). */
  get aborted(): boolean {
    return this.abortReason !== null;
  }

  /** Fires when the task is aborted; made on first use (an already aborted task gets an aborted signal). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Resolves when the task has settled (response sent, or aborted and cleaned up). */
  get settled(): Promise<void> {
    return this.settledLatch.wait();
  }

  /** Mark settled (idempotent). */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.settledLatch.open();
  }

  /** Abort the task (transport loss, TMF, or the core's reset/clear through ScsiTask.abort). */
  abort(reason: Error = new TransportError('ABORTED', 'aborted')): void {
    if (!this.abortReason) {
      this.abortReason = reason;
      this.controller?.abort(reason);
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(reason);
    }
  }

  /** ScsiTask.dataOut: collect `length` bytes of write data from offset 0. */
  dataOut(length: number): Promise<Buffer> {
    if (this.abortReason) return Promise.reject(this.abortReason);
    const want = Math.max(0, Math.min(length, this.expectedDataTransferLength));
    if (want === 0 || !this.isWrite) return Promise.resolve(Buffer.alloc(0));
    // Grow to what the core asks for, not to EDTL: an EDTL far beyond the CDB's transfer would
    // otherwise reserve EDTL per queued command. Data-Out beyond the buffer is never solicited.
    if (!this.writeBuf || this.writeBuf.length < want) {
      const grown = Buffer.allocUnsafe(want);
      if (this.writeBuf) this.writeBuf.copy(grown, 0);
      this.writeBuf = grown;
    }
    this.wanted = want;
    if (this.isComplete()) return Promise.resolve(this.writeBuf.subarray(0, want));
    return new Promise<Buffer>((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.solicitor.solicit(this);
    });
  }

  /** True when the bytes the core wants have all arrived. */
  isComplete(): boolean {
    return this.wanted >= 0 && this.received >= this.wanted && this.unsolicitedDone;
  }

  /** Called by the connection after data arrived; wakes the core when complete. */
  checkComplete(): void {
    if (this.waiter && this.isComplete()) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(this.writeBuf!.subarray(0, this.wanted));
    }
  }

  get waitingForData(): boolean {
    return this.waiter !== null;
  }
}
