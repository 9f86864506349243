/**
 * The root logger (STYLE.md 10): pino JSON lines, or pino-pretty's human
 * form on a terminal (`--log-format`, XCOPYD_LOG_FORMAT, else pretty when
 * stdout is a TTY). Pretty is formatted in process from the JSON line pino
 * has already redacted and serialized, synchronously, so the two forms carry
 * the same fields and the last lines before an exit are not lost.
 *
 * Logging policy: CHAP secrets never reach a log line. Two layers, because
 * either alone has holes:
 *  - serializers for the keys under which credentials and configuration get
 *    logged (config, target, chap, acl, ...): a deep copy with every secret
 *    replaced, whatever the depth;
 *  - pino `redact` paths for secrets logged under other keys at shallow depth,
 *    and for the CHAP response/challenge keys of login traces.
 */
import pino from 'pino';
import { prettyFactory } from 'pino-pretty';

export const REDACTED = '[redacted]';

/** Keys whose values are secrets wherever they appear. */
const SECRET_KEYS = new Set(['secret', 'password', 'CHAP_R', 'CHAP_C', 'chapSecret', 'mutualSecret']);

/** A deep copy of `v` with the value of every secret key replaced (cycles cut). */
export function redactSecrets(v: unknown, seen = new WeakSet<object>()): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Buffer.isBuffer(v)) return v;
  if (seen.has(v)) return '[circular]';
  seen.add(v);
  if (v instanceof Map) return redactSecrets(Object.fromEntries(v), seen);
  if (Array.isArray(v)) return v.map((x) => redactSecrets(x, seen));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = SECRET_KEYS.has(k) ? REDACTED : redactSecrets(x, seen);
  return out;
}

const deep = (v: unknown) => redactSecrets(v);

/** Serializers for the keys credentials travel under. */
export const logSerializers: pino.LoggerOptions['serializers'] = {
  err: pino.stdSerializers.err,
  config: deep,
  target: (v: unknown) => (typeof v === 'string' ? v : redactSecrets(v)),
  targets: deep,
  chap: deep,
  discoveryChap: deep,
  mutual: deep,
  acl: deep,
  acls: deep,
  credentials: deep,
  creds: deep,
  keys: deep,
  pairs: deep,
};

/** pino redact paths (shallow positions not covered by a serializer). */
export const LOG_REDACT_PATHS: readonly string[] = [
  'secret',
  '*.secret',
  '*.*.secret',
  '*.*.*.secret',
  'CHAP_R',
  'CHAP_C',
  '*.CHAP_R',
  '*.CHAP_C',
];

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

/**
 * The format to log in: the flag, else XCOPYD_LOG_FORMAT, else pretty on a
 * terminal and JSON otherwise (a pipe, a file, journald). Throws on a value
 * that is neither.
 */
export function resolveLogFormat(flag: string | undefined, env: string | undefined, isTTY: boolean): LogFormat {
  for (const [what, v] of [['--log-format', flag], ['XCOPYD_LOG_FORMAT', env]] as const) {
    if (v === undefined || v === '') continue;
    if (!(LOG_FORMATS as readonly string[]).includes(v)) throw new Error(`${what}: '${v}' is not one of ${LOG_FORMATS.join(', ')}`);
    return v as LogFormat;
  }
  return isTTY ? 'pretty' : 'json';
}

export interface LoggerOptions {
  format?: LogFormat;
  /** Where lines go (default stdout). */
  destination?: pino.DestinationStream | NodeJS.WritableStream;
  /** Pretty only: ANSI colours (default: when the destination is a colour terminal and NO_COLOR is unset). */
  colorize?: boolean;
}

/** The root logger: JSON or pretty lines, secrets redacted in both. */
export function createRootLogger(level: string, o: LoggerOptions = {}): pino.Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { name: 'xcopyd' },
    redact: { paths: [...LOG_REDACT_PATHS], censor: REDACTED },
    serializers: logSerializers,
  };
  if (o.format !== 'pretty') return o.destination ? pino(options, o.destination as pino.DestinationStream) : pino(options);
  const out = o.destination ?? process.stdout;
  const tty = out as NodeJS.WriteStream;
  const colorize = o.colorize ?? (tty.isTTY === true && !process.env.NO_COLOR && (tty.hasColors?.() ?? false));
  const pretty = prettyFactory({ colorize, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname', singleLine: false });
  // pino hands each JSON line (already redacted) to write(); the pretty form goes out at once.
  const destination: pino.DestinationStream = { write: (line: string) => void out.write(pretty(line)) };
  return pino(options, destination);
}
