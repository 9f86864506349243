/**
 * ROD token stores for tests that build a ScsiDevice or a RodTokenStore
 * without the daemon: a random sealing secret and side files in memory
 * (the daemon uses the data directory's secret and files next to the LUs).
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import type { BackingStore } from '../../scsi/backing-store';
import { RodTokenStore, type RodTokenStoreOptions, type SideFileFactory } from '../../scsi/copy/token-store';

const BUFFER_BYTES = 1024 * 1024;

/** A sparse in-memory side file (1 MiB pages). */
class MemorySideStore implements BackingStore {
  readonly physicalBlockSize: number;
  readonly readOnly = false;
  readonly canPunchHole = true;
  readonly canSeekData = false;
  readonly canClone = false;
  readonly supportsFua = false;
  readonly thinProvisioned = true;
  private readonly pages = new Map<number, Buffer>();

  constructor(
    readonly sizeBytes: number,
    readonly blockSize: number,
  ) {
    this.physicalBlockSize = blockSize;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    for (let done = 0; done < length; ) {
      const at = offset + done;
      const page = Math.floor(at / BUFFER_BYTES);
      const off = at % BUFFER_BYTES;
      const k = Math.min(BUFFER_BYTES - off, length - done);
      this.pages.get(page)?.copy(out, done, off, off + k);
      done += k;
    }
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    for (let done = 0; done < data.length; ) {
      const at = offset + done;
      const page = Math.floor(at / BUFFER_BYTES);
      const off = at % BUFFER_BYTES;
      const k = Math.min(BUFFER_BYTES - off, data.length - done);
      let p = this.pages.get(page);
      if (!p) {
        p = Buffer.alloc(BUFFER_BYTES);
        this.pages.set(page, p);
      }
      data.copy(p, off, done, done + k);
      done += k;
    }
  }

  async flush(): Promise<void> {}

  async punchHole(offset: number, length: number): Promise<void> {
    await this.write(offset, Buffer.alloc(length));
  }

  async seekData(offset: number): Promise<number> {
    return offset;
  }

  async seekHole(): Promise<number> {
    return this.sizeBytes;
  }

  async close(): Promise<void> {
    this.pages.clear();
  }
}

export const memorySideFiles: SideFileFactory = async (o) => {
  const store = new MemorySideStore(o.bytes, o.blockSize);
  return { store, remove: () => store.close() };
};

/** A token store with a random secret and memory side files; `o` overrides (limits, onEvent, ...). */
export function testRodTokens(o: Partial<RodTokenStoreOptions> = {}): RodTokenStore {
  return new RodTokenStore({ logger: pino({ level: 'silent' }), secret: randomBytes(32), sideFiles: memorySideFiles, ...o });
}
