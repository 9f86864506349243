/**
 * Exclusive locks on LBA ranges. Every command that modifies the medium holds
 * the range it touches (LogicalUnit.mutate), so COMPARE AND WRITE's
 * read-compare-write is atomic with respect to every other write to those
 * LBAs (SBC-4 5.3, VMware ATS).
 *
 * A hold is a Latch that opens on release: a writer that nobody waits for
 * costs one object (no Promise, no closure). Block numbers are plain numbers
 * (2^53 blocks is beyond any LU).
 */
import { Latch } from './latch';

/** A held range [start, end) of logical blocks; release() opens it for the writers that wait. */
export class RangeHold extends Latch {
  /** The lock this hold is in, while held. */
  private lock: RangeLock | null = null;

  constructor(
    readonly start: number,
    readonly end: number,
  ) {
    super();
  }

  /** @internal RangeLock.take */
  enter(lock: RangeLock): void {
    this.lock = lock;
  }

  /** Give the range back (idempotent). */
  release(): void {
    const lock = this.lock;
    if (!lock) return;
    this.lock = null;
    lock.leave(this);
    this.open();
  }
}

export class RangeLock {
  private readonly held = new Set<RangeHold>();

  /** Wait until `hold`'s range overlaps nothing held, then hold it. */
  async take<H extends RangeHold>(hold: H): Promise<H> {
    for (;;) {
      const blocker = this.blocker(hold.start, hold.end);
      if (!blocker) break;
      await blocker.wait();
    }
    this.held.add(hold);
    hold.enter(this);
    return hold;
  }

  /**
   * Hold [lba, lba+count) without changing it (POPULATE TOKEN keeps its
   * source ranges still while it makes a token); returns the release function.
   */
  async acquire(lba: bigint, count: bigint): Promise<() => void> {
    const start = Number(lba);
    const hold = await this.take(new RangeHold(start, start + (count > 0n ? Number(count) : 1)));
    return () => hold.release();
  }

  /** @internal RangeHold.release */
  leave(hold: RangeHold): void {
    this.held.delete(hold);
  }

  private blocker(start: number, end: number): RangeHold | undefined {
    for (const h of this.held) if (h.start < end && start < h.end) return h;
    return undefined;
  }

  /** Number of ranges held (tests). */
  get size(): number {
    return this.held.size;
  }
}
