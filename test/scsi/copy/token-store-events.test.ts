/**
 * RodTokenStore.onEvent (issue 6, the token lifecycle metric): one call per
 * lifecycle step of a token — created, used (a live token presented), and
 * exactly one invalidation (expired, deleted, cancelled) — and none for a
 * presentation that fails or a second invalidation of the same token.
 */
import { LogicalUnit } from '../../../scsi/logical-unit';
import { RodType } from '../../../scsi/copy/rod-token';
import type { TokenEvent } from '../../../scsi/copy/token-store';
import { testRodTokens } from '../../support/rod-tokens';
import { SenseError } from '../../../scsi/sense';
import { MemoryStore, silentLogger } from '../helpers';
import { BS, identityWith } from './helpers';

function setup() {
  const lu = new LogicalUnit({ lun: 0, store: new MemoryStore(1024 * BS), identity: identityWith(1) });
  const events: Array<[TokenEvent, string]> = [];
  const store = testRodTokens({ onEvent: (e, t) => events.push([e, t.key]) });
  const create = (inactivityS = 60) =>
    store.create({ lu, ranges: [{ lba: 0n, blocks: 8 }], rodType: RodType.PIT_DEFAULT, inactivityS, targetName: 'iqn.2026-11.org.xcopyd:test' });
  return { lu, store, events, create };
}

function reasonOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return err instanceof SenseError ? err.reason : String(err);
  }
  return undefined;
}

describe('RodTokenStore lifecycle events', () => {
  it('created, used, deleted: one event each; presenting the deleted token is no use', async () => {
    const s = setup();
    const t = await s.create();
    expect(s.store.resolve(t.bytes)).toBe(t);
    expect(s.store.resolve(t.bytes)).toBe(t);
    s.store.invalidate(t, 'deleted');
    s.store.invalidate(t, 'cancelled'); // already gone: nothing
    expect(reasonOf(() => s.store.resolve(t.bytes))).toBe('TOKEN_DELETED');
    expect(s.events).toEqual([['created', t.key], ['used', t.key], ['used', t.key], ['deleted', t.key]]);
    await s.store.close();
  });

  it('expired by the sweep, or when presented after its inactivity timeout; never while in use', async () => {
    const s = setup();
    const swept = await s.create(1);
    const presented = await s.create(1);
    const held = await s.create(1);
    s.store.hold(held);
    s.store.sweep(Date.now() + 5000);
    expect(s.events.filter(([e]) => e === 'expired').map(([, k]) => k)).toEqual([swept.key, presented.key]);
    s.store.release(held);
    held.record.lastUse = Date.now() - 5000; // idle for 5 s
    expect(reasonOf(() => s.store.resolve(held.bytes))).toBe('TOKEN_EXPIRED');
    expect(s.events.filter(([e]) => e === 'expired').map(([, k]) => k)).toEqual([swept.key, presented.key, held.key]);
    expect(s.events.filter(([e]) => e === 'used')).toEqual([]);
    expect(s.store.liveCount).toBe(0);
    await s.store.close();
  });

  it('cancelled for its LU, and by close; the listener can be set and unset later', async () => {
    const s = setup();
    const a = await s.create();
    s.store.cancelFor(s.lu);
    const b = await s.create();
    const late: TokenEvent[] = [];
    s.store.onEvent = (e) => late.push(e);
    await s.store.close();
    expect(s.events).toEqual([['created', a.key], ['cancelled', a.key], ['created', b.key]]);
    expect(late).toEqual(['cancelled']);
    s.store.onEvent = undefined;
    const c = await s.create(); // no listener: nothing is called, nothing fails
    s.store.invalidate(c, 'deleted');
    expect(late).toEqual(['cancelled']);
  });
});

describe('idle tokens as Windows leaves them (issue 11 point 1: no DEL_TKN, 60 s inactivity)', () => {
  it('at the live-token cap a POPULATE TOKEN cancels the least recently used idle token instead of failing; its later use gets TOKEN CANCELLED', async () => {
    const s = setup();
    s.store.maxLiveTokens = 3;
    const a = await s.create();
    const b = await s.create();
    const c = await s.create();
    // a is used (and released) after b and c were made: b is now the least recently used
    s.store.hold(s.store.resolve(a.bytes));
    s.store.release(a);
    a.record.lastUse = Date.now() + 1; // (the same millisecond as b and c otherwise)
    const d = await s.create();
    expect(reasonOf(() => s.store.resolve(b.bytes))).toBe('TOKEN_CANCELLED');
    expect(s.store.liveCount).toBe(3);
    for (const t of [a, c, d]) expect(s.store.resolve(t.bytes)).toBe(t);
    expect(s.events.filter(([e]) => e === 'cancelled')).toEqual([['cancelled', b.key]]);
    await s.store.close();
  });

  it('a token in use is never the one cancelled; when every token is in use, 5/55/0D as before', async () => {
    const s = setup();
    s.store.maxLiveTokens = 2;
    const a = await s.create();
    const b = await s.create();
    s.store.hold(a);
    const c = await s.create(); // b was idle: cancelled
    expect(reasonOf(() => s.store.resolve(b.bytes))).toBe('TOKEN_CANCELLED');
    s.store.hold(c);
    await expect(s.create()).rejects.toMatchObject({ reason: 'INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN' });
    s.store.release(a);
    s.store.release(c);
    await s.store.close();
  });

  it('tombstones stay bounded: the oldest go first, and their late use is still refused (EXPIRED instead of CANCELLED)', async () => {
    const s = setup();
    s.store.maxLiveTokens = 4;
    s.store.maxTombstones = 50;
    const made: Awaited<ReturnType<typeof s.create>>[] = [];
    for (let i = 0; i < 400; i++) made.push(await s.create());
    expect(s.store.liveCount).toBe(4);
    expect(s.store.tombstoneCount).toBe(50);
    expect(reasonOf(() => s.store.resolve(made[0].bytes))).toBe('TOKEN_EXPIRED');
    expect(reasonOf(() => s.store.resolve(made[395].bytes))).toBe('TOKEN_CANCELLED');
    await s.store.close();
  });
});
