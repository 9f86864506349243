/** Test doubles: an in-memory backing store, fake tasks and nexuses. */
import pino from 'pino';
import type { BackingStore, WriteOptions } from '../../scsi/backing-store';
import type { ItNexus, ScsiTask } from '../../scsi/types';
import { ScsiDevice, type ScsiDeviceOptions } from '../../scsi/scsi-device';
import type { LuIdentity } from '../../scsi/logical-unit';
import { decodeFixedSense } from '../../scsi/sense';
import { AbortError } from '../../scsi/abort';

export const silentLogger = pino({ level: 'silent' });

export class MemoryStore implements BackingStore {
  readonly data: Buffer;
  readonly canClone = false;
  readonly supportsFua: boolean = true;
  readonly thinProvisioned = true;
  readonly canSeekData = true;
  writes = 0;
  flushes = 0;
  fuaWrites = 0;
  punched: Array<[number, number]> = [];
  failNext?: string;

  constructor(
    readonly sizeBytes: number,
    readonly blockSize = 512,
    readonly physicalBlockSize = blockSize,
    readonly readOnly = false,
    readonly canPunchHole = true,
  ) {
    this.data = Buffer.alloc(sizeBytes);
  }

  private maybeFail(): void {
    if (this.failNext) {
      const code = this.failNext;
      this.failNext = undefined;
      throw Object.assign(new Error(code), { code });
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.maybeFail();
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  async write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    this.maybeFail();
    data.copy(this.data, offset);
    this.writes++;
    if (options.fua) this.fuaWrites++;
  }

  async flush(): Promise<void> {
    this.maybeFail();
    this.flushes++;
  }

  async punchHole(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
    this.punched.push([offset, length]);
  }

  async seekData(offset: number): Promise<number> {
    return offset;
  }

  async seekHole(): Promise<number> {
    return this.sizeBytes;
  }

  async close(): Promise<void> {}
}

export function identity(n = 0): LuIdentity {
  const naa = Buffer.alloc(16);
  naa[0] = 0x60; // NAA 6
  naa[3] = n;
  return { vendor: 'XCOPYD', product: 'test disk', revision: '0001', serial: `SERIAL${n}`, naa };
}

let nexusCounter = 0;
export function nexus(name = `iqn.2024-01.test:init${++nexusCounter}`): ItNexus {
  return {
    key: `${name},i,0x000000000001`,
    initiatorName: name,
    initiatorPortName: `${name},i,0x000000000001`,
    relativeTargetPort: 1,
    targetPortName: 'iqn.2024-01.test:target,t,0x0001',
  };
}

export interface FakeTaskOptions {
  lun?: number;
  nexus?: ItNexus;
  edtl?: number;
  dataOut?: Buffer;
  signal?: AbortSignal;
  /** Never resolve dataOut (abort tests). */
  hangDataOut?: boolean;
  /**
   * The initiator declared Data-Out (iSCSI W bit); default true. Without it
   * dataOut yields nothing, as the iSCSI transport's does.
   */
  isWrite?: boolean;
}

export function cdbOf(bytes: number[], length = 16): Buffer {
  const b = Buffer.alloc(Math.max(length, bytes.length));
  Buffer.from(bytes).copy(b);
  return b;
}

/**
 * A task as a transport makes it (iscsi/task.ts): abort() fires its signal
 * and rejects a pending dataOut; a test aborts it directly or through an
 * `external` signal (a TMF). `source` yields the write data.
 */
export class FakeTask implements ScsiTask {
  readonly attribute = 1;
  readonly requested: number[] = [];
  private readonly controller = new AbortController();

  constructor(
    readonly cdb: Buffer,
    readonly nexus: ItNexus,
    readonly expectedDataTransferLength: number,
    readonly isWrite: boolean,
    private readonly source: (length: number) => Promise<Buffer>,
    readonly lun = 0,
    external?: AbortSignal,
  ) {
    if (external?.aborted) this.abort(external.reason as Error);
    else external?.addEventListener('abort', () => this.abort(external.reason as Error), { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  abort(reason: Error = new AbortError('task aborted')): void {
    if (!this.aborted) this.controller.abort(reason);
  }

  dataOut(length: number): Promise<Buffer> {
    this.requested.push(length);
    const signal = this.controller.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<Buffer>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.source(length).then(
        (b) => (signal.removeEventListener('abort', onAbort), resolve(b)),
        (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
      );
    });
  }
}

export function task(cdb: Buffer | number[], o: FakeTaskOptions = {}): FakeTask {
  const buf = Array.isArray(cdb) ? cdbOf(cdb) : cdb;
  const edtl = o.edtl ?? o.dataOut?.length ?? 4096 * 1024;
  const source = (length: number): Promise<Buffer> => {
    if (o.isWrite === false) return Promise.resolve(Buffer.alloc(0));
    if (o.hangDataOut) return new Promise<Buffer>(() => undefined);
    const src = o.dataOut ?? Buffer.alloc(0);
    if (length > src.length) return Promise.reject(new Error('test: not enough data'));
    return Promise.resolve(Buffer.from(src.subarray(0, length)));
  };
  return new FakeTask(buf, o.nexus ?? defaultNexus, edtl, o.isWrite ?? true, source, o.lun ?? 0, o.signal);
}

export const defaultNexus = nexus('iqn.2024-01.test:default');

export function makeDevice(stores: BackingStore[] = [new MemoryStore(1024 * 512)], extra: Partial<ScsiDeviceOptions> = {}): ScsiDevice {
  return new ScsiDevice({
    logger: silentLogger,
    luns: stores.map((store, i) => ({ lun: i, store, identity: identity(i) })),
    ...extra,
  });
}

export function senseOf(r: { sense?: Buffer }): ReturnType<typeof decodeFixedSense> {
  if (!r.sense) throw new Error('no sense data');
  return decodeFixedSense(r.sense);
}

export function dataOf(r: { dataIn?: Buffer[] }): Buffer {
  return Buffer.concat(r.dataIn ?? []);
}
