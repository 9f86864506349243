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
