/**
 * Exclusive locks on LBA ranges. Every command that modifies the medium holds
 * the range it touches, so COMPARE AND WRITE's read-compare-write is atomic
 * with respect to every other write to those LBAs (SBC-4 5.3, VMware ATS).
 */
interface Held {
  start: bigint;
  end: bigint; // exclusive
  released: Promise<void>;
}

export class RangeLock {
  private held = new Set<Held>();

  /** Wait until [lba, lba+count) overlaps nothing held, take it, return the release function. */
  async acquire(lba: bigint, count: bigint): Promise<() => void> {
    const start = lba;
    const end = lba + (count > 0n ? count : 1n);
    for (;;) {
      let blocker: Held | undefined;
      for (const h of this.held) {
        if (h.start < end && start < h.end) {
          blocker = h;
          break;
        }
      }
      if (!blocker) break;
      await blocker.released;
    }
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const entry: Held = { start, end, released };
    this.held.add(entry);
    return () => {
      if (this.held.delete(entry)) release();
    };
  }

  /** Number of ranges held (tests). */
  get size(): number {
    return this.held.size;
  }
}
