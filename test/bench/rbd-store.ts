/**
 * RbdStore latency and throughput (issue 15; not a test): 4 KiB writes and
 * reads at QD1 and QD16, 1 MiB writes and reads at QD4, with librbd's aio
 * completions (the store's mode) and with the synchronous calls on the libuv
 * thread pool (the alternative), on a one-mon memstore Ceph started here
 * (test/interop/engines/ceph.ts) or the cluster of --conf FILE.
 *
 *   npx ts-node --transpile-only test/bench/rbd-store.ts [--conf ceph.conf] [--seconds 3]
 *
 * Each pattern runs for at most --seconds (default 3) and 20000 operations.
 * Memstore numbers say what the gateway costs, not what a disk cluster does.
 */
import pino from 'pino';
import { openRbdStore, type RbdStore } from '../../src/backing/rbd-store';
import type { RbdIoMode } from '../../src/backing/rbd';
import { moveData } from '../../scsi/copy/mover';
import { startCeph, type CephCluster } from '../interop/engines/ceph';
import { run } from '../interop/harness';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const seconds = Number(opt('--seconds') ?? 3);
const MAX_OPS = 20_000;
const IMAGE_BYTES = 64 * MiB;

interface Result { ops: number; ms: number; p50: number; p99: number }

async function pattern(store: RbdStore, kind: 'write' | 'read', size: number, qd: number): Promise<Result> {
  const buf = Buffer.alloc(size, 0x5a);
  const slots = Math.floor(IMAGE_BYTES / size);
  const lat: number[] = [];
  const end = Date.now() + seconds * 1000;
  let next = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (Date.now() < end && next < MAX_OPS) {
      const off = ((next++ * 7919) % slots) * size;
      const t = process.hrtime.bigint();
      if (kind === 'write') await store.write(off, buf);
      else await store.read(off, size);
      lat.push(Number(process.hrtime.bigint() - t) / 1e3);
    }
  };
  await Promise.all(Array.from({ length: qd }, worker));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  lat.sort((a, b) => a - b);
  return { ops: lat.length, ms, p50: lat[Math.floor(lat.length / 2)], p99: lat[Math.floor(lat.length * 0.99)] };
}

async function main(): Promise<void> {
  let ceph: CephCluster | undefined;
  const conf = opt('--conf') ?? (ceph = await startCeph({ name: 'bench-rbd', memstoreBytes: 1024 * MiB })).conf;
  if (ceph) console.log(`ceph started in ${ceph.startMs} ms, mon+osd RSS ${(ceph.rssBytes() / MiB).toFixed(0)} MiB`);
  const log = pino({ level: 'warn' });
  try {
    for (const mode of ['aio', 'pool'] as RbdIoMode[]) {
      const store = await openRbdStore({ pool: ceph?.pool ?? 'rbd', image: `bench-${process.pid}-${mode}` },
        { conf, clientId: 'admin' }, { blockSize: 512, readOnly: false, createSizeBytes: IMAGE_BYTES, nodeId: 'bench', log, ioMode: mode });
      try {
        await pattern(store, 'write', MiB, 4); // allocate the objects first
        for (const [kind, size, qd] of [
          ['write', 4096, 1], ['write', 4096, 16], ['read', 4096, 1], ['read', 4096, 16], ['write', MiB, 4], ['read', MiB, 4],
        ] as Array<['write' | 'read', number, number]>) {
          const r = await pattern(store, kind, size, qd);
          const iops = (r.ops / r.ms) * 1000;
          const mibs = (iops * size) / MiB;
          console.log(`${mode.padEnd(4)} ${kind.padEnd(5)} ${size === MiB ? '1 MiB' : '4 KiB'} QD${String(qd).padEnd(2)}: ` +
            `${iops.toFixed(0).padStart(6)} IOPS ${mibs.toFixed(1).padStart(7)} MiB/s  p50 ${r.p50.toFixed(0)} us  p99 ${r.p99.toFixed(0)} us  (${r.ops} ops)`);
        }
      } finally {
        await store.close();
        // memstore is RAM: give the image back.
        await run('rbd', ['-c', conf, 'rm', '--no-progress', store.where.image], { timeoutMs: 60_000 });
      }
    }
    // A 64 MiB copy of a fully written image: RbdStore.copyRange (4 MiB pieces, 4 in flight) vs the
    // core's fallback (serial 1 MiB read then write: moveData of a store without copyRange).
    const pool = ceph?.pool ?? 'rbd';
    const open = (image: string) => openRbdStore({ pool, image }, { conf, clientId: 'admin' },
      { blockSize: 512, readOnly: false, createSizeBytes: IMAGE_BYTES, nodeId: 'bench', log });
    const src = await open(`bench-${process.pid}-src`);
    const dst = await open(`bench-${process.pid}-dst`);
    try {
      await pattern(src, 'write', MiB, 4);
      for (let off = 0; off < IMAGE_BYTES; off += 4 * MiB) await src.write(off, Buffer.alloc(4 * MiB, 0x33));
      const plain = Object.assign(Object.create(Object.getPrototypeOf(src)), src, { copyRange: undefined });
      await moveData(plain, dst, 0, 0, IMAGE_BYTES); // the destination's objects exist before any timed round
      const mibs = (ms: number) => ((IMAGE_BYTES / MiB) / (ms / 1000)).toFixed(0);
      for (let round = 0; round < 3; round++) {
        const time = async (f: () => Promise<unknown>) => {
          const t = process.hrtime.bigint();
          await f();
          return Number(process.hrtime.bigint() - t) / 1e6;
        };
        const own = await time(() => src.copyRange(dst, 0, 0, IMAGE_BYTES));
        const fallback = await time(() => moveData(plain, dst, 0, 0, IMAGE_BYTES));
        console.log(`copy 64 MiB: copyRange ${own.toFixed(0)} ms (${mibs(own)} MiB/s), core fallback ${fallback.toFixed(0)} ms (${mibs(fallback)} MiB/s)`);
      }
    } finally {
      for (const s of [src, dst]) {
        await s.close();
        await run('rbd', ['-c', conf, 'rm', '--no-progress', s.where.image], { timeoutMs: 60_000 });
      }
    }
  } finally {
    await ceph?.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
