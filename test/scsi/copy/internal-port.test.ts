/**
 * The copy engine's internal port (issue 14): every byte a copy writes -
 * EXTENDED COPY segments, PAD zeros, WRITE USING TOKEN steps - goes through
 * the destination LU's one mutation path (range lock, write guard, store),
 * and every step is admitted like host I/O (access, reservations) on both
 * sides, by one rule for EXTENDED COPY and WRITE USING TOKEN.
 */
import { ScsiStatus } from '../../../scsi/types';
import { ScsiDevice } from '../../../scsi/scsi-device';
import { MemoryStore, silentLogger, task, nexus as makeNexus, dataOf } from '../helpers';
import { BS, b2b, e4, identityWith, lid1, pattern, xcopyCdb } from './helpers';
import { testRodTokens } from '../../support/rod-tokens';
import { populateTokenCdb, ptParams, rrtiCdb, writeUsingTokenCdb, wutParams } from '../../odx/odx';

const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

function cawCdb(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x89;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c[13] = blocks;
  return c;
}

/** PERSISTENT RESERVE OUT: REGISTER `key` then RESERVE with `type` (1 Write Exclusive, 3 Exclusive Access). */
async function reserve(device: ScsiDevice, lun: number, who: ReturnType<typeof makeNexus>, key: bigint, type: number): Promise<void> {
  const cdb = (sa: number) => {
    const c = Buffer.alloc(10);
    c[0] = 0x5f;
    c[1] = sa;
    c[2] = type;
    c.writeUInt32BE(24, 5);
    return c;
  };
  const reg = Buffer.alloc(24);
  reg.writeBigUInt64BE(key, 8);
  expect((await device.execute(task(cdb(0x00), { lun, nexus: who, dataOut: reg }))).status).toBe(ScsiStatus.GOOD);
  const res = Buffer.alloc(24);
  res.writeBigUInt64BE(key, 0);
  expect((await device.execute(task(cdb(0x01), { lun, nexus: who, dataOut: res }))).status).toBe(ScsiStatus.GOOD);
}

describe('PAD zeros go through the destination range lock', () => {
  it('a COMPARE AND WRITE racing the PAD of an EXTENDED COPY never leaves a torn block', async () => {
    const stores = [new MemoryStore(1024 * 512, 512), new MemoryStore(1024 * 512, 4096)];
    const device = new ScsiDevice({ logger: silentLogger, luns: stores.map((store, i) => ({ lun: i, store, identity: identityWith(i) })) });
    const dst = device.logicalUnit(1)!;
    const src = pattern(3 * 512, 7);
    src.copy(stores[0].data, 0);
    stores[1].data.fill(0x55, 20 * 4096, 21 * 4096);
    // The ATS (C&W) an ESXi host sends for block 20, comparing what the block holds once
    // the copied bytes are in and before the PAD zeros are: it is started from the write
    // guard of the PAD, i.e. right before the zeros land.
    const seen = Buffer.concat([src, Buffer.alloc(4096 - src.length, 0x55)]);
    const mine = Buffer.alloc(4096, 0xaa);
    let caw: Promise<{ status: number }> | undefined;
    dst.addWriteGuard(async (_lu, offset, length) => {
      if (caw || offset !== 20 * 4096 + src.length) return;
      caw = device.execute(task(cawCdb(20, 1), { lun: 1, dataOut: Buffer.concat([seen, mine]) }));
      await Promise.race([caw, ticks(50)]);
      expect(length).toBe(4096 - src.length);
    });
    const p = lid1([e4(identityWith(0).naa), e4(identityWith(1).naa, { blockLength: 4096, pad: true })], [b2b(0, 1, 3, 0, 20)]);
    expect((await device.execute(task(xcopyCdb(0, p.length), { dataOut: p }))).status).toBe(ScsiStatus.GOOD);
    expect(caw).toBeDefined();
    const r = await caw!;
    const block = stores[1].data.subarray(20 * 4096, 21 * 4096);
    if (r.status === ScsiStatus.GOOD) {
      // The C&W went first and wrote its whole block; the PAD then... must not have cut into it.
      expect(block.equals(mine)).toBe(true);
    } else {
      // The PAD went first (it held the block): the C&W miscompared and changed nothing.
      expect(r.status).toBe(ScsiStatus.CHECK_CONDITION);
      expect(block.equals(Buffer.concat([src, Buffer.alloc(4096 - src.length)]))).toBe(true);
    }
  });
});

describe('one access rule per step for EXTENDED COPY and WRITE USING TOKEN', () => {
  const BLOCKS = 4096;

  function setup() {
    const stores = [new MemoryStore(BLOCKS * BS), new MemoryStore(BLOCKS * BS)];
    const device = new ScsiDevice({ logger: silentLogger, rodTokens: testRodTokens(), luns: stores.map((store, i) => ({ lun: i, store, identity: identityWith(i) })) });
    pattern(BLOCKS * BS, 3).copy(stores[0].data);
    const me = makeNexus();
    const other = makeNexus();
    return { stores, device, me, other };
  }

  /** After the first step has written, another initiator takes a reservation on `lun`. */
  function reserveAfterFirstStep(device: ScsiDevice, lun: number, other: ReturnType<typeof makeNexus>, type: number) {
    let steps = 0;
    device.logicalUnit(1)!.addWriteGuard(async () => {
      if (steps++ === 0) await reserve(device, lun, other, 0xabcn, type);
    });
    return () => steps;
  }

  async function xcopyTwoSegments(device: ScsiDevice, me: ReturnType<typeof makeNexus>) {
    const p = lid1([e4(identityWith(0).naa), e4(identityWith(1).naa)], [b2b(0, 1, 64, 0, 0), b2b(0, 1, 64, 64, 64)]);
    return device.execute(task(xcopyCdb(0, p.length), { nexus: me, dataOut: p }));
  }

  async function wutTwoRanges(device: ScsiDevice, me: ReturnType<typeof makeNexus>) {
    const pt = ptParams([[0, 128]]);
    expect((await device.execute(task(populateTokenCdb(1, pt.length), { nexus: me, dataOut: pt }))).status).toBe(ScsiStatus.GOOD);
    const token = dataOf(await device.execute(task(rrtiCdb(1), { nexus: me }))).subarray(38, 38 + 512);
    const w = wutParams(token, [[0, 64], [64, 64]]);
    return device.execute(task(writeUsingTokenCdb(2, w.length), { lun: 1, nexus: me, dataOut: w }));
  }

  it('WRITE USING TOKEN whose source another initiator has reserved (Exclusive Access) before it starts -> RESERVATION CONFLICT, as EXTENDED COPY (not 4/44/00)', async () => {
    const { stores, device, me, other } = setup();
    const pt = ptParams([[0, 128]]);
    expect((await device.execute(task(populateTokenCdb(1, pt.length), { nexus: me, dataOut: pt }))).status).toBe(ScsiStatus.GOOD);
    const token = dataOf(await device.execute(task(rrtiCdb(1), { nexus: me }))).subarray(38, 38 + 512);
    await reserve(device, 0, other, 0xabcn, 0x03);
    const w = wutParams(token, [[0, 128]]);
    const r = await device.execute(task(writeUsingTokenCdb(2, w.length), { lun: 1, nexus: me, dataOut: w }));
    expect(r.status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect(stores[1].data.subarray(0, 128 * BS).every((x) => x === 0)).toBe(true);
    const p = lid1([e4(identityWith(0).naa), e4(identityWith(1).naa)], [b2b(0, 1, 64, 0, 0)]);
    expect((await device.execute(task(xcopyCdb(0, p.length), { nexus: me, dataOut: p }))).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    await device.close();
  });

  for (const [name, run] of [['EXTENDED COPY', xcopyTwoSegments], ['WRITE USING TOKEN', wutTwoRanges]] as const) {
    it(`${name}: a destination reserved by another initiator after the first step -> RESERVATION CONFLICT, the second step not written`, async () => {
      const { stores, device, me, other } = setup();
      const steps = reserveAfterFirstStep(device, 1, other, 0x01);
      const r = await run(device, me);
      expect(r.status).toBe(ScsiStatus.RESERVATION_CONFLICT);
      expect(steps()).toBe(1);
      expect(stores[1].data.subarray(0, 64 * BS).equals(stores[0].data.subarray(0, 64 * BS))).toBe(true);
      expect(stores[1].data.subarray(64 * BS, 128 * BS).every((x) => x === 0)).toBe(true);
      await device.close();
    });

    it(`${name}: a source reserved (Exclusive Access) by another initiator after the first step -> RESERVATION CONFLICT, the second step not read`, async () => {
      const { stores, device, me, other } = setup();
      const steps = reserveAfterFirstStep(device, 0, other, 0x03);
      const r = await run(device, me);
      expect(r.status).toBe(ScsiStatus.RESERVATION_CONFLICT);
      expect(steps()).toBe(1);
      expect(stores[1].data.subarray(64 * BS, 128 * BS).every((x) => x === 0)).toBe(true);
      await device.close();
    });
  }
});

describe('one data mover: the kernel path for overlapping copies within one file', () => {
  it('an EXTENDED COPY within one file, ranges 4 MiB apart (< one 64 MiB step), is offloaded or cloned, not buffered, and moves like memmove', async () => {
    const fs = await import('node:fs/promises');
    const os = await import('node:os');
    const path = await import('node:path');
    const { FileStore } = await import('../../../src/backing/file-store');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'xcopyd-port-'));
    const store = await FileStore.open({ path: path.join(dir, 'lu0.img'), sizeBytes: 64 * 1024 * 1024 });
    const moved = { offloaded: 0, cloned: 0, buffered: 0 };
    store.onCopied = (r) => {
      moved.offloaded += r.offloaded;
      moved.cloned += r.cloned;
      moved.buffered += r.buffered;
    };
    const device = new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store, identity: identityWith(0) }] });
    try {
      const MiB = 1024 * 1024;
      const data = pattern(16 * MiB, 11);
      await store.write(0, data);
      // 16 MiB from LBA 0 to 4 MiB up (destination above the source), then back down.
      const up = lid1([], [b2b(0xffff, 0xffff, 0x8000, 0, (4 * MiB) / BS)]);
      expect((await device.execute(task(xcopyCdb(0, up.length), { dataOut: up }))).status).toBe(ScsiStatus.GOOD);
      expect((await store.read(4 * MiB, 16 * MiB)).equals(data)).toBe(true);
      const down = lid1([], [b2b(0xffff, 0xffff, 0x8000, (4 * MiB) / BS, (2 * MiB) / BS)]);
      expect((await device.execute(task(xcopyCdb(0, down.length), { dataOut: down }))).status).toBe(ScsiStatus.GOOD);
      expect((await store.read(2 * MiB, 16 * MiB)).equals(data)).toBe(true);
      expect(moved.buffered).toBe(0);
      expect(moved.offloaded + moved.cloned).toBe(32 * MiB);
    } finally {
      await device.close();
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
