/**
 * Per-command overhead of the copy data mover (issue 12; not a test): one
 * FileStore.copyRange of 64 KiB and of 2 MiB of allocated data between two
 * files of one filesystem, one at a time, against the same copy_file_range
 * made synchronously in this thread (the kernel's share). Prints the mean and
 * median per call and the difference (our overhead: thread hand-offs, the
 * SEEK_DATA/SEEK_HOLE walk, clone attempts). Bounded: --calls per size
 * (default 400), files of 64 MiB in a temp directory (--dir), removed after.
 *
 *   npx ts-node --transpile-only test/bench/copy-overhead.ts [--calls N] [--dir DIR]
 */
import * as fs from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { FileStore } from '../../src/backing/file-store';
import { loadLibC } from '../../src/backing/libc';

const MiB = 1024 * 1024;
function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}
const CALLS = Number(arg('calls', '400'));
const FILE = 64 * MiB;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const libc = loadLibC();
  if (!libc) throw new Error('needs Linux and koffi');
  const koffi = require('koffi');
  const cfrSync = koffi.load('libc.so.6').func(
    'intptr_t copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags)');
  const dir = fs.mkdtempSync(path.join(arg('dir', tmpdir()), 'xcopyd-copy-overhead-'));
  try {
    const buf = Buffer.alloc(MiB);
    for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((Math.imul(i + 1, 2654435761) | 1) >>> 0, i);
    const fd = fs.openSync(path.join(dir, 'src.img'), 'w');
    for (let off = 0; off < FILE; off += MiB) fs.writeSync(fd, buf, 0, MiB, off);
    fs.closeSync(fd);
    const src = await FileStore.open({ path: path.join(dir, 'src.img') });
    const dst = await FileStore.open({ path: path.join(dir, 'dst.img'), sizeBytes: FILE });
    const rawIn = fs.openSync(path.join(dir, 'src.img'), 'r');
    const rawOut = fs.openSync(path.join(dir, 'raw.img'), 'w');
    fs.ftruncateSync(rawOut, FILE);
    console.log(`# copy-overhead: ${CALLS} calls per size, ${dir}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    console.log(`# XCOPYD_COPY_LANE=${process.env.XCOPYD_COPY_LANE ?? '(default)'}`);
    for (const size of [64 * 1024, 2 * MiB]) {
      const slots = FILE / size;
      const ours: number[] = [];
      const raw: number[] = [];
      // warm-up, then alternate so both see the same machine
      for (let i = 0; i < 20; i++) await src.copyRange(dst, (i % slots) * size, (i % slots) * size, size);
      for (let i = 0; i < CALLS; i++) {
        const off = (i % slots) * size;
        const mine = async () => {
          const t0 = process.hrtime.bigint();
          await src.copyRange(dst, off, off, size);
          ours.push(Number(process.hrtime.bigint() - t0) / 1000);
        };
        const theirs = () => {
          const t0 = process.hrtime.bigint();
          let done = 0;
          while (done < size) {
            const n = Number(cfrSync(rawIn, [off + done], rawOut, [off + done], size - done, 0));
            if (n <= 0) throw new Error(`copy_file_range: ${n}`);
            done += n;
          }
          raw.push(Number(process.hrtime.bigint() - t0) / 1000);
        };
        // Whichever goes second finds the source in the CPU caches: take turns.
        if (i % 2) {
          await mine();
          theirs();
        } else {
          theirs();
          await mine();
        }
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      console.log(`${(size / 1024).toString().padStart(5)} KiB  copyRange mean ${mean(ours).toFixed(0).padStart(6)} us median ${median(ours).toFixed(0).padStart(6)} us | `
        + `raw copy_file_range mean ${mean(raw).toFixed(0).padStart(6)} us median ${median(raw).toFixed(0).padStart(6)} us | `
        + `overhead median ${(median(ours) - median(raw)).toFixed(0)} us`);
    }
    fs.closeSync(rawIn);
    fs.closeSync(rawOut);
    await src.close();
    await dst.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
