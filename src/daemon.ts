/**
 * Composition: configuration -> backing stores -> SCSI devices (one per
 * target) -> iSCSI server. The only place that knows all three layers.
 */
import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import type { Config } from './config';
import { lunPath } from './config';
import { IdentityStore } from './identity';
import { FileStore } from './backing/file-store';
import { IscsiServer } from '../iscsi/server';
import type { TargetEntry } from '../iscsi/types';
import { ScsiDevice } from '../scsi/scsi-device';
import type { LogicalUnitOptions } from '../scsi/logical-unit';
import { encodeSenseError, SenseError } from '../scsi/sense';
import type { BackingStore } from '../scsi/backing-store';
import { buildCopyScope, type ScopedTarget } from './copy-scope';
import { eui64FromNaa } from './identity';
import { RodTokenStore } from '../scsi/copy/token-store';
import { loadTokenSecret } from './token-secret';
import { fileSideFiles, rodSideFileDir } from './rod-side-files';

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { name: 'xcopyd' },
    redact: { paths: ['*.secret', '*.*.secret', 'chap', '*.chap', 'CHAP_R', 'CHAP_C'], censor: '[redacted]' },
  });
}

export class Daemon {
  readonly log: Logger;
  server: IscsiServer | null = null;
  private readonly stores: BackingStore[] = [];
  private readonly devices: ScsiDevice[] = [];
  /** ROD tokens of the whole daemon: a token works on any LU its user may reach. */
  rodTokens: RodTokenStore | null = null;
  /** Ports actually bound, in the order of config.listen. */
  readonly ports: number[] = [];

  constructor(
    readonly config: Readonly<Config>,
    log?: Logger,
  ) {
    this.log = log ?? createLogger(config.logLevel);
  }

  async start(): Promise<void> {
    const cfg = this.config;
    fs.mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
    const identities = new IdentityStore(cfg.dataDir);
    const targets: TargetEntry[] = [];
    // EXTENDED COPY resolves CSCDs across every target, within each one's ACL.
    const scoped: ScopedTarget[] = [];
    const copyScope = buildCopyScope(scoped);
    // ODX tokens are sealed with a secret kept in the data directory (0600, made on first run).
    const rodTokens = new RodTokenStore({
      logger: this.log.child({ component: 'rod-tokens' }),
      secret: loadTokenSecret(cfg.dataDir),
      sideFiles: fileSideFiles(rodSideFileDir(cfg.dataDir)),
    });
    this.rodTokens = rodTokens;
    for (const t of cfg.targets) {
      const units: LogicalUnitOptions[] = [];
      for (const l of t.luns) {
        const store = await FileStore.open({
          path: lunPath(cfg.dataDir, l.path),
          sizeBytes: l.size,
          blockSize: l.blockSize,
          physicalBlockSize: l.physicalBlockSize ?? l.blockSize,
          readOnly: l.readOnly,
        });
        this.stores.push(store);
        const id = identities.resolve(t.iqn, l.lun, { serial: l.serial, naa: l.naa });
        units.push({
            lun: l.lun,
            store,
            identity: {
              vendor: l.vendor,
              product: l.product,
              revision: '0001',
              serial: id.serial,
              naa: Buffer.from(id.naa, 'hex'),
              eui64: eui64FromNaa(Buffer.from(id.naa, 'hex')),
            },
            writeCacheEnabled: l.writeCache,
            // APTPL reservations and saved mode pages survive restarts here.
            persistPath: path.join(cfg.dataDir, `pr-${t.iqn}-${l.lun}.json`),
        });
        this.log.info({ target: t.iqn, lun: l.lun, path: lunPath(cfg.dataDir, l.path), bytes: store.sizeBytes }, 'LUN ready');
      }
      const device = new ScsiDevice({
        logger: this.log.child({ target: t.iqn }),
        luns: units,
        targetPortGroup: 1,
        copyScope,
        rodTokens,
      });
      this.devices.push(device);
      scoped.push({ iqn: t.iqn, allowedInitiators: t.allowedInitiators, device });
      targets.push({
        name: t.iqn,
        alias: t.alias,
        portalGroupTag: t.portalGroupTag,
        portals: [...cfg.listen],
        device,
        chap: t.chap,
        allowedInitiators: t.allowedInitiators,
      });
    }
    this.server = new IscsiServer({
      log: this.log,
      targets,
      limits: cfg.limits,
      discoveryChap: cfg.discoveryChap,
      senseForOversizedWrite: () => encodeSenseError(new SenseError('INVALID_FIELD_IN_CDB')),
    });
    for (const hp of cfg.listen) this.ports.push(await this.server.listen(hp));
  }

  /** Stop accepting, end sessions, sync and close every store. */
  async stop(): Promise<void> {
    if (this.server) await this.server.close();
    for (const d of this.devices) await d.close();
    if (this.rodTokens) await this.rodTokens.close();
    for (const s of this.stores) await s.close();
    this.log.info('stopped');
  }
}
