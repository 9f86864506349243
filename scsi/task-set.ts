/**
 * The task set of a device (SAM-5 4.6): the commands running now, by the
 * I_T nexus that sent them and the LU (its own LUN) they address, so that
 * task management and resets from any nexus can abort them and wait until
 * they have settled. A task is aborted through its own abort() (ScsiTask),
 * which also rejects a pending dataOut.
 */
import type { ScsiTask } from './types';
import { Latch } from './latch';
import { AbortError } from './abort';

export interface TaskRecord {
  readonly nexusKey: string;
  /** The LU's own LUN (aborts span nexuses whatever LUN each one uses). */
  readonly lun: number;
  readonly task: ScsiTask;
  readonly settled: Latch;
}

export class TaskSet {
  private readonly tasks = new Set<TaskRecord>();

  /** A command starts. */
  enter(task: ScsiTask, lun: number): TaskRecord {
    const record: TaskRecord = { nexusKey: task.nexus.key, lun, task, settled: new Latch() };
    this.tasks.add(record);
    return record;
  }

  /** ...and has settled (its result decided). */
  leave(record: TaskRecord): void {
    this.tasks.delete(record);
    record.settled.open();
  }

  /** Abort the matching tasks and wait until every one has settled; the keys of their nexuses. */
  async abort(match: (t: TaskRecord) => boolean): Promise<Set<string>> {
    const hit = [...this.tasks].filter(match);
    for (const t of hit) t.task.abort(new AbortError('task aborted'));
    await Promise.all(hit.map((t) => t.settled.wait()));
    return new Set(hit.map((t) => t.nexusKey));
  }

  /** Number of running tasks (tests, status). */
  get size(): number {
    return this.tasks.size;
  }

  /** Wait until every task running now has settled (shutdown). */
  async settled(): Promise<void> {
    await Promise.all([...this.tasks].map((t) => t.settled.wait()));
  }
}
