/**
 * QEMU's iSCSI block driver (Debian qemu-utils + qemu-block-extra, libiscsi underneath):
 * `qemu-img info`, `convert` and `compare` on iscsi:// URLs and json: slices of a LUN.
 * Then: SIGTERM stops the daemon cleanly and the data is still there after a restart.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeIf, md5File, requireTarget, requireTools, run, startTarget, writeRandomFile, type Target } from './harness';

const MiB = 1024 * 1024;
const DATA = 32 * MiB;
const ready = requireTools([['qemu-img', 'qemu-utils']]) && requireTarget();

/** A json: filename for a byte range of a LUN, through the raw driver's offset/size. */
function slice(t: Target, lun: number, offset: number, size: number, extra: Record<string, string> = {}): string {
  const file: Record<string, unknown> = {
    driver: 'iscsi',
    transport: 'tcp',
    portal: `127.0.0.1:${t.port}`,
    target: t.iqn,
    lun,
    ...extra,
  };
  return `json:${JSON.stringify({ driver: 'raw', offset, size, file })}`;
}

async function qemuImg(t: Target, args: string[], timeoutMs = 120_000) {
  const r = await run('qemu-img', args, { timeoutMs, logFile: path.join(t.runDir, 'qemu-img.log') });
  const out = `qemu-img ${args.join(' ')}\n-> code=${r.code} signal=${r.signal}${r.timedOut ? ' TIMED OUT' : ''}\n${r.stdout}${r.stderr}`;
  return { ...r, out };
}

function expectOk(r: { code: number | null; out: string }, t: Target) {
  if (r.code !== 0) throw new Error(`${r.out}\n--- target log tail ---\n${t.logTail(30)}`);
}

describeIf(ready)('qemu-img with iscsi:// URLs', () => {
  let t: Target;
  let file: string;
  beforeAll(async () => {
    t = await startTarget({ name: 'qemu-img' });
    file = path.join(t.runDir, 'random-32MiB.bin');
    writeRandomFile(file, DATA);
  }, 60_000);
  afterAll(async () => {
    if (t) await t.stop();
  }, 30_000);

  it('info reports a raw image of the LUN size, on both LUNs', async () => {
    for (const lun of t.dataLuns) {
      const r = await qemuImg(t, ['info', '--output=json', t.url(lun)], 30_000);
      expectOk(r, t);
      const info = JSON.parse(r.stdout) as { 'virtual-size': number; format: string };
      expect(info.format).toBe('raw');
      expect(info['virtual-size']).toBe(t.lunSize);
    }
  });

  it('convert writes 32 MiB of random data to LUN 0 (out-of-order, cache=none)', async () => {
    const r = await qemuImg(t, ['convert', '-n', '-W', '-t', 'none', '-f', 'raw', '-O', 'raw', file, t.url(t.dataLuns[0])]);
    expectOk(r, t);
  });

  it('compare finds the file and the LUN slice identical, and finds a one-byte change', async () => {
    const lunSlice = slice(t, t.dataLuns[0], 0, DATA);
    const same = await qemuImg(t, ['compare', '-f', 'raw', file, lunSlice]);
    expectOk(same, t);
    expect(same.stdout).toContain('Images are identical');

    const changed = path.join(t.runDir, 'changed.bin');
    fs.copyFileSync(file, changed);
    const fd = fs.openSync(changed, 'r+');
    const at = 12_345_678;
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
    fs.closeSync(fd);
    const diff = await qemuImg(t, ['compare', '-f', 'raw', changed, lunSlice]);
    expect(diff.code).toBe(1); // 1 = images differ (2 would be an error)
    expect(diff.stdout).toMatch(/Content mismatch at offset 12345344/); // the 512-byte sector
  });

  it('compare of the whole 1 GiB LUN with the 32 MiB file: the rest reads as zeros', async () => {
    const r = await qemuImg(t, ['compare', '-f', 'raw', '-F', 'raw', file, t.url(t.dataLuns[0])], 240_000);
    expectOk(r, t);
    expect(r.stdout).toContain('Images are identical');
  }, 300_000);

  it('convert back out (header digest CRC32C) returns the same bytes', async () => {
    const back = path.join(t.runDir, 'back.bin');
    const r = await qemuImg(t, ['convert', '-O', 'raw', slice(t, t.dataLuns[0], 0, DATA, { 'header-digest': 'crc32c' }), back]);
    expectOk(r, t);
    expect(fs.statSync(back).size).toBe(DATA);
    expect(md5File(back)).toBe(md5File(file));
  });

  it('convert into the middle of the second LUN, and compare that slice', async () => {
    const mid = slice(t, t.dataLuns[1], 512 * MiB + 4096, DATA);
    const w = await qemuImg(t, ['convert', '-n', '-t', 'none', '-f', 'raw', '-O', 'raw', file, mid]);
    expectOk(w, t);
    const c = await qemuImg(t, ['compare', '-f', 'raw', file, mid]);
    expectOk(c, t);
    // LUN 0 is untouched by the LUN 1 write
    const c0 = await qemuImg(t, ['compare', '-f', 'raw', file, slice(t, t.dataLuns[0], 0, DATA)]);
    expectOk(c0, t);
  });

  const xcopydOnly = t0IsXcopyd() ? it : it.skip;
  xcopydOnly('SIGTERM stops the daemon cleanly, and the data survives a restart', async () => {
    const dataDir = t.dataDir!;
    const stopped = await t.stop();
    expect({ killed: stopped.killed, code: stopped.code, signal: stopped.signal }).toEqual({ killed: false, code: 0, signal: null });
    const t2 = await startTarget({ name: 'qemu-img-restart', dataDir });
    try {
      const c = await qemuImg(t2, ['compare', '-f', 'raw', file, slice(t2, t2.dataLuns[0], 0, DATA)]);
      expectOk(c, t2);
    } finally {
      const s2 = await t2.stop();
      expect(s2.killed).toBe(false);
    }
  }, 90_000);
});

function t0IsXcopyd(): boolean {
  return (process.env.INTEROP_TARGET ?? 'xcopyd') !== 'tgt';
}
