import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ConfigError, DEFAULT_CONFIG_YAML, checkConfigFile, defaultConfig, loadConfigFile, parseConfigText, parseSize, validateConfig,
} from '../src/config';
import { startConfiguredDaemon } from './support/daemon';

const IQN = 'iqn.2026-11.org.xcopyd:t';

/** Every issue `text` raises through what --check-config runs (checkConfigFile), one string. */
function issuesOf(text: string, files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-config-'));
  try {
    for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), body, { mode: 0o600 });
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, text.replace(/DATADIR/g, dir));
    checkConfigFile(file);
    return '';
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.join('\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('configuration', () => {
  it('embedded default matches configs/default.yaml', () => {
    const file = loadConfigFile(path.join(__dirname, '..', 'configs', 'default.yaml'));
    expect(file).toEqual(defaultConfig());
    expect(defaultConfig().targets[0].luns.map((l) => [l.lun, l.size, l.blockSize])).toEqual([
      [0, 1024 ** 3, 512],
      [1, 1024 ** 3, 512],
    ]);
    expect(DEFAULT_CONFIG_YAML).toContain('iqn.2026-11.org.xcopyd:default');
  });

  it('every example in configs/ is valid', () => {
    const dir = path.join(__dirname, '..', 'configs');
    for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
      expect(() => loadConfigFile(path.join(dir, f))).not.toThrow();
    }
  });

  it('reports the path of every bad key', () => {
    const bad = `
listen: ["nohost"]
targets:
  - iqn: not-an-iqn
    chap: { user: u, secret: short }
    luns:
      - { lun: 0, path: a.img, size: 12QB, blockSize: 1000 }
      - { lun: 0, path: b.img, bogus: 1 }
`;
    try {
      parseConfigText(bad, 'bad.yaml');
      throw new Error('accepted');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const issues = (err as ConfigError).issues.join('\n');
      expect(issues).toContain('listen.0');
      expect(issues).toContain('targets.0.iqn');
      expect(issues).toContain('targets.0.chap.secret');
      expect(issues).toContain('targets.0.luns.0.size');
      expect(issues).toContain('targets.0.luns.0.blockSize');
      expect(issues).toContain('targets.0.luns.1');
    }
  });

  it('refuses a mutual secret equal to the initiator secret', () => {
    expect(() =>
      parseConfigText(
        `targets: [{ iqn: "iqn.2026-11.a:b", chap: { user: a, secret: samesecret123, mutual: { user: b, secret: samesecret123 } }, luns: [{ lun: 0, path: x }] }]`,
        't',
      ),
    ).toThrow(/mutual/);
  });

  describe('broken configurations fail --check-config with the path of the bad key', () => {
    const cases: Array<[string, string, string, Record<string, string>?]> = [
      ['unknown key', `targets: [{ iqn: "${IQN}", colour: red, luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0'],
      ['unknown key in a LUN', `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB, bogus: 1 }] }]`, 'targets.0.luns.0'],
      [
        'duplicate IQN',
        `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB }] }, { iqn: "${IQN.toUpperCase().replace('IQN', 'iqn')}", luns: [{ lun: 0, path: b, size: 1MiB }] }]`,
        'targets.1.iqn: duplicate target IQN',
      ],
      [
        'duplicate NAA',
        `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB, naa: "600a0de0000000000000000000000001" }] },
                   { iqn: "${IQN}2", luns: [{ lun: 0, path: b, size: 1MiB, naa: "600A0DE0000000000000000000000001" }] }]`,
        'targets.1.luns.0.naa: duplicate NAA designator (also targets.0.luns.0)',
      ],
      ['LUN id clash', `targets: [{ iqn: "${IQN}", luns: [{ lun: 3, path: a, size: 1MiB }, { lun: 3, path: b, size: 1MiB }] }]`, 'targets.0.luns.1.lun: LUN 3 is configured twice'],
      ['same backing file twice', `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB }, { lun: 1, path: a, size: 1MiB }] }]`, 'targets.0.luns.1.path: duplicate backing path'],
      ['missing backing device', `dataDir: DATADIR\ntargets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: /dev/xcopyd-no-such-disk }] }]`, 'targets.0.luns.0.path: /dev/xcopyd-no-such-disk does not exist'],
      ['missing file without a size', `dataDir: DATADIR\ntargets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: nofile.img }] }]`, 'targets.0.luns.0.path:'],
      ['backing path is a directory', `dataDir: DATADIR\ntargets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: DATADIR }] }]`, 'targets.0.luns.0.path:'],
      ['bad block size', `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB, blockSize: 1024 }] }]`, 'targets.0.luns.0.blockSize'],
      ['bad physical block size', `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB, physicalBlockSize: 3000 }] }]`, 'targets.0.luns.0.physicalBlockSize'],
      ['physical smaller than logical', `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB, blockSize: 4096, physicalBlockSize: 512 }] }]`, 'targets.0.luns.0.physicalBlockSize'],
      ['product ID too long', `targets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB, product: "seventeen chars!!" }] }]`, 'targets.0.luns.0.product'],
      ['ACL maps a LUN the target lacks', `targets: [{ iqn: "${IQN}", acls: [{ initiator: "iqn.2026-11.x:i", luns: [{ lun: 0, targetLun: 7 }] }], luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.acls.0.luns.0: the target has no LUN 7'],
      ['ACL maps one LUN twice', `targets: [{ iqn: "${IQN}", acls: [{ initiator: "iqn.2026-11.x:i", luns: [0, { lun: 0, targetLun: 1 }] }], luns: [{ lun: 0, path: a, size: 1MiB }, { lun: 1, path: b, size: 1MiB }] }]`, 'targets.0.acls.0.luns.1: LUN 0 mapped twice'],
      ['initiator in two ACL entries', `targets: [{ iqn: "${IQN}", acls: [{ initiator: "iqn.2026-11.x:i" }], allowedInitiators: ["iqn.2026-11.x:I"], luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.allowedInitiators.0'],
      ['bad initiator name in an ACL', `targets: [{ iqn: "${IQN}", acls: [{ initiator: "bob" }], luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.acls.0.initiator'],
      ['short ACL CHAP secret', `targets: [{ iqn: "${IQN}", acls: [{ initiator: "iqn.2026-11.x:i", chap: { user: u, secret: short } }], luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.acls.0.chap.secret: CHAP secret needs at least 12 characters'],
      ['long mutual secret', `targets: [{ iqn: "${IQN}", chap: { user: u, secret: twelve-chars, mutual: { user: t, secret: seventeen-chars!! } }, luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.chap.mutual.secret: CHAP secret may have at most 16 characters'],
      ['secret and secretFile both', `targets: [{ iqn: "${IQN}", chap: { user: u, secret: twelve-chars, secretFile: s }, luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.chap.secret: give exactly one of secret and secretFile'],
      ['missing secret file', `targets: [{ iqn: "${IQN}", chap: { user: u, secretFile: nosuch.chap }, luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.chap.secretFile: cannot read'],
      ['secret file too short', `discoveryChap: { user: d, secretFile: d.chap }\ntargets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'discoveryChap.secretFile: CHAP secret needs at least 12 characters', { 'd.chap': 'tooshort\n' }],
      ['portal not among listen', `listen: ["127.0.0.1:3260"]\ntargets: [{ iqn: "${IQN}", portals: ["10.0.0.1:3260"], luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.portals.0'],
      ['metrics address', `metrics: { listen: nowhere }\ntargets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'metrics.listen'],
      ['copyScope at the top level', `copyScope: anyone\ntargets: [{ iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'copyScope:'],
      ['copyScope of a target', `targets: [{ iqn: "${IQN}", copyScope: sameinitiator, luns: [{ lun: 0, path: a, size: 1MiB }] }]`, 'targets.0.copyScope:'],
    ];
    // Four values per row: with fewer, jest would take the callback's fourth parameter for `done`.
    it.each(cases.map(([n, t, e, f]) => [n, t, e, f ?? {}] as const))('%s', (_name, text, expected, files) => {
      expect(issuesOf(text, files)).toContain(expected);
    });

    it('names every problem in one report, cross-field ones included, even with malformed entries', () => {
      const issues = issuesOf(
        `targets: [{ iqn: "${IQN}", acls: [{ initiator: "iqn.2026-11.x:i", luns: [9] }], luns: [{ lun: 0, path: a, size: 1MiB, blockSize: 7 }, { lun: 0, path: b, size: 1MiB }, "junk"] },
                   { iqn: "${IQN}", luns: [{ lun: 0, path: a, size: 1MiB }] }]`,
      );
      for (const want of ['targets.0.luns.0.blockSize', 'targets.0.luns.1.lun: LUN 0 is configured twice', 'targets.0.luns.2', 'targets.0.acls.0.luns.0: the target has no LUN 9', 'targets.1.iqn: duplicate target IQN']) {
        expect(issues).toContain(want);
      }
    });

    it('a secret never appears in an error message', () => {
      const issues = issuesOf(`targets: [{ iqn: "${IQN}", chap: { user: u, secret: "sekrit-but-far-too-long" }, luns: [{ lun: 0, path: a, size: 1MiB }] }]`);
      expect(issues).toContain('targets.0.chap.secret');
      expect(issues).not.toContain('sekrit');
    });
  });

  describe('ACLs, secrets and defaults', () => {
    it('reads a secret from a file relative to the configuration file; the first line is the secret', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-config-'));
      fs.mkdirSync(path.join(dir, 'secrets'));
      fs.writeFileSync(path.join(dir, 'secrets', 'a.chap'), 'from-a-file-123\nignored\n', { mode: 0o600 });
      fs.writeFileSync(
        path.join(dir, 'c.yaml'),
        `targets: [{ iqn: "${IQN}", acls: [{ initiator: "iqn.2026-11.x:i", chap: { user: u, secretFile: secrets/a.chap } }], luns: [{ lun: 0, path: a, size: 1MiB }] }]`,
      );
      const c = loadConfigFile(path.join(dir, 'c.yaml'));
      expect(c.targets[0].acls![0].chap).toEqual({ user: 'u', secret: 'from-a-file-123', secretFile: 'secrets/a.chap' });
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('folds allowedInitiators into ACL entries with every LUN; no ACL at all means open', () => {
      const c = validateConfig({
        targets: [
          { iqn: IQN, allowedInitiators: ['iqn.2026-11.x:a'], acls: [{ initiator: 'iqn.2026-11.x:b', luns: [1, { lun: 0, targetLun: 0 }] }], luns: [{ lun: 0, path: 'a', size: '1MiB' }, { lun: 1, path: 'b', size: '1MiB' }] },
          { iqn: `${IQN}2`, luns: [{ lun: 0, path: 'c', size: '1MiB' }] },
        ],
      });
      expect(c.targets[0].acls).toEqual([
        { initiator: 'iqn.2026-11.x:b', luns: [{ lun: 1, targetLun: 1 }, { lun: 0, targetLun: 0 }] },
        { initiator: 'iqn.2026-11.x:a' },
      ]);
      expect(c.targets[1].acls).toBeUndefined();
      expect(Object.isFrozen(c.targets[0].acls![0])).toBe(true);
    });

    it('copyScope: acl unless set; a target may set its own (left undefined otherwise: the top level applies)', () => {
      const c = validateConfig({
        targets: [
          { iqn: IQN, luns: [{ lun: 0, path: 'a', size: '1MiB' }] },
          { iqn: `${IQN}2`, copyScope: 'sameInitiator', luns: [{ lun: 0, path: 'c', size: '1MiB' }] },
        ],
      });
      expect(c.copyScope).toBe('acl');
      expect(c.targets.map((t) => t.copyScope)).toEqual([undefined, 'sameInitiator']);
      expect(validateConfig({ copyScope: 'sameInitiator', targets: [{ iqn: IQN, luns: [{ lun: 0, path: 'a', size: '1MiB' }] }] }).copyScope).toBe('sameInitiator');
    });

    it('gives every LUN the same vendor and product unless a LUN sets its own', () => {
      const c = validateConfig({
        inquiry: { product: 'shared product' },
        targets: [{ iqn: IQN, luns: [{ lun: 0, path: 'a', size: '1MiB' }, { lun: 1, path: 'b', size: '1MiB', product: 'odd one' }] }],
      });
      expect(c.targets[0].luns.map((l) => [l.vendor, l.product, l.revision])).toEqual([
        ['XCOPYD', 'shared product', '0001'],
        ['XCOPYD', 'odd one', '0001'],
      ]);
      expect(validateConfig({ targets: [{ iqn: IQN, luns: [{ lun: 0, path: 'a', size: '1MiB' }] }] }).targets[0].luns[0].product).toBe('xcopyd disk');
    });

    it('puts the control socket in the data directory unless told otherwise; metrics are off by default', () => {
      const c = validateConfig({ dataDir: '/srv/x', targets: [{ iqn: IQN, luns: [{ lun: 0, path: 'a', size: '1MiB' }] }] });
      expect(c.controlSocket).toBe('/srv/x/control.sock');
      expect(c.metrics).toBeUndefined();
    });
  });

  it('odx: every key reaches the daemon\'s token store; bad ones fail with their path', async () => {
    const d = await startConfiguredDaemon([{ iqn: IQN, luns: [{ lun: 0, path: 'o.img', size: '1MiB' }] }], {
      odx: { maxLiveTokens: 3, maxSideFileBytes: '64MiB', optimalTransferBytes: '32MiB', wutDeadlineMs: 2000 },
    });
    try {
      const t = d.daemon.rodTokens!;
      expect([t.maxLiveTokens, t.maxSideFileBytes, t.optimalTransferBytes, t.wutDeadlineMs]).toEqual([3, 64 << 20, 32 << 20, 2000]);
    } finally {
      await d.stop();
    }
    const bad = issuesOf(`
dataDir: DATADIR
odx: { optimalTransferBytes: lots, wutDeadlineMs: 5, bogus: 1 }
targets: [{ iqn: ${IQN}, luns: [{ lun: 0, path: a.img, size: 1MiB }] }]
`);
    expect(bad).toContain('odx.optimalTransferBytes');
    expect(bad).toContain('odx.wutDeadlineMs');
    expect(bad).toMatch(/odx.*bogus|bogus.*odx/);
  });

  it('parses sizes', () => {
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('512 MiB')).toBe(512 * 1024 ** 2);
    expect(parseSize('10MB')).toBe(10 * 1000 ** 2);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('x')).toBeUndefined();
    expect(parseSize(-1)).toBeUndefined();
  });
});
