/**
 * What every fuzz suite shares (issue 7, hostile input): a seed that is
 * printed and replays the run (XCOPYD_FUZZ_SEED), a bound on runs and time
 * (XCOPYD_FUZZ_RUNS scales numRuns, XCOPYD_FUZZ_MS the time budget per
 * property), a committed corpus of interesting inputs replayed before the
 * random ones (test/fuzz/corpus/<name>.json, hex strings), and the oracle
 * for the SCSI core: a result with a status from the allowed set, sense
 * that is never HARDWARE ERROR (4/44/00 INTERNAL TARGET FAILURE means an
 * unexpected exception) and never MEDIUM ERROR (the in-memory store cannot
 * fail), no error logged, never a throw, never a hang.
 *
 * These suites use fast-check (structured generation, shrinking to a minimal
 * failing input, which goes into the corpus once the bug is fixed); the
 * coverage-guided fuzzer in guided/ runs the same oracle (runChecked) over
 * inputs kept for the code they reach (README.md here; @jazzer.js/core does
 * not load on Debian 12).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import fc from 'fast-check';
import type { ScsiTask, ItNexus } from '../../scsi/types';
import { ScsiStatus } from '../../scsi/types';
import { ScsiDevice } from '../../scsi/scsi-device';
import { FakeTask, MemoryStore, identity, nexus } from '../scsi/helpers';
import { testRodTokens } from '../support/rod-tokens';

export const FUZZ_SEED = Number(process.env.XCOPYD_FUZZ_SEED ?? crypto.randomInt(2 ** 31));
const RUN_SCALE = Number(process.env.XCOPYD_FUZZ_RUNS_SCALE ?? 1);
/** Time budget of one property (ms); the run stops early, not failing, when it is spent. */
export const FUZZ_MS = Number(process.env.XCOPYD_FUZZ_MS ?? 15_000);

let announced = false;
/** fast-check parameters: the printed seed, bounded runs and time. */
export function fuzzParams<T>(numRuns: number, examples: T[] = []): fc.Parameters<T> {
  if (!announced) {
    announced = true;
    console.log(`fuzz seed ${FUZZ_SEED} (XCOPYD_FUZZ_SEED=${FUZZ_SEED} replays it)`);
  }
  return {
    seed: FUZZ_SEED,
    numRuns: Math.max(1, Math.round(numRuns * RUN_SCALE)),
    interruptAfterTimeLimit: FUZZ_MS,
    markInterruptAsFailure: false,
    examples: examples.map((e) => [e]) as unknown as fc.Parameters<T>['examples'],
  };
}

const CORPUS_DIR = path.join(__dirname, 'corpus');

/** The committed corpus `name`: a JSON array of entries (hex strings, or objects of hex strings). */
export function corpus<T = unknown>(name: string): T[] {
  const file = path.join(CORPUS_DIR, `${name}.json`);
  if (!fs.existsSync(file)) return [];
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T[];
}

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Byte mutations of a valid input: flips, random bytes, truncation, extension, 16/32-bit length smashes. */
export function mutated(base: Buffer | fc.Arbitrary<Buffer>, maxOps = 6): fc.Arbitrary<Buffer> {
  const src: fc.Arbitrary<Buffer> = Buffer.isBuffer(base) ? fc.constant(base) : (base as fc.Arbitrary<Buffer>);
  const op = fc.oneof(
    fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ k: fc.constant('byte' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ k: fc.constant('u16' as const), at: fc.nat(), v: fc.constantFrom(0, 1, 0x7fff, 0x8000, 0xfffe, 0xffff) }),
    fc.record({ k: fc.constant('u32' as const), at: fc.nat(), v: fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff) }),
    fc.record({ k: fc.constant('cut' as const), at: fc.nat() }),
    fc.record({ k: fc.constant('grow' as const), n: fc.integer({ min: 1, max: 64 }), v: fc.integer({ min: 0, max: 255 }) }),
  );
  return fc.tuple(src, fc.array(op, { minLength: 1, maxLength: maxOps })).map(([b, ops]) => {
    let out = Buffer.from(b);
    for (const o of ops) {
      if (out.length === 0 && o.k !== 'grow') continue;
      switch (o.k) {
        case 'flip': out[o.at % out.length] ^= 1 << o.bit; break;
        case 'byte': out[o.at % out.length] = o.v; break;
        case 'u16': if (out.length >= 2) out.writeUInt16BE(o.v, o.at % (out.length - 1)); break;
        case 'u32': if (out.length >= 4) out.writeUInt32BE(o.v, o.at % (out.length - 3)); break;
        case 'cut': out = out.subarray(0, o.at % out.length); break;
        case 'grow': out = Buffer.concat([out, Buffer.alloc(o.n, o.v)]); break;
      }
    }
    return out;
  });
}

export const bytes = (maxLength: number, minLength = 0): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength, maxLength }).map((a) => Buffer.from(a));

// ---- the SCSI core under fuzz ---------------------------------------------------------

export const BS = 512;
export const LU_BLOCKS = 2048;

/** Statuses a command may end with (SAM-5 table 41). */
export const ALLOWED_STATUS: ReadonlySet<number> = new Set([
  ScsiStatus.GOOD, ScsiStatus.CHECK_CONDITION, 0x04 /* CONDITION MET */, ScsiStatus.BUSY,
  ScsiStatus.RESERVATION_CONFLICT, 0x28 /* TASK SET FULL */, ScsiStatus.TASK_ABORTED,
]);

export interface FuzzDevice {
  device: ScsiDevice;
  stores: MemoryStore[];
  nexus: ItNexus;
  other: ItNexus;
  /** Error-level log lines (internal target failure logs one) since the device was made. */
  errors: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * A fresh device (two 1 MiB LUs, two nexuses, their power-on unit attentions
 * taken): runs do not leak state into each other. `stores` (two, zeroed)
 * spares the allocation of new ones (the guided fuzzer reuses them).
 */
export async function makeFuzzDevice(o: { stores?: MemoryStore[] } = {}): Promise<FuzzDevice> {
  const errors: Array<Record<string, unknown>> = [];
  const logger: Logger = pino({ level: 'error' }, {
    write(line: string): void {
      try {
        errors.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        errors.push({ line });
      }
    },
  });
  const stores = o.stores ?? [new MemoryStore(LU_BLOCKS * BS), new MemoryStore(LU_BLOCKS * BS)];
  const device = new ScsiDevice({
    logger,
    rodTokens: testRodTokens(),
    luns: stores.map((store, i) => ({ lun: i, store, identity: identity(i) })),
  });
  const n = nexus('iqn.2026-11.org.xcopyd:fuzz-a');
  const other = nexus('iqn.2026-11.org.xcopyd:fuzz-b');
  device.attachNexus(n);
  device.attachNexus(other);
  for (const x of [n, other]) {
    for (const lun of [0, 1]) {
      for (let i = 0; i < 4; i++) {
        if ((await device.execute(fuzzTask(Buffer.alloc(6), { nexus: x, lun, edtl: 0 }))).status === ScsiStatus.GOOD) break;
      }
    }
  }
  return { device, stores, nexus: n, other, errors, close: () => device.close() };
}

/**
 * A task as the iSCSI transport makes it: dataOut(length) yields at most
 * EDTL bytes (an initiator never sends more than EDTL), taken from `data`
 * and zero-padded when the initiator sent less than EDTL.
 */
export function fuzzTask(cdb: Buffer, o: { nexus: ItNexus; lun?: number; edtl: number; data?: Buffer; signal?: AbortSignal }): ScsiTask {
  const data = o.data ?? Buffer.alloc(0);
  const source = (length: number): Promise<Buffer> => {
    const want = Math.max(0, Math.min(length, o.edtl));
    const b = Buffer.alloc(want);
    data.copy(b, 0, 0, Math.min(want, data.length));
    return Promise.resolve(b);
  };
  // The initiator declares Data-Out (iSCSI W bit); abort() as the transport's task has it.
  return new FakeTask(cdb, o.nexus, o.edtl, true, source, o.lun ?? 0, o.signal);
}

/** Sense key/ASC/ASCQ of fixed (70h/71h) or descriptor (72h/73h) sense. */
export function senseTriple(s: Buffer): [number, number, number] {
  const code = s[0] & 0x7f;
  if (code === 0x72 || code === 0x73) return [s[1] & 0x0f, s[2], s[3]];
  return [s[2] & 0x0f, s[12], s[13]];
}

const HANG_MS = 5_000;

/** Outcome counts (status, or sense key/ASC) per first CDB byte, for the suites' summaries. */
export const outcomes = new Map<string, number>();
function count(cdb: Buffer, what: string): void {
  const k = `${cdb[0].toString(16).padStart(2, '0')} ${what}`;
  outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
}

/** Share of runs that reached GOOD, per opcode: a fuzzer that never gets past validation proves little. */
export function summarizeOutcomes(): string {
  const per = new Map<string, { good: number; all: number }>();
  for (const [k, n] of outcomes) {
    const op = k.slice(0, 2);
    const e = per.get(op) ?? { good: 0, all: 0 };
    e.all += n;
    if (k.endsWith(' good')) e.good += n;
    per.set(op, e);
  }
  return [...per].sort().map(([op, e]) => `${op}:${e.good}/${e.all}`).join(' ');
}

/**
 * Run one command and apply the oracle. Returns a description of what went
 * wrong, or null. A run that outlives HANG_MS is a hang.
 */
export async function runChecked(fd: FuzzDevice, task: ScsiTask): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const what = `cdb ${task.cdb.toString('hex')} lun ${task.lun} edtl ${task.expectedDataTransferLength}`;
  try {
    const hang = new Promise<'hang'>((r) => (timer = setTimeout(() => r('hang'), HANG_MS)));
    const r = await Promise.race([fd.device.execute(task), hang]);
    if (r === 'hang') return `hang: ${what}`;
    if (!ALLOWED_STATUS.has(r.status)) return `status 0x${r.status.toString(16)}: ${what}`;
    if (r.status !== ScsiStatus.CHECK_CONDITION) count(task.cdb, r.status === ScsiStatus.GOOD ? 'good' : `status ${r.status}`);
    if (r.status === ScsiStatus.CHECK_CONDITION) {
      if (!r.sense || r.sense.length < 8) return `CHECK CONDITION without sense: ${what}`;
      const [key, asc, ascq] = senseTriple(r.sense);
      count(task.cdb, `${key.toString(16)}/${asc.toString(16)}`);
      if (key === 0x4 || key === 0x3) {
        const err = fd.errors[0]?.err as { stack?: string } | undefined;
        return `sense ${key.toString(16)}/${asc.toString(16)}/${ascq.toString(16)}: ${what}\n${err?.stack ?? ''}`;
      }
    }
    if (fd.errors.length) return `error logged: ${JSON.stringify(fd.errors[0]).slice(0, 2000)}: ${what}`;
    return null;
  } catch (err) {
    return `execute threw ${(err as Error)?.stack ?? err}: ${what}`;
  } finally {
    clearTimeout(timer);
  }
}

/** Unhandled rejections during a suite (a background copy that blew up) fail it. */
export function trackUnhandled(): { list: unknown[]; stop(): void } {
  const list: unknown[] = [];
  const on = (reason: unknown): void => {
    list.push(reason);
  };
  process.on('unhandledRejection', on);
  return { list, stop: () => process.off('unhandledRejection', on) };
}
