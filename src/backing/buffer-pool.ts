/**
 * A small fixed pool of large buffers for the copy engine's fallback path
 * (pread/pwrite through user space). A buffer is lent out with acquire() and
 * comes back with release() only after the read or write that used it has
 * completed, so no buffer is ever reused while the kernel may still touch it.
 * Callers that hold a buffer must never wait for another one unless the I/O
 * on each buffer they hold is in flight (it will finish and come back), which
 * keeps the pool free of deadlock however many copies share it.
 *
 * Buffers are allocated on first use (allocUnsafeSlow: outside Node's shared
 * slab) and kept for the life of the pool.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiters: Array<(b: Buffer) => void> = [];
  private readonly lent = new Set<Buffer>();
  private allocated = 0;

  constructor(readonly count: number, readonly bufferSize: number) {
    if (!(count >= 1) || !(bufferSize >= 4096)) throw new RangeError('BufferPool: count >= 1 and bufferSize >= 4096');
  }

  /** Buffers lent out right now (for tests and metrics). */
  get inUse(): number {
    return this.lent.size;
  }

  /** Buffers ever allocated (never more than count). */
  get allocatedCount(): number {
    return this.allocated;
  }

  /** A whole buffer of bufferSize bytes, waiting for one to come back if all are lent. */
  acquire(): Promise<Buffer> {
    let b = this.free.pop();
    if (!b && this.allocated < this.count) {
      b = Buffer.allocUnsafeSlow(this.bufferSize);
      this.allocated++;
    }
    if (b) {
      this.lent.add(b);
      return Promise.resolve(b);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Give a buffer back; its I/O must be complete. */
  release(b: Buffer): void {
    if (!this.lent.delete(b)) throw new Error('BufferPool: release of a buffer that is not lent out');
    const next = this.waiters.shift();
    if (next) {
      this.lent.add(b);
      next(b);
    } else {
      this.free.push(b);
    }
  }
}

/** The copy engine's shared pool: 4 x 8 MiB, 32 MiB at most for all copies together. */
export const copyBufferPool = new BufferPool(4, 8 * 1024 * 1024);
