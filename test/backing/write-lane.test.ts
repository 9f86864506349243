import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileStore } from '../../src/backing/file-store';
import { LANE_LOST, SLOTS, SLOT_BYTES, WriteLane, writeLane } from '../../src/backing/write-lane';

const dirs: string[] = [];
function tempFile(size: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-lane-'));
  dirs.push(dir);
  const file = path.join(dir, 'f.img');
  fs.writeFileSync(file, Buffer.alloc(0));
  fs.truncateSync(file, size);
  return file;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('WriteLane', () => {
  const lanes: WriteLane[] = [];
  afterAll(async () => {
    for (const l of lanes) await l.close();
  });
  function lane(): WriteLane {
    const l = new WriteLane();
    lanes.push(l);
    return l;
  }

  it('writes every block where it was asked, many in flight at once', async () => {
    const file = tempFile(4 << 20);
    const fd = fs.openSync(file, 'r+');
    const l = lane();
    const blocks = 1024;
    const expected = crypto.randomBytes(blocks * 4096);
    // Scattered order, at most SLOTS in flight, every result all bytes.
    const order = Array.from({ length: blocks }, (_, i) => (i * 389) % blocks);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < order.length) {
        const b = order[next++];
        const p = l.submit(fd, b * 4096, expected.subarray(b * 4096, (b + 1) * 4096));
        expect(p).not.toBeNull();
        expect(await p).toBe(4096);
      }
    };
    await Promise.all(Array.from({ length: SLOTS }, worker));
    expect(l.pending).toBe(0);
    expect(fs.readFileSync(file).subarray(0, expected.length).equals(expected)).toBe(true);
    fs.closeSync(fd);
  });

  it('refuses what it cannot hold: larger than a slot, or every slot busy (the caller uses the pool)', async () => {
    const file = tempFile(SLOT_BYTES * 2);
    const fd = fs.openSync(file, 'r+');
    const l = lane();
    expect(l.submit(fd, 0, Buffer.alloc(SLOT_BYTES + 512))).toBeNull();
    const inFlight = Array.from({ length: SLOTS }, (_, i) => l.submit(fd, i * 512, Buffer.alloc(512, i)));
    expect(inFlight.every((p) => p !== null)).toBe(true);
    expect(l.submit(fd, 0, Buffer.alloc(512))).toBeNull();
    expect(await Promise.all(inFlight)).toEqual(Array(SLOTS).fill(512));
    // Slots come back: it takes writes again.
    expect(await l.submit(fd, 0, Buffer.alloc(512, 7))).toBe(512);
    fs.closeSync(fd);
  });

  it('answers a failed pwrite with its negative errno', async () => {
    const file = tempFile(8192);
    const fd = fs.openSync(file, 'r'); // read-only descriptor: pwrite says EBADF
    expect(await lane().submit(fd, 0, Buffer.alloc(4096))).toBe(-9);
    fs.closeSync(fd);
  });

  it('hands back what a dead worker had not finished (LANE_LOST) and refuses new work', async () => {
    const file = tempFile(1 << 20);
    const fd = fs.openSync(file, 'r+');
    const l = lane();
    expect(await l.submit(fd, 0, Buffer.alloc(4096, 1))).toBe(4096); // worker up
    const pending = Array.from({ length: SLOTS }, (_, i) => l.submit(fd, i * 4096, Buffer.alloc(4096, 2))!);
    await l.terminate();
    const results = await Promise.all(pending);
    for (const r of results) expect(r === 4096 || Number.isNaN(r)).toBe(true);
    expect(Number.isNaN(LANE_LOST)).toBe(true);
    expect(l.working).toBe(false);
    expect(l.submit(fd, 0, Buffer.alloc(512))).toBeNull();
    expect(l.pending).toBe(0);
    fs.closeSync(fd);
  });
});

describe('FileStore through the write lane', () => {
  it('small writes go through the lane, large ones through the pool, and both read back', async () => {
    const store = await FileStore.open({ path: tempFile(8 << 20) });
    const small = crypto.randomBytes(4096);
    const large = crypto.randomBytes(SLOT_BYTES * 3);
    const before = writeLane().pending;
    // Not on a page boundary, so not an inline write (./inline-write.test.ts): the lane's.
    const p = store.write(8192 + 512, small);
    expect(writeLane().pending).toBe(before + 1); // taken by the lane, synchronously
    await p;
    await store.write(1 << 20, large);
    expect(store.writePaths).toEqual({ inline: 0, lane: 1, pool: 1 });
    expect((await store.read(8192 + 512, 4096)).equals(small)).toBe(true);
    expect((await store.read(1 << 20, large.length)).equals(large)).toBe(true);
    await store.close();
  });

  it('close() waits for lane writes still in flight, so the worker never writes into a closed (reused) fd', async () => {
    const file = tempFile(4 << 20);
    const store = await FileStore.open({ path: file });
    const data = crypto.randomBytes(4096);
    const writes = Array.from({ length: 32 }, (_, i) => store.write(i * 4096, data));
    const closed = store.close();
    await Promise.all(writes);
    await closed;
    const back = fs.readFileSync(file);
    for (let i = 0; i < 32; i++) expect(back.subarray(i * 4096, (i + 1) * 4096).equals(data)).toBe(true);
  });

  it('XCOPYD_WRITE_LANE=0 keeps every write on the thread pool', async () => {
    process.env.XCOPYD_WRITE_LANE = '0';
    try {
      const store = await FileStore.open({ path: tempFile(1 << 20) });
      const before = writeLane().pending;
      const p = store.write(512, Buffer.alloc(4096, 3));
      expect(writeLane().pending).toBe(before);
      await p;
      expect(store.writePaths).toEqual({ inline: 0, lane: 0, pool: 1 });
      expect((await store.read(512, 4096)).equals(Buffer.alloc(4096, 3))).toBe(true);
      await store.close();
    } finally {
      delete process.env.XCOPYD_WRITE_LANE;
    }
  });
});

afterAll(async () => {
  await writeLane().close();
});
