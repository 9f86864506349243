/**
 * Log format (issue 6, "pino JSON, or pretty on a TTY"):
 *  - the choice: --log-format, then XCOPYD_LOG_FORMAT, then pretty only when
 *    stdout is a terminal; anything else is refused;
 *  - pretty lines carry no CHAP secret either: the same configuration,
 *    credential and login-key objects, and a running daemon's CHAP logins
 *    (good and bad) at trace, through both formats;
 *  - the real command line: JSON through a pipe, pretty on a pseudo-terminal
 *    (script(1)); --log-format pretty through a pipe even with
 *    XCOPYD_LOG_FORMAT=json; XCOPYD_LOG_FORMAT=json on the terminal; a bad
 *    value exits 2.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Daemon } from '../src/daemon';
import { validateConfig } from '../src/config';
import { createRootLogger, resolveLogFormat, type LogFormat } from '../src/log';
import { TestInitiator } from './support/initiator';

const REPO = path.join(__dirname, '..');
const T = 'iqn.2026-11.org.xcopyd:logs';
const ALICE = 'iqn.2026-11.org.example:alice';

function sink(): { stream: Writable; text: () => string } {
  let out = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  return { stream, text: () => out };
}

describe('log format choice', () => {
  it.each([
    [undefined, undefined, false, 'json'],
    [undefined, undefined, true, 'pretty'],
    [undefined, '', true, 'pretty'],
    [undefined, 'json', true, 'json'],
    [undefined, 'pretty', false, 'pretty'],
    ['json', 'pretty', true, 'json'],
    ['pretty', 'json', false, 'pretty'],
  ] as const)('flag %s, env %s, tty %s -> %s', (flag, env, tty, want) => {
    expect(resolveLogFormat(flag, env, tty)).toBe(want);
  });

  it('refuses anything else, naming where it came from', () => {
    expect(() => resolveLogFormat('yaml', undefined, false)).toThrow("--log-format: 'yaml' is not one of json, pretty");
    expect(() => resolveLogFormat(undefined, 'PRETTY', true)).toThrow("XCOPYD_LOG_FORMAT: 'PRETTY' is not one of json, pretty");
  });
});

describe.each(['json', 'pretty'] as LogFormat[])('%s logs', (format) => {
  it('never carry a CHAP secret, even at trace with configuration, credentials and login keys logged', async () => {
    const out = sink();
    const log = createRootLogger('trace', { format, destination: out.stream, colorize: false });
    const secrets = ['target-secret1', 'mutual-secret1', 'acl-secret-123', 'discovery-sec1'];
    const config = validateConfig({
      listen: ['127.0.0.1:0'],
      dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-logfmt-')),
      logLevel: 'trace',
      limits: { authFailureDelayMs: 1 },
      discoveryChap: { user: 'disc', secret: secrets[3] },
      targets: [
        {
          iqn: T,
          chap: { user: 'tgt', secret: secrets[0], mutual: { user: 'me', secret: secrets[1] } },
          acls: [{ initiator: ALICE, chap: { user: 'alice', secret: secrets[2] } }],
          luns: [{ lun: 0, path: 'g0.img', size: '1MiB' }],
        },
      ],
    });
    log.trace({ config }, 'configuration');
    log.debug({ target: config.targets[0] }, 'target');
    log.info({ chap: config.targets[0].chap, acls: config.targets[0].acls }, 'credentials');
    log.info({ discoveryChap: config.discoveryChap }, 'discovery');
    log.info({ secret: secrets[0], nested: { secret: secrets[1] } }, 'top level');
    log.child({ conn: 1 }).trace({ keys: { CHAP_N: 'alice', CHAP_R: '0x00', CHAP_C: '0x01' } }, 'login keys');
    const d = new Daemon(config, log);
    await d.start();
    try {
      const good = await TestInitiator.connect(d.ports[0]);
      expect((await good.login({ initiatorName: ALICE, targetName: T, chap: { user: 'alice', secret: secrets[2] } })).statusClass).toBe(0);
      good.close();
      const bad = await TestInitiator.connect(d.ports[0]);
      expect((await bad.login({ initiatorName: ALICE, targetName: T, chap: { user: 'alice', secret: 'wrong-secret-1' } })).statusDetail).toBe(1);
      bad.close();
    } finally {
      await d.stop();
      fs.rmSync(config.dataDir, { recursive: true, force: true });
    }
    const text = out.text();
    if (format === 'json') {
      expect(text.split('\n').filter(Boolean).every((l) => l.startsWith('{"level":'))).toBe(true);
    } else {
      expect(text).not.toContain('{"level":');
      expect(text).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] TRACE \(xcopyd\): configuration$/m);
      expect(text).toMatch(/WARN \(xcopyd\): authentication failed/);
    }
    expect(text).toContain('configuration');
    expect(text).toContain('[redacted]');
    expect(text).toContain('alice'); // what is not secret stays readable
    for (const s of [...secrets, 'wrong-secret-1']) expect(text).not.toContain(s);
  });
});

/** PIDs whose parent is `pid` (/proc/PID/stat: the field after the parenthesised command is the state, then the parent). */
function childrenOf(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Run the daemon on an ephemeral portal until its control socket listens, then SIGTERM it; all it printed. */
async function runDaemon(args: string[], o: { tty?: boolean; env?: Record<string, string> } = {}): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-logcli-'));
  const cmd = [process.execPath, '-r', 'ts-node/register/transpile-only', 'src/main.ts', '--listen', '127.0.0.1:0', '--data-dir', dir, ...args];
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  // script(1) gives the daemon a pseudo-terminal as stdout; -e: its exit status.
  const child = o.tty
    ? spawn('script', ['-qefc', `exec ${cmd.map(quote).join(' ')}`, '/dev/null'], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...o.env } })
    : spawn(cmd[0], cmd.slice(1), { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const sock = path.join(dir, 'control.sock');
  try {
    const until = Date.now() + 120000;
    while (!fs.existsSync(sock) || !/control socket listening/.test(out)) {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`the daemon never got ready:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    // Under script(1) the daemon is script's child (the shell exec'd it): SIGTERM goes to it, by its PID.
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      if (o.tty) {
        for (const p of childrenOf(child.pid!)) process.kill(p, 'SIGTERM');
      } else child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

describe('the command line', () => {
  jest.setTimeout(300000);

  it('logs JSON through a pipe and pretty on a terminal; --log-format forces either; a bad value exits 2', async () => {
    const piped = await runDaemon([]);
    expect(piped).toMatch(/^\{"level":30,.*"msg":"listening"/m);

    const tty = await runDaemon([], { tty: true });
    expect(tty).not.toContain('{"level":');
    expect(tty).toMatch(/INFO \(xcopyd\): listening/);
    expect(tty).not.toMatch(/\x1b\[/); // NO_COLOR

    // The flag wins over the environment; the environment over the terminal.
    const forcedPretty = await runDaemon(['--log-format', 'pretty'], { env: { XCOPYD_LOG_FORMAT: 'json' } });
    expect(forcedPretty).toMatch(/INFO \(xcopyd\): control socket listening/);
    expect(forcedPretty).not.toContain('{"level":');
    const envJson = await runDaemon([], { tty: true, env: { XCOPYD_LOG_FORMAT: 'json' } });
    expect(envJson).toMatch(/\{"level":30,.*"msg":"listening"/);

    const bad = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(process.execPath, ['-r', 'ts-node/register/transpile-only', 'src/main.ts', '--log-format', 'xml'], { cwd: REPO, timeout: 120000 }, (err, _so, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--log-format: 'xml' is not one of json, pretty");
  });
});
