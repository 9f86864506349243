/**
 * Clone at scale (issue 12; not a test, asserts nothing): on XFS with reflink (a loop device),
 * a fully written LUN of 1, 4 and 16 GiB copied whole to an empty LUN by EXTENDED COPY and by
 * ODX (POPULATE TOKEN + RECEIVE ROD TOKEN INFORMATION + WRITE USING TOKEN, resumed from its
 * TRANSFER COUNT), printing for each the time and the extent count (filefrag) of the source
 * and of each destination: the time should follow the extents, not the size.
 *
 * Per size: a sparse image file of 2 x size + 4 GiB under --dir (default /var/tmp), losetup,
 * mkfs.xfs -m reflink=1, mount; LUN 0's backing file is written directly (8 MiB sequential
 * writes, then fdatasync; not through iSCSI, to keep it fast), LUNs 1 and 2 are created empty
 * by the daemon (4096-byte blocks, so one block -> block segment carries 128 MiB: 64 of them
 * make one EXTENDED COPY of 8 GiB). The daemon is a separate process (test/interop/harness).
 * Everything is unmounted, detached and removed at the end of each size. Root only.
 * The 16 GiB size needs the space really written: it is skipped (and said why) unless more
 * than 40 GiB are free under --dir.
 *
 * --fragment-mib N writes LUN 0 in N MiB pieces, each synced and followed by a small synced
 * write to a filler file, so the source has ~size/N extents: the same size with more extents.
 *
 *   npx ts-node --transpile-only test/bench/clone-scale.ts [--sizes 1,4,16] [--dir DIR] [--fragment-mib N]
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { findInPath, startTarget, type Target } from '../interop/harness';
import { naaOf } from '../support/host-xcopy';
import { cdb, openSession, type TestInitiator } from '../support/initiator';
import { b2b, e4, lid1, xcopyCdb } from '../scsi/copy/helpers';
import { expectGood, rrti, tokenFor, writeUsingToken } from '../odx/odx';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK = 4096;
const args = process.argv.slice(2);
const opt = (name: string, d: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : d;
};
const DIR = opt('--dir', '/var/tmp');
const SIZES = opt('--sizes', '1,4,16').split(',').map(Number);
/** With N > 0: LUN 0 is written in N MiB pieces alternating with a filler file, each synced, so its extents are ~size/N. */
const FRAGMENT_MIB = Number(opt('--fragment-mib', '0'));
const CMD_TIMEOUT_MS = 300_000;
const sh = (cmd: string, a: string[]) => execFileSync(cmd, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 }).trim();
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function extents(file: string): number {
  const m = /(\d+) extents? found/.exec(sh('filefrag', [file]));
  return m ? Number(m[1]) : NaN;
}

function freeBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

function writeLun(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  const piece = FRAGMENT_MIB > 0 ? FRAGMENT_MIB * MiB : 0;
  const filler = piece ? fs.openSync(`${file}.filler`, 'w') : -1;
  try {
    const buf = Buffer.allocUnsafe(piece ? Math.min(piece, 8 * MiB) : 8 * MiB);
    randomFillSync(buf);
    for (let off = 0; off < size; off += buf.length) {
      buf.writeDoubleLE(off, 0); // every piece differs
      fs.writeSync(fd, buf, 0, buf.length, off);
      if (piece && (off + buf.length) % piece === 0) {
        // allocate this piece now, then put the filler's next piece right after it on disk
        fs.fdatasyncSync(fd);
        fs.writeSync(filler, buf, 0, Math.min(buf.length, 64 * 1024), off);
        fs.fdatasyncSync(filler);
      }
    }
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
    if (filler >= 0) fs.closeSync(filler);
  }
}

interface Row {
  gib: number;
  srcExtents: number;
  xcopyMs: number;
  xcopyCmds: number;
  xcopyExtents: number;
  odxMs: number;
  odxCmds: number;
  odxExtents: number;
  load: number;
}

async function xcopyWhole(ini: TestInitiator, blocks: number): Promise<{ ms: number; cmds: number }> {
  const naa0 = await naaOf(ini, 0);
  const naa1 = await naaOf(ini, 1);
  const SEG = 32768; // 128 MiB of 4096-byte blocks (a segment counts at most 65535)
  const t0 = nowMs();
  let cmds = 0;
  for (let lba = 0; lba < blocks; cmds++) {
    const segs: Buffer[] = [];
    for (let i = 0; i < 64 && lba < blocks; i++) {
      const n = Math.min(SEG, blocks - lba);
      segs.push(b2b(0, 1, n, lba, lba));
      lba += n;
    }
    const list = lid1([e4(naa0, { blockLength: BLOCK }), e4(naa1, { blockLength: BLOCK })], segs, { listId: (cmds + 1) & 0xff });
    expectGood(await ini.command(1, xcopyCdb(0, list.length), { dataOut: list, timeoutMs: CMD_TIMEOUT_MS }), 'EXTENDED COPY');
  }
  return { ms: nowMs() - t0, cmds };
}

async function odxWhole(ini: TestInitiator, blocks: number): Promise<{ ms: number; cmds: number }> {
  const perToken = (2 * GiB) / BLOCK; // MAXIMUM BYTES IN BLOCK ROD
  let id = 1000;
  let cmds = 0;
  const t0 = nowMs();
  for (let base = 0; base < blocks; base += perToken) {
    const n = Math.min(perToken, blocks - base);
    const token = await tokenFor(ini, 0, id++, [[base, n]]);
    cmds += 2;
    for (let done = 0; done < n; ) {
      const lid = id++;
      const res = await writeUsingToken(ini, 2, lid, token, [[base + done, n - done]], { offset: done });
      cmds++;
      const tc = res.status === 0 ? n - done : Number((await rrti(ini, 2, lid)).transferCount);
      if (tc <= 0) throw new Error(`WRITE USING TOKEN made no progress (status ${res.status} sense ${res.sense?.toString('hex')})`);
      done += tc;
    }
  }
  return { ms: nowMs() - t0, cmds };
}

async function oneSize(gib: number): Promise<Row> {
  const size = gib * GiB;
  const work = fs.mkdtempSync(path.join(DIR, 'xcopyd-clone-scale-'));
  const img = path.join(work, 'xfs.img');
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(mnt);
  let loop = '';
  let mounted = false;
  let t: Target | undefined;
  let ini: TestInitiator | undefined;
  try {
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 2 * size + 4 * GiB);
    loop = sh('losetup', ['-f', '--show', img]);
    sh('mkfs.xfs', ['-q', '-m', 'reflink=1', loop]);
    // fragmenting: no speculative preallocation past EOF (it would keep the pieces contiguous)
    sh('mount', FRAGMENT_MIB ? ['-o', 'allocsize=64k', loop, mnt] : [loop, mnt]);
    mounted = true;
    const w0 = nowMs();
    writeLun(path.join(mnt, 'lun0.img'), size);
    console.log(`# ${gib} GiB${FRAGMENT_MIB ? ` (fragmented, ${FRAGMENT_MIB} MiB pieces)` : ''}: LUN 0 written in ${((nowMs() - w0) / 1000).toFixed(1)} s on ${loop}`);
    const yaml = [
      'targets:',
      '  - iqn: iqn.2026-11.org.xcopyd:default',
      '    luns:',
      ...[0, 1, 2].map((l) => `      - { lun: ${l}, path: lun${l}.img, size: ${gib}GiB, blockSize: ${BLOCK} }`),
      '',
    ].join('\n');
    t = await startTarget({ name: 'clone-scale', dataDir: mnt, configYaml: yaml, lunSize: size });
    ini = await openSession(t.port, { targetName: t.iqn, keys: { MaxRecvDataSegmentLength: '262144' } });
    for (const lun of [0, 1, 2]) for (let i = 0; i < 4; i++) if ((await ini.command(lun, cdb.testUnitReady())).status === 0) break;
    const blocks = size / BLOCK;
    const load = loadavg()[0];
    const x = await xcopyWhole(ini, blocks);
    const o = await odxWhole(ini, blocks);
    return {
      gib,
      srcExtents: extents(path.join(mnt, 'lun0.img')),
      xcopyMs: x.ms,
      xcopyCmds: x.cmds,
      xcopyExtents: extents(path.join(mnt, 'lun1.img')),
      odxMs: o.ms,
      odxCmds: o.cmds,
      odxExtents: extents(path.join(mnt, 'lun2.img')),
      load,
    };
  } finally {
    if (ini) {
      await ini.logout().catch(() => undefined);
      ini.close();
    }
    if (t) await t.stop();
    if (mounted) sh('umount', [mnt]);
    if (loop) sh('losetup', ['-d', loop]);
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0 || !findInPath('mkfs.xfs') || !findInPath('losetup') || !findInPath('filefrag')) {
    console.log('clone-scale: needs root, mkfs.xfs (xfsprogs), losetup and filefrag (e2fsprogs)');
    return 1;
  }
  const free = freeBytes(DIR);
  let sizes = SIZES;
  if (free <= 40 * GiB && sizes.some((s) => s > 4)) {
    console.log(`# ${(free / GiB).toFixed(0)} GiB free under ${DIR} (<= 40): sizes above 4 GiB skipped`);
    sizes = sizes.filter((s) => s <= 4);
  }
  const rows: Row[] = [];
  for (const gib of sizes) {
    const r = await oneSize(gib);
    rows.push(r);
    console.log(`# ${gib} GiB: XCOPY ${r.xcopyMs.toFixed(0)} ms (${r.xcopyCmds} cmd), ODX ${r.odxMs.toFixed(0)} ms (${r.odxCmds} cmd), ` +
      `extents src ${r.srcExtents} / xcopy dst ${r.xcopyExtents} / odx dst ${r.odxExtents} (load ${r.load.toFixed(1)})`);
  }
  console.log('\n| LUN (XFS reflink, 4096-byte blocks) | source extents | EXTENDED COPY ms (commands) | dest extents | ODX PT+RRTI+WUT ms (commands) | dest extents | load |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.gib} GiB | ${r.srcExtents} | ${r.xcopyMs.toFixed(0)} (${r.xcopyCmds}) | ${r.xcopyExtents} | ${r.odxMs.toFixed(0)} (${r.odxCmds}) | ${r.odxExtents} | ${r.load.toFixed(1)} |`);
  }
  return 0;
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
