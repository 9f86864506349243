/**
 * RbdStore against a real Ceph (test/interop/engines/ceph.ts: one mon, one
 * memstore OSD on 127.0.0.1, started once for the file): data path, holes,
 * atomic COMPARE AND WRITE through the SCSI core, fencing of a node by
 * breaking its lock (its client blocklisted: late writes fail with
 * ESHUTDOWN, the survivor's data stays), and snapshots for ROD tokens.
 * Skips loudly without ceph-mon/ceph-osd/librbd; fails under CI=true.
 */
import pino from 'pino';
import { ScsiStatus } from '../../scsi/types';
import { RbdStore, openRbdStore, parseRbdPath, type CephConnection } from '../../src/backing/rbd-store';
import { loadRbd, rbdLoadError } from '../../src/backing/rbd';
import { makeDevice, task, senseOf } from '../scsi/helpers';
import { describeIf, missingPrerequisite } from './harness';
import { requireCeph, startCeph, type CephCluster } from './engines/ceph';

const ok = requireCeph() && (loadRbd() !== null || missingPrerequisite(`librbd through koffi: ${rbdLoadError()?.message}`, 'apt-get install -y librbd1 librados2'));
const log = pino({ level: 'silent' });
const MiB = 1024 * 1024;
const BS = 512;

function write10(lba: number, blocks: number): Buffer {
  const b = Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  b.writeUInt32BE(lba, 2);
  b.writeUInt16BE(blocks, 7);
  return b;
}
function caw(lba: number, nlb: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x89;
  b.writeBigUInt64BE(BigInt(lba), 2);
  b[13] = nlb;
  return b;
}

describeIf(ok)('RbdStore on a one-mon, one-memstore-OSD Ceph', () => {
  let ceph: CephCluster;
  let conn: CephConnection;
  let n = 0;
  const open: RbdStore[] = [];
  const store = async (image: string, nodeId: string, o: { readOnly?: boolean; size?: number } = {}) => {
    const s = await openRbdStore({ pool: ceph.pool, image }, conn, {
      blockSize: BS, readOnly: o.readOnly ?? false, createSizeBytes: o.size ?? 64 * MiB, nodeId, log,
    });
    open.push(s);
    return s;
  };
  const image = () => `lu${++n}`;

  beforeAll(async () => {
    ceph = await startCeph({ name: 'cluster-rbd' });
    conn = { conf: ceph.conf, clientId: 'admin' };
    console.log(`ceph: started in ${ceph.startMs} ms, mon+osd RSS ${(ceph.rssBytes() / MiB).toFixed(0)} MiB`);
  }, 150_000);

  afterEach(async () => {
    for (const s of open.splice(0)) await s.close().catch(() => undefined);
  }, 60_000);

  afterAll(async () => {
    await ceph?.stop();
  }, 60_000);

  it('parses rbd:<pool>/<image>', () => {
    expect(parseRbdPath('rbd:rbd/lu0')).toEqual({ pool: 'rbd', image: 'lu0' });
    expect(parseRbdPath('/var/lib/xcopyd/lu0.img')).toBeNull();
    expect(parseRbdPath('rbd:rbd')).toBeNull();
  });

  it('creates the image, writes and reads back (FUA too), another node sees the bytes', async () => {
    const name = image();
    const a = await store(name, 'A', { size: 16 * MiB });
    expect(a.sizeBytes).toBe(16 * MiB);
    expect(a.supportsFua && a.canPunchHole && a.canSeekData).toBe(true);
    const data = Buffer.alloc(64 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await a.write(3 * MiB + 512, data);
    await a.write(9 * MiB, data, { fua: true });
    expect((await a.read(3 * MiB + 512, data.length)).equals(data)).toBe(true);
    const b = await store(name, 'B');
    expect((await b.read(9 * MiB, data.length)).equals(data)).toBe(true);
    expect((await b.read(0, 512)).every((x) => x === 0)).toBe(true);
  });

  it('punchHole reads back zeros (partial objects too); seekData/seekHole follow allocation', async () => {
    const s = await store(image(), 'A', { size: 32 * MiB });
    expect(await s.seekData(0)).toBe(32 * MiB);
    expect(await s.seekHole(0)).toBe(0);
    await s.write(8 * MiB, Buffer.alloc(8192, 0x55));
    expect(await s.seekData(0)).toBe(8 * MiB);
    const hole = await s.seekHole(8 * MiB);
    expect(hole).toBeGreaterThanOrEqual(8 * MiB + 8192);
    expect(hole).toBeLessThanOrEqual(12 * MiB); // object granularity (4 MiB objects)
    expect(await s.seekData(12 * MiB)).toBe(32 * MiB);
    await s.punchHole(8 * MiB + 512, 1024); // inside an object: zeroed
    const back = await s.read(8 * MiB, 2048);
    expect(back.subarray(0, 512).every((x) => x === 0x55)).toBe(true);
    expect(back.subarray(512, 1536).every((x) => x === 0)).toBe(true);
    expect(back.subarray(1536).every((x) => x === 0x55)).toBe(true);
    await s.punchHole(8 * MiB, 4 * MiB); // the whole object: deallocated
    expect(await s.seekData(0)).toBe(32 * MiB);
    expect((await s.read(8 * MiB, 8192)).every((x) => x === 0)).toBe(true);
  });

  it('compareAndWrite is atomic in the OSD: match writes, a mismatch reports its offset and writes nothing; one sector only', async () => {
    const s = await store(image(), 'A');
    await s.write(MiB, Buffer.alloc(512, 1));
    expect(await s.compareAndWrite(MiB, Buffer.alloc(512, 1), Buffer.alloc(512, 2))).toBeNull();
    expect((await s.read(MiB, 512)).every((x) => x === 2)).toBe(true);
    const cmp = Buffer.alloc(512, 2);
    cmp[300] = 9;
    expect(await s.compareAndWrite(MiB, cmp, Buffer.alloc(512, 3))).toBe(300);
    expect((await s.read(MiB, 512)).every((x) => x === 2)).toBe(true);
    // librbd 16.2 takes one aligned sector: the store says so, and refuses more.
    expect(s.compareAndWriteMaxBytes).toBe(512);
    await expect(s.compareAndWrite(MiB, Buffer.alloc(1024, 2), Buffer.alloc(1024, 3))).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('COMPARE AND WRITE through the SCSI core on two nodes: one heartbeat wins, the other miscompares', async () => {
    const name = image();
    const a = await store(name, 'A');
    const b = await store(name, 'B');
    const devA = makeDevice([a]);
    const devB = makeDevice([b]);
    const old = Buffer.alloc(BS, 0);
    // Both nodes try to take the same ATS "lock" block from zeros at once.
    const [ra, rb] = await Promise.all([
      devA.execute(task(caw(100, 1), { dataOut: Buffer.concat([old, Buffer.alloc(BS, 0xa)]) })),
      devB.execute(task(caw(100, 1), { dataOut: Buffer.concat([old, Buffer.alloc(BS, 0xb)]) })),
    ]);
    const statuses = [ra.status, rb.status].sort();
    expect(statuses).toEqual([ScsiStatus.GOOD, ScsiStatus.CHECK_CONDITION].sort());
    const loser = ra.status === ScsiStatus.GOOD ? rb : ra;
    const s = senseOf(loser);
    expect([s.key, s.asc, s.ascq, s.information]).toEqual([0xe, 0x1d, 0, 0]);
    const winner = ra.status === ScsiStatus.GOOD ? 0xa : 0xb;
    expect((await b.read(100 * BS, BS)).every((x) => x === winner)).toBe(true);
  });

  it('fence: B breaks A\'s lock, A\'s next write fails with ESHUTDOWN (2/04/0C through the core), B\'s data stays; A restarted writes again', async () => {
    const name = image();
    const a = await store(name, 'A');
    const b = await store(name, 'B');
    await a.write(0, Buffer.alloc(4096, 0xa));
    await b.write(4096, Buffer.alloc(4096, 0xb));
    const t0 = process.hrtime.bigint();
    expect(await b.fence('A')).toBe(1);
    const fenceMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const t1 = process.hrtime.bigint();
    await expect(a.write(0, Buffer.alloc(4096, 0xee))).rejects.toMatchObject({ code: 'ESHUTDOWN' });
    const rejectMs = Number(process.hrtime.bigint() - t1) / 1e6;
    console.log(`fence: break_lock ${fenceMs.toFixed(1)} ms, the fenced client's next write rejected after ${rejectMs.toFixed(1)} ms`);
    expect(a.fenced).toBe(true);
    // Through the SCSI core: 2/04/0C, the ALUA state of a gone node (scsi/mutation.ts storeErrorToSense).
    const r = await makeDevice([a]).execute(task(write10(0, 1), { dataOut: Buffer.alloc(BS, 0xef) }));
    const s = senseOf(r);
    expect([s.key, s.asc, s.ascq]).toEqual([2, 0x04, 0x0c]);
    await b.write(0, Buffer.alloc(4096, 0xbb));
    const back = await b.read(0, 8192);
    expect(back.subarray(0, 4096).every((x) => x === 0xbb)).toBe(true);
    expect(back.subarray(4096).every((x) => x === 0xb)).toBe(true);
    expect(await b.fence('A')).toBe(0); // nothing left to break
    // A comes back: a new client, not blocklisted, takes its lock again.
    await a.close();
    const a2 = await store(name, 'A');
    await a2.write(8192, Buffer.alloc(512, 0xa2));
    expect((await b.read(8192, 512)).every((x) => x === 0xa2)).toBe(true);
  }, 60_000);

  it('fence with A\'s writes in flight: every A write after the fence fails, the data reads as B\'s pattern', async () => {
    const name = image();
    const a = await store(name, 'A');
    const b = await store(name, 'B');
    const region = 256 * 1024;
    let fenced = false;
    let acked = 0;
    let rejected = 0;
    let ackedAfterFence = 0;
    // A rewrites the region in 4 KiB pieces, QD8, until its writes fail (bounded: 20 s, 100000 writes).
    const deadline = Date.now() + 20_000;
    let i = 0;
    const lane = async () => {
      while (Date.now() < deadline && i < 100_000) {
        const off = (i++ % (region / 4096)) * 4096;
        try {
          await a.write(off, Buffer.alloc(4096, 0xa));
          acked++;
          if (fenced) ackedAfterFence++;
        } catch (err) {
          expect((err as NodeJS.ErrnoException).code).toBe('ESHUTDOWN');
          rejected++;
          return;
        }
      }
    };
    const lanes = Promise.all(Array.from({ length: 8 }, lane));
    while (acked < 64) await new Promise((r) => setTimeout(r, 5));
    expect(await b.fence('A')).toBe(1);
    fenced = true;
    await b.write(0, Buffer.alloc(region, 0xb));
    await lanes;
    expect(rejected).toBe(8);
    // A write acknowledged after break_lock returned was sent before the blocklist reached the OSD,
    // so it landed before B's pattern: nothing of A may show after it.
    const back = await b.read(0, region);
    expect(back.every((x) => x === 0xb)).toBe(true);
    console.log(`fence under load: ${acked} A writes acknowledged (${ackedAfterFence} completing after break_lock returned), 8 lanes rejected`);
  }, 60_000);

  it('copyRange between two images: data copied, source holes become holes, progress and abort', async () => {
    const src = await store(image(), 'A', { size: 32 * MiB });
    const dst = await store(image(), 'A', { size: 32 * MiB });
    await dst.write(8 * MiB, Buffer.alloc(MiB, 0xff)); // stale bytes where the source has a hole
    const data = Buffer.alloc(MiB + 4096);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    await src.write(4 * MiB + 512, data);
    await src.write(20 * MiB, data);
    const progress: number[] = [];
    const r = await src.copyRange(dst, 0, 0, 32 * MiB, { onProgress: (b) => progress.push(b) });
    expect(r.bytes).toBe(32 * MiB);
    expect(r.buffered).toBe(8 * MiB); // two 4 MiB pieces hold data
    expect(r.holes).toBe(24 * MiB);
    expect(progress[progress.length - 1]).toBe(32 * MiB);
    expect((await dst.read(4 * MiB + 512, data.length)).equals(data)).toBe(true);
    expect((await dst.read(20 * MiB, data.length)).equals(data)).toBe(true);
    expect((await dst.read(8 * MiB, MiB)).every((x) => x === 0)).toBe(true);
    expect(await dst.seekData(0)).toBe(4 * MiB);
    expect(await dst.seekData(8 * MiB)).toBe(20 * MiB);
    // Shifted inside one image, overlapping (memmove order).
    await src.copyRange(src, 4 * MiB, 4 * MiB + 4096, 2 * MiB);
    expect((await src.read(4 * MiB + 4096 + 512, data.length)).equals(data)).toBe(true);
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(src.copyRange(dst, 0, 0, 32 * MiB, { signal: ac.signal })).rejects.toThrow('stop');
  }, 60_000);

  it('snapshots for tokens: the snapshot reads the old bytes after an overwrite; removed, it is gone', async () => {
    const s = await store(image(), 'A');
    await s.write(2 * MiB, Buffer.alloc(8192, 0x11));
    await s.createSnapshot('tok1');
    await s.write(2 * MiB, Buffer.alloc(8192, 0x22));
    expect((await s.readSnapshot('tok1', 2 * MiB, 8192)).every((x) => x === 0x11)).toBe(true);
    expect((await s.read(2 * MiB, 8192)).every((x) => x === 0x22)).toBe(true);
    const other = await store(s.where.image, 'B');
    expect((await other.readSnapshot('tok1', 2 * MiB + 4096, 4096)).every((x) => x === 0x11)).toBe(true);
    await other.close();
    await s.removeSnapshot('tok1');
    await expect(s.readSnapshot('tok1', 0, 512)).rejects.toMatchObject({ code: 'ENOENT' });
  }, 60_000);
});
