/**
 * Windows' 4 s budget (issue 11 point 3), on memory stores whose copies run
 * at a known pace: the deadline bounds every step of a foreground WRITE USING
 * TOKEN, the first one too, and a foreground POPULATE TOKEN ends by it with a
 * whole token whose image not yet taken is kept by copy on write.
 */
import { ScsiStatus } from '../../../scsi/types';
import { ScsiDevice } from '../../../scsi/scsi-device';
import type { BackingStore, CopyRangeOptions, CopyRangeResult } from '../../../scsi/backing-store';
import type { SideFileFactory } from '../../../scsi/copy/token-store';
import { MemoryStore, silentLogger, task, dataOf, senseOf } from '../helpers';
import { BS, identityWith, pattern } from './helpers';
import { testRodTokens } from '../../support/rod-tokens';
import { populateTokenCdb, ptParams, rrtiCdb, writeUsingTokenCdb, wutParams, writeSame16Cdb } from '../../odx/odx';

const MiB = 1024 * 1024;

/** A store whose copyRange moves 128 KiB per timer tick (a millisecond or more), like a slow disk. */
class SlowStore extends MemoryStore {
  copied: number[] = [];
  constructor(bytes: number, readonly canCloneRanges = false) {
    super(bytes);
    (this as { canClone: boolean }).canClone = canCloneRanges;
  }

  async copyRange(dst: BackingStore, srcOffset: number, dstOffset: number, length: number, o: CopyRangeOptions = {}): Promise<CopyRangeResult> {
    this.copied.push(length);
    for (let done = 0; done < length; ) {
      const n = Math.min(128 * 1024, length - done);
      await new Promise((r) => setTimeout(r, 1));
      await dst.write(dstOffset + done, await this.read(srcOffset + done, n));
      done += n;
      o.onProgress?.(done);
    }
    return { bytes: length, cloned: this.canCloneRanges ? length : 0, offloaded: this.canCloneRanges ? 0 : length, buffered: 0, holes: 0 };
  }
}

function setup(o: { clone?: boolean; deadlineMs?: number } = {}) {
  const BYTES = 32 * MiB;
  const slow = new SlowStore(2 * BYTES, o.clone);
  const stores = [slow, new MemoryStore(2 * BYTES)];
  const sides: SlowStore[] = [];
  const sideFiles: SideFileFactory = async ({ bytes }) => {
    const store = new SlowStore(bytes, o.clone);
    sides.push(store);
    return { store, remove: async () => undefined };
  };
  const rodTokens = testRodTokens({ wutDeadlineMs: o.deadlineMs ?? 300, sideFiles });
  const device = new ScsiDevice({ logger: silentLogger, rodTokens, luns: stores.map((store, i) => ({ lun: i, store, identity: identityWith(i) })) });
  const source = pattern(BYTES, 5);
  source.copy(stores[0].data, 0);
  const run = (cdb: Buffer, lun: number, dataOut?: Buffer) => device.execute(task(cdb, { lun, dataOut, edtl: dataOut?.length ?? 4096 }));
  return { BYTES, stores, slow, sides, device, rodTokens, source, run };
}

async function tokenOf(s: ReturnType<typeof setup>, listId: number, blocks: number) {
  const pt = ptParams([[0, blocks]]);
  const r = await s.run(populateTokenCdb(listId, pt.length), 0, pt);
  const info = dataOf(await s.run(rrtiCdb(listId), 0));
  return { status: r.status, token: info.subarray(38, 38 + 512) };
}

describe('the deadline bounds every step of a foreground WRITE USING TOKEN (issue 11 point 3)', () => {
  it('a 32 MiB WUT on slow storage (128 KiB per timer tick) with a 300 ms deadline ends partial (A/0D/04, INFORMATION > 0) after a first step of at most 1 MiB; WUTs with OFFSET INTO ROD copy the rest', async () => {
    const s = setup();
    const blocks = s.BYTES / BS;
    const { token } = await tokenOf(s, 1, blocks);
    s.slow.copied = [];
    let done = 0;
    const rounds: number[] = [];
    for (let i = 0; done < blocks; i++) {
      if (i >= 40) throw new Error(`not done: ${done}/${blocks}`);
      const w = wutParams(token, [[done, blocks - done]], { offset: done });
      const r = await s.run(writeUsingTokenCdb(10 + i, w.length), 1, w);
      if (r.status === ScsiStatus.GOOD) {
        rounds.push(blocks - done);
        done = blocks;
      } else {
        const sense = senseOf(r);
        expect([sense.key, sense.asc, sense.ascq]).toEqual([0xa, 0x0d, 0x04]);
        expect(sense.information).toBeGreaterThan(0);
        rounds.push(sense.information);
        done += sense.information;
      }
    }
    expect(rounds[0]).toBeLessThan(blocks); // the first WUT did not run one whole step of all 32 MiB
    expect(s.slow.copied[0]).toBeLessThanOrEqual(MiB); // its first step was the small probe
    expect(Math.max(...s.slow.copied)).toBeLessThan(32 * MiB);
    expect(s.stores[1].data.subarray(0, s.BYTES).equals(s.source)).toBe(true);
    await s.device.close();
  }, 60_000);

  it('a foreground WUT after another on the same LU starts from the rate the first measured (issue 12): 2 MiB in one step; the first one probed with 1 MiB', async () => {
    const s = setup({ deadlineMs: 3000 });
    const blocks = (2 * MiB) / BS;
    const { token } = await tokenOf(s, 1, blocks);
    for (const [i, steps] of [[0, [MiB, MiB]], [1, [2 * MiB]], [2, [2 * MiB]]] as const) {
      s.slow.copied = [];
      const w = wutParams(token, [[i * blocks, blocks]], { offset: 0 });
      expect((await s.run(writeUsingTokenCdb(20 + i, w.length), 1, w)).status).toBe(ScsiStatus.GOOD);
      expect(s.slow.copied).toEqual(steps);
      expect(s.stores[1].data.subarray(i * 2 * MiB, (i + 1) * 2 * MiB).equals(s.source.subarray(0, 2 * MiB))).toBe(true);
    }
    await s.device.close();
  }, 60_000);

  it('without a deadline (IMMED=1) steps are whole (up to 64 MiB: here all 32 MiB at once)', async () => {
    const s = setup();
    const blocks = s.BYTES / BS;
    const { token } = await tokenOf(s, 1, blocks);
    s.slow.copied = [];
    const w = wutParams(token, [[0, blocks]], { immed: true });
    expect((await s.run(writeUsingTokenCdb(2, w.length), 1, w)).status).toBe(ScsiStatus.GOOD);
    for (let i = 0; i < 400 && s.device.copyManager.running().length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.slow.copied).toEqual([32 * MiB]);
    await s.device.close();
  }, 60_000);
});

describe('a foreground POPULATE TOKEN ends by the deadline (issue 11 point 3)', () => {
  it('cloning a 32 MiB image on slow storage with a 300 ms deadline stops part-way: GOOD, a whole token, the rest kept by copy on write', async () => {
    const s = setup({ clone: true });
    const blocks = s.BYTES / BS;
    const { status, token } = await tokenOf(s, 1, blocks);
    expect(status).toBe(ScsiStatus.GOOD);
    const t = s.rodTokens.tokens()[0];
    expect(t.saved.total).toBeGreaterThan(0);
    expect(t.saved.total).toBeLessThan(s.BYTES); // the image was not taken whole
    expect(t.mode).toBe('cow');
    expect(t.record.pointInTime).toBe('cow'); // the shared record says how the token keeps its point in time
    // the source changes after the PT: the token still delivers the bytes of its point in time
    const ws = writeSame16Cdb(0, 0xffff);
    expect((await s.run(ws, 0, Buffer.alloc(BS, 0xee))).status).toBe(ScsiStatus.GOOD);
    const w = wutParams(token, [[0, blocks]], { immed: true });
    expect((await s.run(writeUsingTokenCdb(2, w.length), 1, w)).status).toBe(ScsiStatus.GOOD);
    for (let i = 0; i < 600 && s.device.copyManager.running().length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.stores[1].data.subarray(0, s.BYTES).equals(s.source)).toBe(true);
    await s.device.close();
  }, 60_000);
});
