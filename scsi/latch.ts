/**
 * A one-shot latch: open() once, wait() any number of times. The promise is
 * made only when someone waits, so the per-command "settled" signals on the
 * hot path (most of which nobody ever awaits) cost a boolean, not a Promise
 * and its resolver closure.
 */
export class Latch {
  private promise: Promise<void> | null = null;
  private resolver: (() => void) | null = null;
  private done = false;

  get isOpen(): boolean {
    return this.done;
  }

  open(): void {
    if (this.done) return;
    this.done = true;
    const r = this.resolver;
    this.resolver = null;
    r?.();
  }

  wait(): Promise<void> {
    if (this.done) return Promise.resolve();
    return (this.promise ??= new Promise<void>((resolve) => (this.resolver = resolve)));
  }
}
