/**
 * Point in time by clone (issue 5 "Point in time": where the filesystem clones, clone the
 * ranges at populate time), on a real XFS with reflink=1 on a loop device, through the
 * whole daemon over iSCSI:
 *  - the LU files and the token side files (<dataDir>/rod/) sit on the XFS mount;
 *  - POPULATE TOKEN takes the clone path: the token's mode is 'clone', the daemon's copy
 *    metrics count every represented byte as `cloned` (FICLONERANGE) and none moved, FIEMAP
 *    (`xfs_io -c 'fiemap -v'`) flags all of the side file shared, and the used space of the
 *    filesystem does not grow by the bytes represented;
 *  - the source is then overwritten (WRITE, WRITE SAME, UNMAP), and after SYNCHRONIZE CACHE
 *    the side file's overwritten part is no longer shared (XFS moved the source's new bytes
 *    to new blocks; the token kept the old ones), the rest still is;
 *  - WRITE USING TOKEN to the other LU delivers the bytes of the populate time.
 *
 * Needs root (loop device, mkfs.xfs, mount) and xfsprogs. Skips loudly without; under
 * CI=true it fails instead. The mount, the loop device and the image go in afterAll
 * whatever happened (only the ones this file made).
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadLibC } from '../../src/backing/libc';
import { describeIf, findInPath, missingPrerequisite, requireTools } from '../interop/harness';
import type { TestDaemon } from '../support/daemon';
import {
  BS, expectGood, odxDaemon, pattern, readBlocks, session, tokenFor, unmapCdb, unmapParams, writeBlocks, writeSame16Cdb,
  writeUsingToken, type TestInitiator,
} from './odx';

const MiB = 1024 * 1024;

const ready =
  (process.getuid?.() === 0 || missingPrerequisite('root (loop devices, mkfs.xfs, mount)', 'run as root')) &&
  ((process.platform === 'linux' && loadLibC() !== null) || missingPrerequisite('Linux libc through koffi', 'run on Linux with koffi installed')) &&
  requireTools([
    ['mkfs.xfs', 'xfsprogs'],
    ['xfs_io', 'xfsprogs'],
    ['losetup', 'mount'],
  ]);

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Bytes in extents FIEMAP flags shared (0x2000), from `xfs_io -c 'fiemap -v'`. */
function sharedBytes(path: string): number {
  const out = run(findInPath('xfs_io')!, ['-r', '-c', 'fiemap -v', path]);
  let shared = 0;
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s*\[\d+\.\.\d+\]:\s+\d+\.\.\d+.*\s(\d+)\s+(0x[0-9a-f]+)\s*$/i.exec(line);
    if (m && parseInt(m[2], 16) & 0x2000) shared += Number(m[1]) * 512;
  }
  return shared;
}

function usedBytes(mnt: string): number {
  const s = statfsSync(mnt);
  return (s.blocks - s.bfree) * s.bsize;
}

/** xcopyd_copy_bytes_total by method, from the daemon's /metrics. */
function copyBytes(port: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => (body += s));
        res.on('end', () => {
          const out: Record<string, number> = {};
          for (const m of body.matchAll(/^xcopyd_copy_bytes_total\{method="(\w+)"\} (\d+(?:\.\d+)?(?:e\+\d+)?)$/gm)) out[m[1]] = Number(m[2]);
          resolve(out);
        });
      })
      .on('error', reject);
  });
}

describeIf(ready)('point in time by clone on XFS reflink=1', () => {
  let root: string;
  let img: string;
  let mnt: string;
  let dev: string | undefined;
  let mounted = false;
  let d: TestDaemon | undefined;
  let c: TestInitiator | undefined;
  let dataDir: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'xcopyd-pit-xfs-'));
    img = join(root, 'xfs.img');
    mnt = join(root, 'mnt');
    mkdirSync(mnt);
    run('truncate', ['-s', '1G', img]);
    dev = run('losetup', ['-f', '--show', img]).trim();
    run(findInPath('mkfs.xfs')!, ['-q', '-f', '-m', 'reflink=1', dev]);
    run('mount', [dev, mnt]);
    mounted = true;
    dataDir = join(mnt, 'data');
    mkdirSync(dataDir);
    d = await odxDaemon({ dataDir, metrics: { listen: '127.0.0.1:0' } }, '128MiB');
    c = await session(d.port);
  }, 60_000);

  afterAll(async () => {
    const errors: unknown[] = [];
    const attempt = async (f: () => unknown) => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    };
    if (c) await attempt(() => c!.close());
    if (d) await attempt(() => d!.stop());
    if (mounted) {
      await attempt(() => {
        try {
          run('umount', [mnt]);
        } catch {
          run('umount', ['-l', mnt]); // busy: detach now, freed when the last user goes
        }
      });
    }
    if (dev) await attempt(() => run('losetup', ['-d', dev!]));
    await attempt(() => rmSync(root, { recursive: true, force: true }));
    if (errors.length) console.error('pit-xfs cleanup:', errors);
  }, 60_000);

  it('PT clones the ranges into the side file (shared extents, counted as cloned); overwrites of the source unshare them; WUT delivers the old bytes', async () => {
    const cl = c!;
    const daemon = d!.daemon;
    const metricsPort = daemon.metrics!.address!.port;
    // Two 4 KiB-aligned ranges of LU 0 (the clone unit is the XFS block): 24 MiB + 8 MiB.
    const a = { lba: 0, blocks: (24 * MiB) / BS };
    const b = { lba: (64 * MiB) / BS, blocks: (8 * MiB) / BS };
    const oldA = pattern(a.blocks * BS, 0x71);
    const oldB = pattern(b.blocks * BS, 0x72);
    await writeBlocks(cl, 0, a.lba, oldA);
    await writeBlocks(cl, 0, b.lba, oldB);
    const rodBytes = (a.blocks + b.blocks) * BS;

    const before = await copyBytes(metricsPort);
    const used0 = usedBytes(mnt);
    const t0 = process.hrtime.bigint();
    const token = await tokenFor(cl, 0, 0x7100, [[a.lba, a.blocks], [b.lba, b.blocks]]);
    const ptMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const after = await copyBytes(metricsPort);
    const used1 = usedBytes(mnt);

    const live = daemon.rodTokens!.tokens();
    expect(live).toHaveLength(1);
    const t = live[0];
    const sideFile = join(dataDir, 'rod', `${t.key}.rod`);
    const sharedAtPt = sharedBytes(sideFile);
    console.log(
      `[pit-xfs] PT of ${rodBytes / MiB} MiB in 2 ranges: ${ptMs.toFixed(1)} ms; mode ${t.mode}; copy bytes +${JSON.stringify(
        Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)])),
      )}; side file shared ${sharedAtPt / MiB} MiB; used space +${((used1 - used0) / MiB).toFixed(2)} MiB`,
    );
    // The clone path, three ways: the token's mode, the data mover's own account, the filesystem's.
    expect(t.mode).toBe('clone');
    expect((after.cloned ?? 0) - (before.cloned ?? 0)).toBe(rodBytes);
    for (const m of ['offloaded', 'buffered']) expect((after[m] ?? 0) - (before[m] ?? 0)).toBe(0);
    expect(sharedAtPt).toBe(rodBytes);
    expect(used1 - used0).toBeLessThan(rodBytes / 8); // metadata, not another 32 MiB

    // Overwrite the source: WRITE over the first 8 MiB of A, WRITE SAME over the next 4 MiB,
    // UNMAP of all of B; then SYNCHRONIZE CACHE so XFS has moved the source's new bytes.
    await writeBlocks(cl, 0, a.lba, Buffer.alloc(8 * MiB, 0xa5));
    expectGood(await cl.command(0, writeSame16Cdb(a.lba + (8 * MiB) / BS, (4 * MiB) / BS), { dataOut: Buffer.alloc(BS, 0x5a) }), 'WRITE SAME');
    const up = unmapParams([[b.lba, b.blocks]]);
    expectGood(await cl.command(0, unmapCdb(up.length), { dataOut: up }), 'UNMAP');
    expectGood(await cl.command(0, Buffer.from([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])), 'SYNCHRONIZE CACHE');
    expect((await readBlocks(cl, 0, a.lba, 16)).equals(Buffer.alloc(16 * BS, 0xa5))).toBe(true);

    // The side file now holds alone what the source let go: 12 MiB of A and (UNMAP) all of B.
    const sharedAfter = sharedBytes(sideFile);
    console.log(`[pit-xfs] after overwriting 20 MiB of the source: side file shared ${sharedAfter / MiB} MiB; token diverged ${t.diverged.total / MiB} MiB`);
    expect(sharedAfter).toBe(rodBytes - 12 * MiB - 8 * MiB);
    expect(t.diverged.total).toBe(12 * MiB + 8 * MiB);

    // WRITE USING TOKEN onto LU 1 delivers the populate-time bytes.
    const dst = (16 * MiB) / BS;
    expectGood(await writeUsingToken(cl, 1, 0x7101, token, [[dst, a.blocks + b.blocks]]), 'WRITE USING TOKEN');
    const got = await readBlocks(cl, 1, dst, a.blocks + b.blocks);
    expect(got.subarray(0, oldA.length).equals(oldA)).toBe(true);
    expect(got.subarray(oldA.length).equals(oldB)).toBe(true);
  }, 120_000);
});
