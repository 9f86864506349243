/** openEtcdCluster's configuration checks, made before anything connects; an unreachable etcd is a bounded error. */
import pino from 'pino';
import { checkEtcdClusterOptions, openEtcdCluster, type OpenEtcdClusterOptions } from '../../src/cluster/etcd-cluster';
import { freePort } from '../interop/harness';

const ok: OpenEtcdClusterOptions = { endpoints: ['http://127.0.0.1:2379'], cluster: 'c1', nodeId: 'a', nodeIds: ['a', 'b'], leaseTtlSeconds: 5, log: pino({ level: 'silent' }) };

describe('checkEtcdClusterOptions', () => {
  it('accepts a plain configuration', () => {
    expect(() => checkEtcdClusterOptions(ok)).not.toThrow();
  });
  it.each([
    [{ endpoints: [] }, /at least one endpoint/],
    [{ endpoints: ['127.0.0.1:2379'] }, /http\(s\)/],
    [{ nodeId: 'z' }, /not one of the cluster's nodes/],
    [{ nodeIds: ['a', 'a'] }, /distinct/],
    [{ nodeIds: ['a', 'b/c'] }, /etcd key/],
    [{ cluster: '' }, /etcd key/],
    [{ leaseTtlSeconds: 0 }, /leaseTtlSeconds/],
    [{ leaseTtlSeconds: 1.5 }, /leaseTtlSeconds/],
  ] as Array<[Partial<OpenEtcdClusterOptions>, RegExp]>)('refuses %j', (over, msg) => {
    expect(() => checkEtcdClusterOptions({ ...ok, ...over })).toThrow(msg);
  });
  it('openEtcdCluster refuses a bad configuration before connecting', async () => {
    await expect(openEtcdCluster({ ...ok, nodeId: 'z' })).rejects.toThrow(/not one of/);
  });
  it('an etcd nobody answers at is an error within openTimeoutMs', async () => {
    const port = await freePort();
    const t0 = Date.now();
    await expect(openEtcdCluster({ ...ok, endpoints: [`http://127.0.0.1:${port}`], openTimeoutMs: 1_500 })).rejects.toThrow(/cluster 'c1', node 'a': etcd at http:\/\/127\.0\.0\.1:\d+: /);
    expect(Date.now() - t0).toBeLessThan(15_000); // generous safety bound: it does not hang
  }, 20_000);
});
