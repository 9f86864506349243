#!/usr/bin/env node
/**
 * xcopyd command line:
 *   xcopyd [--config FILE] [--listen HOST:PORT]... [--data-dir DIR] [--log-level L]
 *   xcopyd --check-config FILE
 */
// Copies (koffi .async copy_file_range) and file I/O share libuv's thread pool; the default
// of 4 threads would let four long copy chunks stall host reads on every LUN. libuv reads
// this once, at the pool's first use, so it must be set before any asynchronous fs call.
process.env.UV_THREADPOOL_SIZE ??= '16';
import { parseArgs } from 'node:util';
import { ConfigError, defaultConfig, loadConfigFile, validateConfig, type Config } from './config';
import { Daemon } from './daemon';

function usage(): string {
  return [
    'usage: xcopyd [--config FILE] [--listen HOST:PORT] [--data-dir DIR] [--log-level LEVEL]',
    '       xcopyd --check-config FILE',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        listen: { type: 'string', multiple: true },
        'data-dir': { type: 'string' },
        'log-level': { type: 'string' },
        'check-config': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage()}\n`);
    return 2;
  }
  const v = args.values;
  if (v.help) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (v['check-config']) {
    try {
      loadConfigFile(v['check-config']);
      process.stdout.write(`${v['check-config']}: valid\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n`);
      return 1;
    }
  }
  let config: Readonly<Config>;
  try {
    const base = v.config ? loadConfigFile(v.config) : defaultConfig();
    const merged = {
      ...base,
      listen: v.listen ?? base.listen,
      dataDir: v['data-dir'] ?? base.dataDir,
      logLevel: v['log-level'] ?? base.logLevel,
    };
    config = validateConfig(merged, v.config ?? 'command line');
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
    return 1;
  }
  const daemon = new Daemon(config);
  await daemon.start();
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    daemon.log.info({ signal: sig }, 'stopping');
    daemon
      .stop()
      .then(() => process.exit(0))
      .catch((err) => {
        daemon.log.error({ err }, 'error while stopping');
        process.exit(1);
      });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  return -1; // keep running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    process.stderr.write(`xcopyd: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
