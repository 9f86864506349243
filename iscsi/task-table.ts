/**
 * A connection's tasks by ITT (RFC 7143 §11.3: unique among its tasks) and
 * the target transfer tags it hands out: TTTs of open R2Ts, NOP-In pings and
 * text continuations are never reused while live, and the TTTs of tasks that
 * ended before their data came are remembered (bounded) so that late
 * Data-Out for them is dropped quietly instead of rejected (§11.7).
 */
import type { IscsiTask } from './task';

/** How many TTTs of ended tasks are remembered. */
const RETIRED_TTT_LIMIT = 1024;
/** TTTs run 1 .. 0x7ffffffe (0xffffffff is the reserved tag). */
const MAX_TTT = 0x7ffffffe;

export class TaskTable {
  private readonly byItt = new Map<number, IscsiTask>();
  /** TTTs of open R2Ts. */
  private readonly liveTtts = new Set<number>();
  /** TTTs of R2Ts whose task ended first; oldest out. */
  private readonly retiredTtts = new Set<number>();
  private nextTtt = 1;

  get(itt: number): IscsiTask | undefined {
    return this.byItt.get(itt);
  }

  has(itt: number): boolean {
    return this.byItt.has(itt);
  }

  add(task: IscsiTask): void {
    this.byItt.set(task.itt, task);
  }

  /** The tasks, as a list (the caller may end tasks while it walks it). */
  list(): IscsiTask[] {
    return [...this.byItt.values()];
  }

  /** A TTT no live R2T or recently ended task holds. */
  allocTtt(): number {
    for (;;) {
      const t = this.nextTtt;
      this.nextTtt = t >= MAX_TTT ? 1 : t + 1;
      if (!this.liveTtts.has(t) && !this.retiredTtts.has(t)) return t;
    }
  }

  /** A TTT now names an open R2T. */
  r2tOpened(ttt: number): void {
    this.liveTtts.add(ttt);
  }

  /** Its R2T sequence is complete. */
  r2tClosed(ttt: number): void {
    this.liveTtts.delete(ttt);
  }

  /** Data-Out under this TTT belongs to a task that already ended. */
  isRetired(ttt: number): boolean {
    return this.retiredTtts.has(ttt);
  }

  /** The task ended: forget its ITT, retire the TTTs of its open R2Ts, release its write data. */
  remove(task: IscsiTask): void {
    if (this.byItt.get(task.itt) === task) this.byItt.delete(task.itt);
    const seq = task.writeData;
    if (!seq) return;
    for (const ttt of seq.openTtts()) {
      this.liveTtts.delete(ttt);
      this.retiredTtts.add(ttt);
      if (this.retiredTtts.size > RETIRED_TTT_LIMIT) this.retiredTtts.delete(this.retiredTtts.values().next().value!);
    }
    seq.release();
    task.writeData = null;
  }
}
