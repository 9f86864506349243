/**
 * The write lane: small buffered writes (pwrite into the page cache) done by
 * one dedicated worker thread fed through rings in shared memory, instead of
 * one libuv thread-pool job per write.
 *
 * Why: a pool job costs the event-loop thread a mutex, a condition signal and
 * usually a thread wake-up per write, and on a virtual machine that wake-up
 * (an IPI, then often a preemption of the event loop by the woken thread) cost
 * more than the 4 KiB write itself. Here the event loop copies the bytes into
 * a slot, publishes the slot on a ring and wakes the worker only if it sleeps;
 * the worker drains every slot it finds, and posts one message per batch of
 * completions (none while the event loop has not yet collected the previous
 * ones). Under load one wake-up carries many writes each way.
 *
 * Bounds: SLOTS slots of SLOT_BYTES each, allocated once. A write larger than
 * a slot, or one that finds every slot busy, is refused (submit returns null)
 * and the caller uses the thread pool, so nothing queues without bound.
 *
 * Durability is unchanged: a write resolves after pwrite(2) returned, exactly
 * like FileHandle.write; FUA/flush stay with the caller (fdatasync on the
 * pool). The caller must keep its fd open until every write it submitted has
 * settled (FileStore counts them), or the worker could write into a reused
 * descriptor number.
 *
 * The worker is plain JavaScript passed as source (eval), so it runs the same
 * under ts-node, jest and the compiled daemon.
 */
import { Worker } from 'node:worker_threads';

export const SLOT_BYTES = 64 * 1024;
export const SLOTS = 64;

/** Control words (Int32 indexes into the control block). */
const SUB_HEAD = 0; // next submission the worker takes (worker writes)
const SUB_TAIL = 1; // next submission slot the event loop fills (event loop writes)
const STATE = 2; // 1 while the worker sleeps or is about to
const COMP_HEAD = 3; // next completion the event loop takes (event loop writes)
const COMP_TAIL = 4; // next completion the worker publishes (worker writes)
const NOTIFIED = 5; // 1 while a completion message is on its way to the event loop
const STOP = 6; // 1: the worker exits when its ring is empty
const CTL_WORDS = 16;
/** Per-slot descriptor (Float64): fd, file offset, length, result (bytes, or -errno). */
const DESC = 4;

const WORKER_SOURCE = `
'use strict';
const { workerData, parentPort } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const { ctl, desc, data, slots, slotBytes } = workerData;
const C = new Int32Array(ctl, 0, ${CTL_WORDS});
const SUB = new Int32Array(ctl, ${CTL_WORDS * 4}, slots);
const COMP = new Int32Array(ctl, ${CTL_WORDS * 4} + slots * 4, slots);
const D = new Float64Array(desc);
const bytes = new Uint8Array(data);
for (;;) {
  let head = Atomics.load(C, ${SUB_HEAD});
  if (head === Atomics.load(C, ${SUB_TAIL})) {
    if (Atomics.load(C, ${STOP}) === 1) break;
    Atomics.store(C, ${STATE}, 1);
    // Re-check after announcing sleep: a submission published before the
    // event loop saw STATE=1 must not be left waiting.
    if (head === Atomics.load(C, ${SUB_TAIL}) && Atomics.load(C, ${STOP}) === 0) Atomics.wait(C, ${STATE}, 1);
    Atomics.store(C, ${STATE}, 0);
    continue;
  }
  const tail = Atomics.load(C, ${SUB_TAIL});
  while (head !== tail) {
    const slot = SUB[head % slots];
    const d = slot * ${DESC};
    const fd = D[d], offset = D[d + 1], length = D[d + 2];
    let res = 0;
    try {
      while (res < length) {
        const n = writeSync(fd, bytes, slot * slotBytes + res, length - res, offset + res);
        if (n <= 0) throw Object.assign(new Error('short write'), { errno: -5 });
        res += n;
      }
    } catch (e) {
      res = typeof e.errno === 'number' && e.errno < 0 ? e.errno : -5;
    }
    D[d + 3] = res;
    const ct = Atomics.load(C, ${COMP_TAIL});
    COMP[ct % slots] = slot;
    Atomics.store(C, ${COMP_TAIL}, ct + 1);
    head++;
    Atomics.store(C, ${SUB_HEAD}, head);
    // One message per batch: only when the event loop has collected the last one.
    if (Atomics.compareExchange(C, ${NOTIFIED}, 0, 1) === 0) parentPort.postMessage(0);
  }
}
`;

type Settle = (res: number) => void;

/**
 * What a submitted write resolves with when the worker died before it said
 * how the write went: the caller writes the same bytes again through the
 * thread pool (pwrite of the same bytes at the same offset is idempotent).
 */
export const LANE_LOST = Number.NaN;

export class WriteLane {
  private readonly ctl = new SharedArrayBuffer(CTL_WORDS * 4 + 2 * SLOTS * 4);
  private readonly desc = new SharedArrayBuffer(SLOTS * DESC * 8);
  private readonly data = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  private readonly c = new Int32Array(this.ctl, 0, CTL_WORDS);
  private readonly sub = new Int32Array(this.ctl, CTL_WORDS * 4, SLOTS);
  private readonly comp = new Int32Array(this.ctl, CTL_WORDS * 4 + SLOTS * 4, SLOTS);
  private readonly d = new Float64Array(this.desc);
  private readonly bytes = Buffer.from(this.data);
  private readonly free: number[] = [];
  private readonly settle: Array<Settle | null> = new Array(SLOTS).fill(null);
  private worker: Worker | null = null;
  private exited: Promise<void> = Promise.resolve();
  private inflight = 0;
  /** Set when the worker died: every later submit says no (the caller uses the pool). */
  private broken = false;

  constructor() {
    for (let i = SLOTS - 1; i >= 0; i--) this.free.push(i);
  }

  /** Writes submitted and not yet settled. */
  get pending(): number {
    return this.inflight;
  }

  /**
   * Write `data` at `offset` of `fd`. Resolves with the bytes written (all of
   * them), a negative errno, or LANE_LOST (NaN: the worker died; write it
   * again elsewhere); returns null when the lane cannot take it (too large,
   * every slot busy, lane broken): use the thread pool instead.
   */
  submit(fd: number, offset: number, data: Buffer): Promise<number> | null {
    if (this.broken || data.length > SLOT_BYTES || this.free.length === 0) return null;
    const slot = this.free.pop()!;
    data.copy(this.bytes, slot * SLOT_BYTES);
    const d = slot * DESC;
    this.d[d] = fd;
    this.d[d + 1] = offset;
    this.d[d + 2] = data.length;
    const p = new Promise<number>((resolve) => (this.settle[slot] = resolve));
    if (this.inflight++ === 0) this.start().ref();
    const tail = this.c[SUB_TAIL];
    this.sub[tail % SLOTS] = slot;
    Atomics.store(this.c, SUB_TAIL, tail + 1);
    // Clearing STATE (not just reading it) makes a notify that lands before the
    // worker's Atomics.wait harmless: the wait sees 0 and returns at once.
    if (Atomics.compareExchange(this.c, STATE, 1, 0) === 1) Atomics.notify(this.c, STATE);
    return p;
  }

  /** Kill the worker at once, as a crash would (tests: what was in flight comes back LANE_LOST or done). */
  async terminate(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Stop the worker (tests; the daemon lets it die with the process). */
  async close(): Promise<void> {
    Atomics.store(this.c, STOP, 1);
    Atomics.store(this.c, STATE, 0);
    Atomics.notify(this.c, STATE);
    await this.exited;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ctl: this.ctl, desc: this.desc, data: this.data, slots: SLOTS, slotBytes: SLOT_BYTES },
      // Not the parent's flags: under ts-node or jest they load a compiler into
      // every worker, and this one needs nothing but node:fs.
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: 32 },
      stdout: false,
      stderr: false,
    });
    w.on('message', () => this.collect());
    w.on('error', () => this.fail());
    this.exited = new Promise<void>((resolve) =>
      w.on('exit', () => {
        this.fail();
        resolve();
      }),
    );
    w.unref();
    this.worker = w;
    return w;
  }

  /** Take every published completion (the worker posts once per batch). */
  private collect(): void {
    // Clear first: a completion published after this store posts a new message.
    Atomics.store(this.c, NOTIFIED, 0);
    let head = this.c[COMP_HEAD];
    const tail = Atomics.load(this.c, COMP_TAIL);
    while (head !== tail) {
      const slot = this.comp[head % SLOTS];
      head++;
      this.finish(slot, this.d[slot * DESC + 3]);
    }
    Atomics.store(this.c, COMP_HEAD, head);
  }

  private finish(slot: number, res: number): void {
    const s = this.settle[slot];
    this.settle[slot] = null;
    this.free.push(slot);
    if (--this.inflight === 0) this.worker?.unref();
    s?.(res);
  }

  /** The worker is gone: collect what it finished, hand the rest back (LANE_LOST), refuse new work. */
  private fail(): void {
    if (this.broken) return;
    this.collect();
    this.broken = true;
    for (let slot = 0; slot < SLOTS; slot++) if (this.settle[slot]) this.finish(slot, LANE_LOST);
  }

  /** False once the worker died (every write then goes through the thread pool). */
  get working(): boolean {
    return !this.broken;
  }
}

let shared: WriteLane | null = null;

/** The process's write lane (created on first use; its worker starts on the first write). */
export function writeLane(): WriteLane {
  return (shared ??= new WriteLane());
}
