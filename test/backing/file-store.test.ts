import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../src/backing/file-store';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

describe('FileStore', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'xcopyd-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates a missing file sparse, with the given size', async () => {
    const path = join(dir, 'lun0.img');
    const s = await FileStore.open({ path, sizeBytes: 64 * 1024 * 1024, blockSize: 512, physicalBlockSize: 4096 });
    try {
      expect(s.sizeBytes).toBe(64 * 1024 * 1024);
      expect(s.blockSize).toBe(512);
      expect(s.physicalBlockSize).toBe(4096);
      expect(s.thinProvisioned).toBe(true);
      const st = statSync(path);
      expect(st.size).toBe(64 * 1024 * 1024);
      expect(st.blocks * 512).toBeLessThan(1024 * 1024); // sparse
      expect((await s.read(4096, 4096)).every((b) => b === 0)).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('writes and reads back, FUA included, and keeps data across reopen', async () => {
    const path = join(dir, 'lun1.img');
    const s = await FileStore.open({ path, sizeBytes: 1024 * 1024 });
    const data = Buffer.alloc(8192);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    await s.write(512 * 7, data, { fua: true });
    expect((await s.read(512 * 7, 8192)).equals(data)).toBe(true);
    await s.close();
    const again = await FileStore.open({ path });
    expect((await again.read(512 * 7, 8192)).equals(data)).toBe(true);
    await again.close();
  });

  it('refuses to create without a size, and rejects a bad block size', async () => {
    await expect(FileStore.open({ path: join(dir, 'none.img') })).rejects.toThrow(/does not exist/);
    await expect(FileStore.open({ path: join(dir, 'x.img'), sizeBytes: 4096, blockSize: 1000 })).rejects.toThrow(/block size/);
  });

  it('read-only: write rejects with EROFS and no hole punching is offered', async () => {
    const path = join(dir, 'ro.img');
    writeFileSync(path, Buffer.alloc(8192, 1));
    const s = await FileStore.open({ path, readOnly: true });
    expect(s.readOnly).toBe(true);
    expect(s.canPunchHole).toBe(false);
    await expect(s.write(0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'EROFS' });
    await s.close();
  });

  const linux = process.platform === 'linux' ? it : it.skip;
  linux('punches holes and finds data/holes with SEEK_DATA/SEEK_HOLE', async () => {
    const path = join(dir, 'thin.img');
    const s = await FileStore.open({ path, sizeBytes: 16 * 1024 * 1024 });
    try {
      expect(s.canPunchHole).toBe(true);
      expect(s.canSeekData).toBe(true);
      const mib = 1024 * 1024;
      await s.write(4 * mib, Buffer.alloc(2 * mib, 0xaa));
      await s.flush();
      expect(await s.seekData(0)).toBe(4 * mib);
      expect(await s.seekHole(4 * mib)).toBe(6 * mib);
      await s.punchHole(4 * mib, mib);
      expect((await s.read(4 * mib, 4096)).every((b) => b === 0)).toBe(true);
      expect((await s.read(5 * mib, 4096)).every((b) => b === 0xaa)).toBe(true);
      expect(await s.seekData(4 * mib)).toBe(5 * mib);
      expect(await s.seekData(6 * mib)).toBe(16 * mib); // ENXIO: no data after -> end
    } finally {
      await s.close();
    }
  });
});

describe('page-cache fast path (RWF_NOWAIT)', () => {
  it('reads what was written, cached or not, in every size up to and past the fast-path limit', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-nowait-'));
    const store = await FileStore.open({ path: path.join(dir, 'lu.img'), sizeBytes: 8 * 1024 * 1024 });
    try {
      const data = crypto.randomBytes(1024 * 1024);
      await store.write(4096, data);
      for (const len of [512, 4096, 65536, 256 * 1024, 256 * 1024 + 512, 1024 * 1024]) {
        const got = await store.read(4096, len);
        expect(got.equals(data.subarray(0, len))).toBe(true);
      }
      // A hole reads as zeros through the fast path too.
      expect((await store.read(4 * 1024 * 1024, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
