/**
 * One SCSI command as the iSCSI transport carries it: the ScsiTask the core
 * sees. Its write data is the DataOutSequencer's (data-out.ts); the task
 * only waits for it on the core's behalf. The core never sees an R2T.
 */
import { Latch } from '../scsi/latch';
import type { ItNexus, ScsiTask } from '../scsi/types';
import type { DataOutSequencer } from './data-out';

export class TransportError extends Error {
  constructor(
    readonly code: 'PROTOCOL' | 'ABORTED' | 'CONNECTION_LOST',
    message: string,
  ) {
    super(message);
  }
}

/** What the task needs from its connection to solicit data. */
export interface DataSolicitor {
  /** Send R2Ts for the task while its sequencer needs them (bounded by MaxOutstandingR2T). */
  solicit(task: IscsiTask): void;
}

/** A SCSI Command PDU, decoded (the connection copies what must outlive the receive buffer). */
export type IscsiTaskInit = Pick<
  IscsiTask,
  'itt' | 'lun' | 'lunField' | 'cdb' | 'nexus' | 'expectedDataTransferLength' | 'attribute' | 'isWrite' | 'isRead' |
  'writeData' | 'maxDataOutLength'
> & { readonly solicitor: DataSolicitor };

export class IscsiTask implements ScsiTask {
  readonly itt: number;
  readonly lun: number;
  /** The raw 8-byte LUN field, copied. */
  readonly lunField: Buffer;
  readonly cdb: Buffer;
  readonly nexus: ItNexus;
  readonly expectedDataTransferLength: number;
  readonly attribute: number;
  readonly isWrite: boolean;
  readonly isRead: boolean;
  /** ScsiTask.maxDataOutLength: the core refuses a command that asks for more (limits.maxWriteBuffer). */
  readonly maxDataOutLength: number;
  /**
   * The write data's sequencer; null for a command without Data-Out (no W
   * bit, or EDTL 0), and once the task has ended (buffer and R2Ts released).
   */
  writeData: DataOutSequencer | null;
  /**
   * Made on first use of `signal` (copies and long commands ask for it; a 4 KiB
   * READ or WRITE never does): `aborted` and abort() work without it.
   */
  private controller: AbortController | null = null;
  private abortReason: Error | null = null;
  /** Data-In PDUs and R2Ts sent (ExpDataSN in the response). */
  dataSN = 0;
  delivered = false;
  finished = false;
  private waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private readonly solicitor: DataSolicitor;
  private readonly settledLatch = new Latch();

  constructor(init: IscsiTaskInit) {
    this.itt = init.itt;
    this.lun = init.lun;
    this.lunField = init.lunField;
    this.cdb = init.cdb;
    this.nexus = init.nexus;
    this.expectedDataTransferLength = init.expectedDataTransferLength;
    this.attribute = init.attribute;
    this.isWrite = init.isWrite;
    this.isRead = init.isRead;
    this.writeData = init.writeData;
    this.solicitor = init.solicitor;
    this.maxDataOutLength = init.maxDataOutLength;
  }

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
    const seq = this.writeData;
    if (want === 0 || seq === null) return Promise.resolve(Buffer.alloc(0));
    const ready = seq.want(want);
    if (ready) return Promise.resolve(ready);
    return new Promise<Buffer>((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.solicitor.solicit(this);
    });
  }

  /** Called by the connection after data arrived; wakes the core when its bytes are complete. */
  checkComplete(): void {
    if (!this.waiter) return;
    const data = this.writeData?.complete();
    if (data) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(data);
    }
  }
}
