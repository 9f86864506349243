/**
 * The copy lane: the system calls of third-party copies (copy_file_range,
 * FICLONERANGE, SEEK_DATA/SEEK_HOLE, hole punching) run on a small bounded
 * set of worker threads of their own, at a lower CPU priority, instead of on
 * libuv's thread pool through koffi's async calls (issue 11 point 4).
 *
 * Why: ESXi's VMFS heartbeat is a one-block COMPARE AND WRITE and the host
 * declares the volume lost after 8 s without one. With 40 copies running,
 * every pool thread sat in a 64 MiB in-kernel copy: a cold read waited for a
 * free thread, and on a 2-core machine sixteen threads copying in the kernel
 * starved the event loop itself (measured with test/bench/ats-latency.ts:
 * event-loop delay up to 120 ms, heartbeats up to 190-260 ms). Here:
 *  - at most `threads` copy calls run at once (default 4), the rest wait in
 *    one FIFO in the event loop, so the pool stays free for small I/O and
 *    copies share the lane in arrival order (a chunk each);
 *  - each worker lowers its own nice value (setpriority on its thread id,
 *    default +10), so the event loop and the write lane win the CPU whenever
 *    they have work: a copy only gets what small commands leave;
 *  - a call goes to its worker through shared memory: the event loop writes
 *    the call's numbers into the worker's slot and wakes it with
 *    Atomics.notify (the worker sleeps in Atomics.wait, no event loop); the
 *    worker makes the call synchronously, writes the result into the slot
 *    and posts one small message back. A postMessage of the call itself cost
 *    the event loop ~20 us of serialization and the worker a turn of its
 *    event loop per call (issue 12). A small copy of allocated data
 *    (LibC.copyDataAsync) is one call: the worker checks SEEK_DATA/SEEK_HOLE
 *    and copies, one round trip instead of three (issue 12).
 *
 * A worker that dies hands its call back to koffi's async path (every call
 * here is idempotent: explicit offsets, no file position), and the lane is
 * not used again. The workers are plain JavaScript passed as source (eval)
 * that loads koffi by its resolved path, as the write lane does.
 */
import { Worker } from 'node:worker_threads';
import { FICLONERANGE, type CopyDataResult, type LibC, type SysResult } from './libc';

/** Operations a worker knows. */
const OP_LSEEK = 0;
const OP_FALLOCATE = 1;
const OP_COPY_FILE_RANGE = 2;
const OP_CLONE = 3;
const OP_COPY_DATA = 4;

/** A worker's control words (Int32): the sequence number of the call posted, and of the call answered. */
const CTL_POSTED = 0;
const CTL_ANSWERED = 1;
const CTL_STOP = 2;
const CTL_WORDS = 4;
/** A worker's slot (Float64): the call [op, a, b, c, d, e, f], then its result and errno. */
const SLOT_CALL = 0;
const SLOT_RES = 7;
const SLOT_ERRNO = 8;
const SLOT_WORDS = 9;

const WORKER_SOURCE = `
'use strict';
const { workerData, parentPort } = require('node:worker_threads');
const koffi = require(workerData.koffiPath);
const lib = koffi.load('libc.so.6');
const num = (v) => (typeof v === 'bigint' ? Number(v) : v);
const lseek = lib.func('int64_t lseek(int fd, int64_t offset, int whence)');
const fallocate = lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
const copyFileRange = lib.func('intptr_t copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags)');
const fcr = koffi.struct({ src_fd: 'int64_t', src_offset: 'uint64_t', src_length: 'uint64_t', dest_offset: 'uint64_t' });
const ioctl = lib.func('ioctl', 'int', ['int', 'unsigned long', koffi.pointer(fcr)]);
try {
  const syscall = lib.func('long syscall(long number)');
  const setpriority = lib.func('int setpriority(int which, int who, int prio)');
  // SYS_gettid: x86-64 186, aarch64 178. PRIO_PROCESS with a thread id sets that thread's nice value.
  const tid = num(syscall(process.arch === 'arm64' ? 178 : 186));
  if (tid > 0 && workerData.nice !== 0) setpriority(0, tid, workerData.nice);
} catch {
  // priority is an optimisation
}
/** OP_COPY_DATA: copy [a, a+e) of fd s to d at o if it is all data; [copied, errno]. */
function copyData(s, a, d, o, e, checkHoles) {
  if (checkHoles) {
    const data = num(lseek(s, a, 3));
    if (data !== a) return [0, data < 0 ? koffi.errno() : 0];
    const hole = num(lseek(s, a, 4));
    if (hole < a + e) return [0, hole < 0 ? koffi.errno() : 0];
  }
  let done = 0;
  for (let tries = 0; done < e && tries < 1000; tries++) {
    const n = num(copyFileRange(s, [a + done], d, [o + done], e - done, 0));
    if (n > 0) { done += n; tries = 0; continue; }
    if (n === 0) return [done, 0];
    const errno = koffi.errno();
    if (errno !== 4 && errno !== 11) return [done, errno]; // EINTR, EAGAIN: again
  }
  return [done, 0];
}
function call(op, a, b, c, d, e, f) {
  if (op === ${OP_COPY_DATA}) return copyData(a, b, c, d, e, f === 1);
  let r;
  switch (op) {
    case ${OP_LSEEK}: r = lseek(a, b, c); break;
    case ${OP_FALLOCATE}: r = fallocate(a, b, c, d); break;
    case ${OP_COPY_FILE_RANGE}: r = copyFileRange(a, [b], c, [d], e, 0); break;
    case ${OP_CLONE}: r = ioctl(d, ${FICLONERANGE}, { src_fd: a, src_offset: b, src_length: c, dest_offset: e }); break;
    default: r = -1;
  }
  r = num(r);
  return [r, r < 0 ? koffi.errno() : 0];
}
const C = new Int32Array(workerData.ctl);
const S = new Float64Array(workerData.slot);
let answered = 0;
for (;;) {
  // Sleep until the event loop posts a call (or asks us to stop).
  Atomics.wait(C, ${CTL_POSTED}, answered);
  if (Atomics.load(C, ${CTL_STOP}) === 1) break;
  const seq = Atomics.load(C, ${CTL_POSTED});
  if (seq === answered) continue;
  const [r, errno] = call(S[0], S[1], S[2], S[3], S[4], S[5], S[6]);
  S[${SLOT_RES}] = r;
  S[${SLOT_ERRNO}] = errno;
  answered = seq;
  Atomics.store(C, ${CTL_ANSWERED}, seq); // after the result: the event loop reads it once it sees seq
  parentPort.postMessage(seq);
}
`;

type Call = [op: number, a: number, b: number, c: number, d: number, e: number, f: number];

interface Pending {
  call: Call;
  resolve: (r: SysResult) => void;
  reject: (err: unknown) => void;
  /** The same call through koffi's async path. */
  fallback: () => Promise<SysResult>;
}

interface LaneWorker {
  worker: Worker;
  /** The call it is making, if any. */
  current: Pending | null;
  /** Control words and the call slot, shared with the worker. */
  ctl: Int32Array;
  slot: Float64Array;
  /** Sequence number of the last call posted to it. */
  seq: number;
}

export interface CopyLaneOptions {
  /** Copy calls at once (worker threads). Default XCOPYD_COPY_THREADS or 4. */
  threads?: number;
  /** Nice value increment of the workers (0 = as the event loop). Default XCOPYD_COPY_NICE or 10. */
  nice?: number;
  /** Where a call goes when the lane is broken (koffi's async calls). */
  fallback: LibC;
}

export class CopyLane {
  private readonly workers: LaneWorker[] = [];
  private readonly queue: Pending[] = [];
  private queueHead = 0;
  private broken = false;
  readonly threads: number;
  readonly nice: number;

  constructor(private readonly options: CopyLaneOptions) {
    const envInt = (v: string | undefined, def: number) => (v !== undefined && /^-?\d+$/.test(v) ? Number(v) : def);
    this.threads = Math.max(1, Math.min(64, options.threads ?? envInt(process.env.XCOPYD_COPY_THREADS, 4)));
    this.nice = Math.max(0, Math.min(19, options.nice ?? envInt(process.env.XCOPYD_COPY_NICE, 10)));
  }

  /** Calls waiting for a worker (tests, metrics). */
  get waiting(): number {
    return this.queue.length - this.queueHead;
  }

  /** False once a worker died: every call then goes to koffi's async path. */
  get working(): boolean {
    return !this.broken;
  }

  lseek(fd: number, offset: number, whence: number): Promise<SysResult> {
    return this.call(OP_LSEEK, fd, offset, whence, 0, 0, () => this.options.fallback.lseekAsync(fd, offset, whence));
  }

  fallocate(fd: number, mode: number, offset: number, len: number): Promise<SysResult> {
    return this.call(OP_FALLOCATE, fd, mode, offset, len, 0, () => this.options.fallback.fallocateAsync(fd, mode, offset, len));
  }

  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): Promise<SysResult> {
    return this.call(OP_COPY_FILE_RANGE, fdIn, offIn, fdOut, offOut, len,
      () => this.options.fallback.copyFileRangeAsync(fdIn, offIn, fdOut, offOut, len));
  }

  cloneRange(srcFd: number, srcOffset: number, length: number, dstFd: number, dstOffset: number): Promise<SysResult> {
    return this.call(OP_CLONE, srcFd, srcOffset, length, dstFd, dstOffset,
      () => this.options.fallback.cloneRangeAsync(srcFd, srcOffset, length, dstFd, dstOffset));
  }

  /** One round trip for a small copy of data (LibC.copyDataAsync); the fallback says 'not done' and lets the caller take the general path. */
  copyData(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, checkHoles: boolean): Promise<CopyDataResult> {
    return this.call(OP_COPY_DATA, fdIn, offIn, fdOut, offOut, len, async () => ({ res: 0, errno: 0 }), checkHoles ? 1 : 0)
      .then((r) => ({ copied: r.res, errno: r.errno }));
  }

  /** Stop the workers once their calls are done (tests; the daemon lets them die with the process). */
  async close(): Promise<void> {
    this.broken = true;
    this.drainToFallback();
    for (const w of this.workers) {
      Atomics.store(w.ctl, CTL_STOP, 1);
      Atomics.notify(w.ctl, CTL_POSTED);
    }
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
    this.workers.length = 0;
  }

  /** Kill the workers at once, as a crash would (tests: their calls go to the fallback). */
  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }

  private call(
    op: number, a: number, b: number, c: number, d: number, e: number, fallback: () => Promise<SysResult>, f = 0,
  ): Promise<SysResult> {
    if (this.broken) return fallback();
    return new Promise<SysResult>((resolve, reject) => {
      const p: Pending = { call: [op, a, b, c, d, e, f], resolve, reject, fallback };
      this.queue.push(p);
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queueHead < this.queue.length) {
      const w = this.idleWorker();
      if (!w) return;
      const p = this.queue[this.queueHead];
      this.queue[this.queueHead++] = undefined as unknown as Pending;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      w.current = p;
      w.worker.ref();
      w.slot.set(p.call, SLOT_CALL);
      w.seq = (w.seq + 1) | 0;
      Atomics.store(w.ctl, CTL_POSTED, w.seq); // after the call's numbers: the worker reads them once it sees seq
      Atomics.notify(w.ctl, CTL_POSTED);
    }
  }

  private idleWorker(): LaneWorker | undefined {
    if (this.broken) return undefined;
    const idle = this.workers.find((w) => w.current === null);
    if (idle) return idle;
    if (this.workers.length >= this.threads) return undefined;
    return this.spawn();
  }

  private spawn(): LaneWorker | undefined {
    let worker: Worker;
    const ctl = new SharedArrayBuffer(CTL_WORDS * 4);
    const slot = new SharedArrayBuffer(SLOT_WORDS * 8);
    try {
      worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { koffiPath: require.resolve('koffi'), nice: this.nice, ctl, slot },
        // Not the parent's flags: under ts-node or jest they load a compiler into every worker.
        execArgv: [],
        resourceLimits: { maxOldGenerationSizeMb: 32 },
        stdout: false,
        stderr: false,
      });
    } catch {
      this.fail();
      return undefined;
    }
    const lw: LaneWorker = { worker, current: null, ctl: new Int32Array(ctl), slot: new Float64Array(slot), seq: 0 };
    worker.on('message', (seq: number) => {
      const p = lw.current;
      if (!p || seq !== lw.seq || Atomics.load(lw.ctl, CTL_ANSWERED) !== seq) return;
      lw.current = null;
      worker.unref();
      p.resolve({ res: lw.slot[SLOT_RES], errno: lw.slot[SLOT_ERRNO] });
      this.dispatch();
    });
    worker.on('error', () => this.fail());
    worker.on('exit', () => this.fail());
    worker.unref();
    this.workers.push(lw);
    return lw;
  }

  /** A worker is gone: its call and every queued one go to koffi's async path; the lane is not used again. */
  private fail(): void {
    this.broken = true;
    for (const w of this.workers) {
      const p = w.current;
      w.current = null;
      if (p) this.toFallback(p);
    }
    this.drainToFallback();
  }

  private drainToFallback(): void {
    while (this.queueHead < this.queue.length) {
      const p = this.queue[this.queueHead];
      this.queue[this.queueHead++] = undefined as unknown as Pending;
      this.toFallback(p);
    }
    this.queue.length = 0;
    this.queueHead = 0;
  }

  private toFallback(p: Pending): void {
    p.fallback().then(p.resolve, p.reject);
  }
}

/**
 * `base` with its asynchronous calls made on `lane`: what the copy mover
 * uses. The synchronous calls stay `base`'s.
 */
export function laneLibC(base: LibC, lane: CopyLane): LibC {
  return {
    lseek: base.lseek,
    preadNowait: base.preadNowait,
    lseekAsync: (fd, offset, whence) => lane.lseek(fd, offset, whence),
    fallocateAsync: (fd, mode, offset, len) => lane.fallocate(fd, mode, offset, len),
    copyFileRangeAsync: (fdIn, offIn, fdOut, offOut, len) => lane.copyFileRange(fdIn, offIn, fdOut, offOut, len),
    cloneRangeAsync: (srcFd, srcOffset, length, dstFd, dstOffset) => lane.cloneRange(srcFd, srcOffset, length, dstFd, dstOffset),
    copyDataAsync: (fdIn, offIn, fdOut, offOut, len, checkHoles) => lane.copyData(fdIn, offIn, fdOut, offOut, len, checkHoles),
  };
}

let shared: { lane: CopyLane; libc: LibC } | null = null;

/**
 * The process's copy libc: `base`'s calls on the shared copy lane, or `base`
 * itself when XCOPYD_COPY_LANE=0.
 */
export function copyLibC(base: LibC): LibC {
  if (process.env.XCOPYD_COPY_LANE === '0') return base;
  if (!shared) {
    const lane = new CopyLane({ fallback: base });
    shared = { lane, libc: laneLibC(base, lane) };
  }
  return shared.lane.working ? shared.libc : base;
}
