/**
 * Step sizes for a copy that must end by a deadline (Windows' ~4 s budget
 * for WRITE USING TOKEN and POPULATE TOKEN; issue 11 point 3). A step is one
 * uninterruptible piece of work (a kernel copy call under one range hold),
 * so the deadline is only as good as the largest step: the pacer sizes each
 * step from the throughput measured so far, so that it fits in half of the
 * time left, starts small (nothing is known of the storage yet: a cold,
 * throttled disk moves 1 MiB in 0.1 s at 10 MB/s), and grows at most
 * fourfold per step (a fast first step may have come from the page cache).
 * Without a deadline every step is the largest.
 *
 * What a command measured is remembered for the next one on the same storage
 * (a `memory` key: the destination store) for RATE_MEMORY_MS: its first step
 * is then sized from that rate (still at most half the time left, and at most
 * GROWTH x FIRST_STEP_BYTES) instead of the 1 MiB probe, so a 2 MiB WRITE
 * USING TOKEN after another is one step, one round trip to the copy lane, not
 * two (issue 12). The first command on a store, or one after a pause, probes.
 */

/** The first step of a copy with a deadline. */
export const FIRST_STEP_BYTES = 1024 * 1024;
/**
 * Steps of at least this are multiples of it (a multiple of every block size
 * and filesystem block), so step edges never split a block that a clone
 * (FICLONERANGE) could otherwise have shared.
 */
export const STEP_GRANULE = 64 * 1024;
/** A step may be this many times the previous one, at most. */
const GROWTH = 4;
/** A step is planned to take at most this share of the time left. */
const SHARE_OF_TIME_LEFT = 0.5;
/** How long a command's measured rate sizes the next command's first step. */
export const RATE_MEMORY_MS = 5000;

/** The slowest rate the last paced command on a store measured, and when (Date.now()). */
const remembered = new WeakMap<object, { rate: number; at: number }>();

export class StepPacer {
  /**
   * The slowest throughput measured so far, bytes per millisecond: a fast step
   * may have come from the page cache or a throttle's burst allowance (blkio
   * throttling lets a burst through, then holds the rate), a slow one is what
   * the storage can be held to.
   */
  private rate: number | undefined;
  /** The largest step so far (growth is relative to it). */
  private largest = 0;

  /**
   * @param deadline Date.now() value by which the work must end (Infinity: none)
   * @param maxBytes the largest step
   * @param unit steps are whole units (the destination block size)
   */
  constructor(
    private readonly deadline: number,
    private readonly maxBytes: number,
    private readonly unit: number,
    /** Remember the rate for the next command on this storage, and start from the last one's (a destination store). */
    private readonly memory?: object,
  ) {
    const last = memory && this.bounded ? remembered.get(memory) : undefined;
    if (last && Date.now() - last.at < RATE_MEMORY_MS) {
      this.rate = last.rate;
      this.largest = FIRST_STEP_BYTES; // the first step may grow from the probe size, as a second step would
    }
  }

  get bounded(): boolean {
    return this.deadline !== Infinity;
  }

  /** Bytes for the next step (whole units, at least one), or 0 when the deadline has come. */
  next(): number {
    if (!this.bounded) return this.maxBytes;
    const left = this.deadline - Date.now();
    if (left <= 0) return 0;
    let bytes = this.rate === undefined ? FIRST_STEP_BYTES : Math.min(this.rate * left * SHARE_OF_TIME_LEFT, this.largest * GROWTH);
    bytes = Math.min(this.maxBytes, bytes);
    const granule = bytes >= STEP_GRANULE ? STEP_GRANULE : this.unit;
    return Math.max(this.unit, Math.floor(bytes / granule) * granule);
  }

  /** A step of `bytes` took `ms`. */
  done(bytes: number, ms: number): void {
    this.largest = Math.max(this.largest, bytes);
    const r = bytes / Math.max(ms, 0.5);
    this.measured = this.measured === undefined ? r : Math.min(this.measured, r);
    this.rate = this.rate === undefined ? r : Math.min(this.rate, r);
    if (this.memory) remembered.set(this.memory, { rate: this.measured, at: Date.now() });
  }

  /** The slowest rate this command measured (what the next one remembers: not an older command's). */
  private measured: number | undefined;

  /** Run one step of `bytes` with `step`, measured. */
  async step<T>(bytes: number, step: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const r = await step();
    this.done(bytes, performance.now() - t0);
    return r;
  }
}
