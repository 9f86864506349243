/**
 * How far a replica kept by an etcd watch has got: the revision it reflects, and waiting
 * (bounded) until it reaches one. A test or a caller that knows the revision of a change made
 * elsewhere waits on this instead of sleeping.
 */
export class WatchProgress {
  /** The etcd revision the replica reflects. */
  revision = 0;
  private readonly waiters = new Set<{ rev: number; resolve: () => void }>();

  advance(rev: number): void {
    if (rev <= this.revision) return;
    this.revision = rev;
    for (const w of [...this.waiters]) {
      if (w.rev <= rev) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** Resolves once `revision` >= `rev`; rejects after `ms`. */
  waitFor(rev: number, ms = 10_000): Promise<void> {
    if (this.revision >= rev) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = {
        rev,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`replica at revision ${this.revision}, not ${rev}, after ${ms} ms`));
      }, ms);
      this.waiters.add(w);
    });
  }
}

/** `p`, or a rejection after `ms` (the timer cleared either way). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from etcd within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
