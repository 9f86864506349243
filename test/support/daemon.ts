/** Start an in-process daemon on a free loopback port with a temp data dir. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Daemon } from '../../src/daemon';
import { validateConfig } from '../../src/config';

export interface TestDaemon {
  daemon: Daemon;
  port: number;
  dataDir: string;
  iqn: string;
  stop(): Promise<void>;
}

export async function startTestDaemon(overrides: Record<string, unknown> = {}, lunSize = '64MiB'): Promise<TestDaemon> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-test-'));
  const iqn = 'iqn.2026-11.org.xcopyd:default';
  const config = validateConfig({
    listen: ['127.0.0.1:0'],
    dataDir,
    logLevel: process.env.XCOPYD_TEST_LOG ?? 'silent',
    limits: { authFailureDelayMs: 10 },
    targets: [
      {
        iqn,
        luns: [
          { lun: 0, path: 'lun0.img', size: lunSize },
          { lun: 1, path: 'lun1.img', size: lunSize },
        ],
      },
    ],
    ...overrides,
  });
  const daemon = new Daemon(config, pino({ level: config.logLevel }));
  await daemon.start();
  return {
    daemon,
    port: daemon.ports[0],
    dataDir,
    iqn,
    async stop() {
      await daemon.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
