/** The configuration the daemon runs with when given none. */
import type { Config } from './schema';
import { parseConfigText } from './load';

/** The embedded default: one target, LUN 0 and LUN 1, 1 GiB sparse files, 512-byte blocks. */
export const DEFAULT_CONFIG_YAML = `
listen: ["127.0.0.1:3260"]
dataDir: data
targets:
  - iqn: iqn.2026-11.org.xcopyd:default
    luns:
      - { lun: 0, path: lun0.img, size: 1GiB, blockSize: 512 }
      - { lun: 1, path: lun1.img, size: 1GiB, blockSize: 512 }
`;

export function defaultConfig(): Readonly<Config> {
  return parseConfigText(DEFAULT_CONFIG_YAML, 'embedded default');
}
