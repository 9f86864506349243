/** The pure part of cluster membership: states from the configured ids and the keys present. */
import { checkKeySegment, nodeStates, statesDiffer } from '../../src/cluster/membership';

describe('nodeStates', () => {
  it('configured ids in configured order, alive when present; unconfigured present ids after them', () => {
    const s = nodeStates(['b', 'a', 'c'], new Set(['a', 'z', 'c']));
    expect([...s]).toEqual([['b', 'gone'], ['a', 'alive'], ['c', 'alive'], ['z', 'alive']]);
  });
  it('statesDiffer sees a flip and a new id, not an equal map', () => {
    const a = nodeStates(['a', 'b'], new Set(['a']));
    expect(statesDiffer(a, nodeStates(['a', 'b'], new Set(['a'])))).toBe(false);
    expect(statesDiffer(a, nodeStates(['a', 'b'], new Set(['a', 'b'])))).toBe(true);
    expect(statesDiffer(a, nodeStates(['a', 'b'], new Set(['a', 'x'])))).toBe(true);
  });
  it('key segments: no slash, nothing empty', () => {
    expect(checkKeySegment('id', 'node-1.a:b_c')).toBe('node-1.a:b_c');
    expect(() => checkKeySegment('id', 'a/b')).toThrow(/etcd key/);
    expect(() => checkKeySegment('id', '')).toThrow(/etcd key/);
  });
});
