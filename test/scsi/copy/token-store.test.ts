/**
 * RodTokenStore copy on write under concurrency (issue 5 "Point in time"), on
 * a LogicalUnit over memory stores, with side files whose creation and reads
 * can be held:
 *  - writers that save to a fresh token at the same time share one side file
 *    (the Linux initiator's 1 MiB O_DIRECT writes arrive as several WRITEs at
 *    once: each made its own side file, the last one won, and what the others
 *    had saved was lost — the token then delivered the new bytes);
 *  - a WRITE USING TOKEN that is reading an earlier piece while a writer
 *    saves and overwrites a later one still delivers the later piece's old
 *    bytes (the saved/live choice is made per piece, right before it is read).
 */
import { randomBytes } from 'node:crypto';
import { LogicalUnit } from '../../../scsi/logical-unit';
import { RodType } from '../../../scsi/copy/rod-token';
import { RodTokenStore, type SideFileFactory } from '../../../scsi/copy/token-store';
import { MemoryStore, silentLogger } from '../helpers';
import { BS, PacedStore, identityWith, pattern } from './helpers';

const N = 256; // blocks of the token
const BYTES = N * BS;

function setup(o: { sideDelayMs?: number } = {}) {
  const src = new MemoryStore(4 * BYTES);
  const lu = new LogicalUnit({ lun: 0, store: src, identity: identityWith(1) });
  const sides: PacedStore[] = [];
  const sideFiles: SideFileFactory = async ({ bytes, blockSize }) => {
    if (o.sideDelayMs) await new Promise((r) => setTimeout(r, o.sideDelayMs));
    const store = new PacedStore(bytes, blockSize);
    sides.push(store);
    return { store, remove: async () => undefined };
  };
  const store = new RodTokenStore({ logger: silentLogger, secret: randomBytes(32), sideFiles });
  return { src, lu, sides, store };
}

async function token(s: ReturnType<typeof setup>) {
  return s.store.create({ lu: s.lu, ranges: [{ lba: 0n, blocks: N }], rodType: RodType.PIT_DEFAULT, inactivityS: 60, targetName: 'iqn.2026-11.org.xcopyd:test' });
}

describe('RodTokenStore copy on write under concurrency', () => {
  it('8 writers saving to a fresh token at once share one side file, and the token keeps every old byte', async () => {
    const s = setup({ sideDelayMs: 5 });
    const old = pattern(BYTES, 3);
    await s.src.write(0, old);
    const t = await token(s);
    expect(t.mode).toBe('cow');
    const K = 8;
    const n = BYTES / K;
    await Promise.all(Array.from({ length: K }, (_, i) => s.lu.writeBlocks(BigInt((i * n) / BS), Buffer.alloc(n, 0xee), false)));
    expect(s.sides).toHaveLength(1);
    expect(s.src.data.subarray(0, BYTES).equals(Buffer.alloc(BYTES, 0xee))).toBe(true); // the source did change
    const dst = new MemoryStore(BYTES);
    await s.store.readInto(t, dst, 0, 0, BYTES);
    expect(dst.data.equals(old)).toBe(true);
    expect(s.store.spaceUsed).toBe(BYTES);
  });

  it('a write that saves and overwrites a later piece while a read is still on an earlier one: the read delivers the old bytes', async () => {
    const s = setup();
    const old = pattern(BYTES, 4);
    await s.src.write(0, old);
    const t = await token(s);
    const half = BYTES / 2;
    // first half saved (and overwritten) before the read starts
    await s.lu.writeBlocks(0n, Buffer.alloc(half, 0x11), false);
    expect(s.sides).toHaveLength(1);
    const side = s.sides[0];
    side.stepBytes = 4096;
    side.paused = true; // the read of the saved first half (side file -> destination) waits
    const dst = new MemoryStore(BYTES);
    const reading = s.store.readInto(t, dst, 0, 0, BYTES);
    await new Promise((r) => setImmediate(r));
    expect(side.active).toBe(1); // the read is in the first half
    // now the second half is saved and overwritten: nothing reads it live yet, so the write goes ahead
    await s.lu.writeBlocks(BigInt(half / BS), Buffer.alloc(half, 0x22), false);
    expect(s.src.data.subarray(half, BYTES).equals(Buffer.alloc(half, 0x22))).toBe(true);
    side.resume();
    await reading;
    expect(dst.data.subarray(0, half).equals(old.subarray(0, half))).toBe(true);
    expect(dst.data.subarray(half).equals(old.subarray(half))).toBe(true);
  });
});
