/** WatchProgress: waiters resolve when the replica reaches their revision, reject after their bound; withTimeout. */
import { WatchProgress, withTimeout } from '../../src/cluster/etcd-progress';

describe('WatchProgress', () => {
  it('resolves waiters in revision order as the replica advances, never backwards', async () => {
    const p = new WatchProgress();
    const seen: number[] = [];
    const w5 = p.waitFor(5).then(() => seen.push(5));
    const w3 = p.waitFor(3).then(() => seen.push(3));
    p.advance(2);
    await Promise.resolve();
    expect(seen).toEqual([]);
    p.advance(4);
    await w3;
    expect(seen).toEqual([3]);
    p.advance(1);
    expect(p.revision).toBe(4);
    p.advance(9);
    await w5;
    expect(seen).toEqual([3, 5]);
    await expect(p.waitFor(9)).resolves.toBeUndefined();
  });
  it('rejects a waiter after its bound with where the replica is', async () => {
    const p = new WatchProgress();
    p.advance(7);
    await expect(p.waitFor(8, 20)).rejects.toThrow(/revision 7, not 8/);
  });
  it('withTimeout passes a value through and rejects a promise that never settles', async () => {
    await expect(withTimeout(Promise.resolve(1), 50, 'x')).resolves.toBe(1);
    await expect(withTimeout(new Promise(() => undefined), 20, 'op')).rejects.toThrow(/op: no answer from etcd within 20 ms/);
  });
});
