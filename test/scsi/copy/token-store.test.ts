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

describe('RodTokenStore.resolve (issue 12: no HMAC for a live token presented as issued)', () => {
  it('a live token presented byte for byte is resolved without computing its MAC; one byte off still gets the full checks (TOKEN_CORRUPT); new tokens have fresh random bytes', async () => {
    const s = setup();
    const tokens: Awaited<ReturnType<typeof token>>[] = [];
    for (let i = 0; i < 200; i++) tokens.push(await token(s)); // 200 x 32 random bytes: past one 4 KiB draw
    const randoms = new Set(tokens.map((t) => t.bytes.subarray(448, 480).toString('hex')));
    expect(randoms.size).toBe(200);
    expect(randoms.has('00'.repeat(32))).toBe(false);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const crypto = require('node:crypto');
    const hmac = jest.spyOn(crypto, 'createHmac');
    try {
      for (const t of tokens.slice(0, 50)) expect(s.store.resolve(Buffer.from(t.bytes))).toBe(t);
      expect(hmac).not.toHaveBeenCalled();
      const bad = Buffer.from(tokens[7].bytes);
      bad[300] ^= 1; // inside the sealed body: the MAC no longer matches
      expect(() => s.store.resolve(bad)).toThrow(expect.objectContaining({ reason: 'TOKEN_CORRUPT' }));
      expect(hmac).toHaveBeenCalledTimes(1);
      // an invalidated token is not live: full checks, then its reason
      s.store.invalidate(tokens[9], 'deleted');
      expect(() => s.store.resolve(Buffer.from(tokens[9].bytes))).toThrow(expect.objectContaining({ reason: 'TOKEN_DELETED' }));
    } finally {
      hmac.mockRestore();
    }
    await s.store.close();
  });
});
