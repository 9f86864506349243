#!/usr/bin/env node
/**
 * xcopyd command line:
 *   xcopyd [--config FILE] [--node ID] [--listen HOST:PORT]... [--data-dir DIR] [--log-level L] [--log-format json|pretty]
 *   xcopyd --check-config FILE [--node ID]
 *   xcopyd status [--json] [--socket PATH | --config FILE | --data-dir DIR]
 *
 * Logs: JSON lines on stdout; pretty (pino-pretty) when stdout is a terminal,
 * unless --log-format or XCOPYD_LOG_FORMAT says otherwise.
 *
 * Cluster mode (a `cluster:` section, the same file on every node): --node ID
 * (or XCOPYD_NODE) names the node this process is; it listens on that node's portal.
 *
 * Signals: SIGHUP reloads --config (an invalid file is refused, the running
 * configuration stays); SIGINT/SIGTERM stop.
 */
// Copies (koffi .async copy_file_range) and file I/O share libuv's thread pool; the default
// of 4 threads would let four long copy chunks stall host reads on every LUN. libuv reads
// this once, at the pool's first use, so it must be set before any asynchronous fs call.
process.env.UV_THREADPOOL_SIZE ??= '16';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import {
  ConfigError, DEFAULT_CONFIG_YAML, checkBackingPaths, checkConfigFile, validateConfig, type Config,
} from './config';
import type { StatusReport } from './status';
import { createNotifier, monotonicUsec, type Notifier } from './sd-notify';

function usage(): string {
  return [
    'usage: xcopyd [--config FILE] [--node ID] [--listen HOST:PORT] [--data-dir DIR] [--log-level LEVEL] [--log-format json|pretty]',
    '       xcopyd --check-config FILE [--node ID]',
    '       xcopyd status [--json] [--socket PATH | --config FILE | --data-dir DIR]',
  ].join('\n');
}

interface Overrides {
  listen?: string[];
  dataDir?: string;
  logLevel?: string;
  /** The cluster node this process is (--node, else XCOPYD_NODE). */
  node?: string;
}

/**
 * The configuration the daemon runs: the file (or the embedded default) with
 * the command line's overrides applied to the document before validation,
 * then checked completely (schema, secret files, backing paths).
 */
function loadEffectiveConfig(file: string | undefined, o: Overrides, requireNode = false): Readonly<Config> {
  const source = file ?? 'embedded default';
  let doc: Record<string, unknown>;
  try {
    doc = (YAML.parse(file ? fs.readFileSync(file, 'utf8') : DEFAULT_CONFIG_YAML) ?? {}) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${source}: ${(err as Error).message}`, [(err as Error).message]);
  }
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${source}: not a mapping`, ['(root): not a mapping']);
  if (o.listen) doc.listen = o.listen;
  if (o.dataDir) doc.dataDir = o.dataDir;
  if (o.logLevel) doc.logLevel = o.logLevel;
  const config = validateConfig(doc, source, { baseDir: file ? path.dirname(path.resolve(file)) : process.cwd(), node: o.node, requireNode });
  const issues = checkBackingPaths(config);
  if (issues.length) throw new ConfigError(`${source} is invalid:\n  ${issues.join('\n  ')}`, issues);
  return config;
}

/** --node, else XCOPYD_NODE (an empty variable counts as unset). */
function nodeOf(flag: string | undefined): string | undefined {
  return flag ?? (process.env.XCOPYD_NODE || undefined);
}

async function status(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        socket: { type: 'string' },
        config: { type: 'string' },
        'data-dir': { type: 'string' },
      },
      strict: true,
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage()}\n`);
    return 2;
  }
  const v = args.values;
  let socket = v.socket;
  if (!socket) {
    try {
      socket = loadEffectiveConfig(v.config, { dataDir: v['data-dir'] }).controlSocket; // any node's file will do: the socket is in --data-dir
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n`);
      return 1;
    }
  }
  // Loaded here, not at the top: --check-config and status start without the daemon's modules.
  const { controlRequest } = await import('./control');
  const { renderStatus } = await import('./status');
  let report: StatusReport;
  try {
    report = (await controlRequest(socket, 'status')) as StatusReport;
  } catch (err) {
    process.stderr.write(`xcopyd status: ${socket}: ${(err as Error).message}\n`);
    return 1;
  }
  if (v.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else renderStatus(report, process.stdout);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'status') return status(argv.slice(1));
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        node: { type: 'string' },
        listen: { type: 'string', multiple: true },
        'data-dir': { type: 'string' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
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
      checkConfigFile(v['check-config'], { node: nodeOf(v.node) });
      process.stdout.write(`${v['check-config']}: valid\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n`);
      return 1;
    }
  }
  const { createRootLogger, resolveLogFormat } = await import('./log');
  let logFormat;
  try {
    logFormat = resolveLogFormat(v['log-format'], process.env.XCOPYD_LOG_FORMAT, process.stdout.isTTY === true);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage()}\n`);
    return 2;
  }
  const overrides: Overrides = { listen: v.listen, dataDir: v['data-dir'], logLevel: v['log-level'], node: nodeOf(v.node) };
  let config: Readonly<Config>;
  try {
    config = loadEffectiveConfig(v.config, overrides, true);
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
    return 1;
  }
  const { Daemon } = await import('./daemon');
  const daemon = new Daemon(config, createRootLogger(config.logLevel, { format: logFormat }));
  // systemd (Type=notify): READY=1 once every portal and the control socket listen.
  let notifier: Notifier | undefined;
  try {
    notifier = createNotifier();
  } catch (err) {
    daemon.log.error({ err }, 'sd_notify: cannot use NOTIFY_SOCKET');
  }
  const sdNotify = (state: string) => {
    if (notifier && !notifier.notify(state)) daemon.log.warn({ state }, 'sd_notify: not sent');
  };
  const serving = () => `STATUS=serving on ${config.listen.join(', ')}`;
  // The handlers come before start(): a signal while it runs (the portal may already accept
  // connections) must not take the default action, which kills the daemon without a clean stop.
  let started = false;
  let stopping = false;
  const starting = daemon.start();
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    sdNotify('STOPPING=1\nSTATUS=stopping');
    daemon.log.info({ signal: sig }, 'stopping');
    starting
      .catch(() => undefined) // a failed start is reported by main's caller
      .then(() => daemon.stop())
      .then(() => process.exit(0))
      .catch((err) => {
        daemon.log.error({ err }, 'error while stopping');
        process.exit(1);
      });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    if (stopping) return;
    if (!started) {
      daemon.log.warn('SIGHUP while starting: ignored (the configuration was read just now)');
      return;
    }
    if (!v.config) {
      daemon.log.warn('SIGHUP: running the embedded default configuration, nothing to reload');
      return;
    }
    sdNotify(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
    let next: Readonly<Config>;
    try {
      next = loadEffectiveConfig(v.config, overrides, true);
    } catch (err) {
      // The running configuration stays; every bad key is named.
      const issues = err instanceof ConfigError ? err.issues : [String(err)];
      daemon.log.error({ file: v.config, issues }, 'reload refused: the new configuration is invalid');
      sdNotify(`READY=1\n${serving()}`);
      return;
    }
    daemon
      .reload(next)
      .catch((err) => daemon.log.error({ err }, 'reload failed'))
      .finally(() => sdNotify(`READY=1\n${serving()}`));
  });
  await starting;
  started = true;
  if (stopping) return -1; // stop() exits once start() is done
  sdNotify(`READY=1\n${serving()}`);
  // WatchdogSec=: a ping every half interval while the event loop runs; a loop stuck that long gets the unit restarted.
  if (notifier?.watchdogMs) setInterval(() => sdNotify('WATCHDOG=1'), notifier.watchdogMs / 2).unref();
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
