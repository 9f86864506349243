/**
 * The `cluster:` section (issue 15): several nodes, one YAML, `--node ID`
 * says which node a process is. Every bad key is reported with its path; a
 * configuration without the section loads exactly as before.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, checkConfigFile, defaultConfig, validateConfig, type ValidateOptions } from '../src/config';

const IQN = 'iqn.2026-11.org.xcopyd:t';
const NAA0 = '600a0de0000000000000000000000001';
const NAA1 = '600a0de0000000000000000000000002';

function doc(over: Record<string, unknown> = {}, lunOver: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cluster: {
      name: 'c1',
      nodes: [
        { id: 'a', portal: '127.0.0.1:3260' },
        { id: 'b', portal: '127.0.0.1:3261' },
      ],
      etcd: { endpoints: ['http://127.0.0.1:2379'] },
    },
    targets: [
      {
        iqn: IQN,
        luns: [
          { lun: 0, path: '/shared/lun0.img', size: '1MiB', naa: NAA0, serial: 'S0', ...lunOver },
          { lun: 1, path: 'rbd:xcopyd/lun1', size: '1MiB', naa: NAA1, serial: 'S1' },
        ],
      },
    ],
    ...over,
  };
}

function issuesOf(d: unknown, o: ValidateOptions = {}): string {
  try {
    validateConfig(d, 'c.yaml', o);
    return '';
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.join('\n');
  }
}

describe('configuration: cluster', () => {
  it('a valid cluster: target port groups default to index + 1, --node picks the node, which listens on its own portal', () => {
    const c = validateConfig(doc(), 'c.yaml', { node: 'b', requireNode: true });
    expect(c.cluster!.nodes).toEqual([
      { id: 'a', portal: '127.0.0.1:3260', targetPortGroup: 1 },
      { id: 'b', portal: '127.0.0.1:3261', targetPortGroup: 2 },
    ]);
    expect(c.cluster!.self).toBe('b');
    expect(c.listen).toEqual(['127.0.0.1:3261']);
    expect(c.cluster!.etcd).toEqual({ endpoints: ['http://127.0.0.1:2379'], leaseTtlSeconds: 5 });
    expect(c.cluster!.ceph).toBeUndefined();
    expect(Object.isFrozen(c.cluster!.nodes[0])).toBe(true);
  });

  it('explicit target port groups and a ceph section with its clientId default', () => {
    const d = doc();
    const cl = d.cluster as Record<string, unknown>;
    cl.nodes = [
      { id: 'a', portal: '127.0.0.1:3260', targetPortGroup: 10 },
      { id: 'b', portal: '127.0.0.1:3261', targetPortGroup: 20 },
    ];
    cl.ceph = { conf: '/etc/ceph/c1.conf' };
    const c = validateConfig(d, 'c.yaml', { node: 'a' });
    expect(c.cluster!.nodes.map((n) => n.targetPortGroup)).toEqual([10, 20]);
    expect(c.cluster!.ceph).toEqual({ conf: '/etc/ceph/c1.conf', clientId: 'admin' });
  });

  it('without --node the file still loads (--check-config), but the daemon needs one', () => {
    expect(validateConfig(doc()).cluster!.self).toBeUndefined();
    expect(issuesOf(doc(), { requireNode: true })).toContain('cluster: which node is this? give --node ID (or XCOPYD_NODE)');
  });

  it('--node must name one of the nodes', () => {
    expect(issuesOf(doc(), { node: 'c', requireNode: true })).toContain('--node c: not one of cluster.nodes (a, b)');
  });

  it('--node without a cluster section is refused', () => {
    const d = doc();
    delete d.cluster;
    d.targets = [{ iqn: IQN, luns: [{ lun: 0, path: 'a', size: '1MiB' }] }];
    expect(issuesOf(d, { node: 'a' })).toContain('--node a: the configuration has no cluster section');
  });

  const bad: Array<[string, (d: Record<string, unknown>) => void, string]> = [
    ['duplicate node id', (d) => ((d.cluster as { nodes: unknown[] }).nodes[1] = { id: 'a', portal: '127.0.0.1:3261' }), 'cluster.nodes.1.id: duplicate node id (also nodes.0)'],
    ['duplicate portal', (d) => ((d.cluster as { nodes: unknown[] }).nodes[1] = { id: 'b', portal: '127.0.0.1:3260' }), 'cluster.nodes.1.portal: duplicate portal (also nodes.0)'],
    [
      'duplicate target port group (an explicit one against a default)',
      (d) => ((d.cluster as { nodes: unknown[] }).nodes[1] = { id: 'b', portal: '127.0.0.1:3261', targetPortGroup: 1 }),
      'cluster.nodes.1.targetPortGroup: duplicate target port group (also nodes.0)',
    ],
    ['bad portal', (d) => ((d.cluster as { nodes: unknown[] }).nodes[0] = { id: 'a', portal: 'nowhere' }), 'cluster.nodes.0.portal'],
    ['bad node id', (d) => ((d.cluster as { nodes: unknown[] }).nodes[0] = { id: 'a/b', portal: '127.0.0.1:3260' }), 'cluster.nodes.0.id'],
    ['no nodes', (d) => ((d.cluster as { nodes: unknown[] }).nodes = []), 'cluster.nodes'],
    ['unknown key in a node', (d) => ((d.cluster as { nodes: unknown[] }).nodes[0] = { id: 'a', portal: '127.0.0.1:3260', colour: 'red' }), 'cluster.nodes.0'],
    ['no etcd endpoints', (d) => ((d.cluster as Record<string, unknown>).etcd = { endpoints: [] }), 'cluster.etcd.endpoints'],
    ['lease TTL of zero', (d) => ((d.cluster as Record<string, unknown>).etcd = { endpoints: ['http://x:1'], leaseTtlSeconds: 0 }), 'cluster.etcd.leaseTtlSeconds'],
    ['etcd endpoint without a scheme', (d) => ((d.cluster as Record<string, unknown>).etcd = { endpoints: ['x:1'] }), 'cluster.etcd.endpoints.0: an etcd endpoint is http(s)://host:port'],
    ['unknown key in ceph', (d) => ((d.cluster as Record<string, unknown>).ceph = { pool: 'x' }), 'cluster.ceph'],
    ['unknown key in cluster', (d) => ((d.cluster as Record<string, unknown>).colour = 'red'), 'cluster: Unrecognized key'],
    ['listen in cluster mode', (d) => (d.listen = ['127.0.0.1:3260']), 'listen: in cluster mode a node listens on its own portal'],
    ['target portals in cluster mode', (d) => ((d.targets as Array<Record<string, unknown>>)[0].portals = ['127.0.0.1:3260']), 'targets.0.portals: in cluster mode'],
    ['target portal group tag in cluster mode', (d) => ((d.targets as Array<Record<string, unknown>>)[0].portalGroupTag = 3), 'targets.0.portalGroupTag: in cluster mode'],
    ['malformed rbd path', (d) => ((d.targets as Array<{ luns: Array<Record<string, unknown>> }>)[0].luns[1].path = 'rbd:justapool'), 'targets.0.luns.1.path: an RBD image is rbd:<pool>/<image>'],
    ['same rbd image twice', (d) => ((d.targets as Array<{ luns: Array<Record<string, unknown>> }>)[0].luns[0].path = 'rbd:xcopyd/lun1'), 'targets.0.luns.1.path: duplicate backing path'],
  ];
  it.each(bad)('%s', (_name, mutate, expected) => {
    const d = doc();
    mutate(d);
    expect(issuesOf(d, { node: 'a' })).toContain(expected);
  });

  it('in cluster mode every LUN gives naa and serial (they cannot be generated per node)', () => {
    const issues = issuesOf(doc({}, { naa: undefined, serial: undefined }), { node: 'a' });
    expect(issues).toContain('targets.0.luns.0.naa: in cluster mode every LUN gives its naa (the same on every node)');
    expect(issues).toContain('targets.0.luns.0.serial: in cluster mode every LUN gives its serial (the same on every node)');
    expect(issues).not.toContain('targets.0.luns.1');
  });

  it('rbd: LUNs outside cluster mode are refused', () => {
    const d = { targets: [{ iqn: IQN, luns: [{ lun: 0, path: 'rbd:pool/img', size: '1MiB' }] }] };
    expect(issuesOf(d)).toContain('targets.0.luns.0.path: an rbd: LUN needs the cluster section');
  });

  it('--check-config does not look for an rbd: image on the filesystem', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-config-'));
    try {
      const file = path.join(dir, 'c.yaml');
      const d = doc();
      (d.targets as Array<{ luns: Array<Record<string, unknown>> }>)[0].luns[0].path = path.join(dir, 'lun0.img');
      (d.targets as Array<{ luns: Array<Record<string, unknown>> }>)[0].luns[1].size = undefined;
      fs.writeFileSync(file, JSON.stringify(d));
      expect(checkConfigFile(file).cluster!.self).toBeUndefined();
      expect(checkConfigFile(file, { node: 'b' }).listen).toEqual(['127.0.0.1:3261']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a configuration without the section has no cluster and keeps its listen', () => {
    const c = defaultConfig();
    expect(c.cluster).toBeUndefined();
    expect(c.listen).toEqual(['127.0.0.1:3260']);
  });
});

describe('xcopyd --check-config with --node / XCOPYD_NODE', () => {
  jest.setTimeout(120_000);
  const { execFile } = require('node:child_process') as typeof import('node:child_process');
  const REPO = path.join(__dirname, '..');
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile(process.execPath, [path.join(REPO, 'bin', 'xcopyd.js'), ...args], { cwd: REPO, env: { ...process.env, XCOPYD_NODE: '', ...env }, timeout: 90_000 }, (e, out, err) =>
        resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }),
      ),
    );

  it('a node the file names is valid; one it does not name is refused with the list; the variable works as the flag', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-config-'));
    try {
      const file = path.join(dir, 'c.yaml');
      const d = doc();
      (d.targets as Array<{ luns: Array<Record<string, unknown>> }>)[0].luns[0].path = path.join(dir, 'lun0.img');
      fs.writeFileSync(file, JSON.stringify(d));
      expect(await run(['--check-config', file, '--node', 'b'])).toMatchObject({ code: 0, out: `${file}: valid\n` });
      const bad = await run(['--check-config', file, '--node', 'zz']);
      expect(bad.code).toBe(1);
      expect(bad.err).toContain('--node zz: not one of cluster.nodes (a, b)');
      const env = await run(['--check-config', file], { XCOPYD_NODE: 'zz' });
      expect(env.err).toContain('--node zz: not one of cluster.nodes (a, b)');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
