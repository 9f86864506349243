import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, DEFAULT_CONFIG_YAML, defaultConfig, loadConfigFile, parseConfigText, parseSize } from '../src/config';

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

  it('parses sizes', () => {
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('512 MiB')).toBe(512 * 1024 ** 2);
    expect(parseSize('10MB')).toBe(10 * 1000 ** 2);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('x')).toBeUndefined();
    expect(parseSize(-1)).toBeUndefined();
  });
});
