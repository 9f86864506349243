/** The one mutation path (scsi/mutation.ts): lock, check, guard, store, error map, durability. */
import { LogicalUnit } from '../../scsi/logical-unit';
import { SenseError } from '../../scsi/sense';
import { identity, MemoryStore } from './helpers';

const BS = 512;

function unit(store = new MemoryStore(64 * BS), writeCacheEnabled = true): LogicalUnit {
  return new LogicalUnit({ lun: 0, store, identity: identity(), writeCacheEnabled });
}

/** A store without FUA, so durability shows as flushes. */
class NoFuaStore extends MemoryStore {
  override readonly supportsFua: boolean = false;
}

describe('LogicalUnit.mutate', () => {
  it('holds the whole blocks the bytes touch until release; an overlapping mutation waits', async () => {
    const lu = unit();
    const a = await lu.mutate(BS + 10, 20); // inside block 1
    expect(lu.writeLock.size).toBe(1);
    let bStarted = false;
    const b = lu.mutate(BS + 400, 2).then((m) => ((bStarted = true), m)); // same block, other bytes
    const c = await lu.mutate(2 * BS, BS); // block 2: does not wait
    c.release();
    await new Promise((r) => setImmediate(r));
    expect(bStarted).toBe(false);
    a.release();
    a.release(); // idempotent
    (await b).release();
    expect(bStarted).toBe(true);
    expect(lu.writeLock.size).toBe(0);
  });

  it('runs the write guard on the exact bytes before they change, for every kind of change', async () => {
    const store = new MemoryStore(64 * BS);
    const lu = unit(store);
    store.data.fill(0xaa);
    const seen: Array<[number, number, number]> = [];
    lu.addWriteGuard(async (_lu, offset, length) => {
      seen.push([offset, length, store.data[offset]]); // the old byte is still there
    });
    const m = await lu.mutate(0, 8 * BS, 'deferred');
    try {
      await m.write(0, Buffer.alloc(BS, 1));
      await m.writeZeros(BS, 100);
      await m.deallocate(2 * BS, BS);
      await m.move(3 * BS, BS, async (s) => s.write(3 * BS, Buffer.alloc(BS, 3)));
    } finally {
      m.release();
    }
    expect(seen).toEqual([[0, BS, 0xaa], [BS, 100, 0xaa], [2 * BS, BS, 0xaa], [3 * BS, BS, 0xaa]]);
    expect(store.data[BS + 99]).toBe(0);
    expect(store.data[BS + 100]).toBe(0xaa);
    expect(store.data[3 * BS]).toBe(3);
  });

  it('check runs once the range is held; a refusal releases it and nothing changes', async () => {
    const store = new MemoryStore(64 * BS);
    const lu = unit(store);
    await expect(lu.mutate(0, BS, 'auto', () => {
      expect(lu.writeLock.size).toBe(1);
      throw new SenseError('WRITE_PROTECTED');
    })).rejects.toThrow(SenseError);
    expect(lu.writeLock.size).toBe(0);
    expect(store.writes).toBe(0);
  });

  it('store failures become sense: ENOSPC -> SPACE ALLOCATION FAILED, EIO -> WRITE ERROR; others unchanged', async () => {
    const store = new MemoryStore(64 * BS);
    const lu = unit(store);
    const m = await lu.mutate(0, 4 * BS);
    try {
      store.failNext = 'ENOSPC';
      await expect(m.write(0, Buffer.alloc(BS))).rejects.toMatchObject({ reason: 'SPACE_ALLOCATION_FAILED_WRITE_PROTECT' });
      store.failNext = 'EIO';
      await expect(m.writeZeros(0, BS)).rejects.toMatchObject({ reason: 'WRITE_ERROR' });
      const odd = new Error('odd');
      await expect(m.move(0, BS, () => Promise.reject(odd))).rejects.toBe(odd);
    } finally {
      m.release();
    }
  });

  it.each([
    ['auto, WCE=1: cached, no flush', 'auto', true, 0],
    ['auto, WCE=0: write-through, one flush at commit', 'auto', false, 1],
    ['fua, WCE=1: one flush at commit', 'fua', true, 1],
    ['deferred, WCE=0: nothing until syncIfWriteThrough', 'deferred', false, 0],
  ] as const)('durability %s (store without FUA)', async (_name, durability, wce, flushes) => {
    const store = new NoFuaStore(64 * BS);
    const lu = unit(store, wce);
    const m = await lu.mutate(0, 4 * BS, durability);
    try {
      await m.write(0, Buffer.alloc(BS, 1));
      await m.writeZeros(BS, BS);
      await m.deallocate(2 * BS, BS);
      await m.commit();
    } finally {
      m.release();
    }
    expect(store.flushes).toBe(flushes);
  });

  it('with a FUA store, a durable write goes with FUA and commit has nothing to flush', async () => {
    const store = new MemoryStore(64 * BS);
    const lu = unit(store, false);
    await lu.writeBlocks(0n, Buffer.alloc(BS, 1), false);
    expect(store.fuaWrites).toBe(1);
    expect(store.flushes).toBe(0);
    await lu.syncIfWriteThrough();
    expect(store.flushes).toBe(1);
  });
});
