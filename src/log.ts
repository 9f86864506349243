/**
 * Logging policy (STYLE.md 10): CHAP secrets never reach a log line. Two
 * layers, because either alone has holes:
 *  - serializers for the keys under which credentials and configuration get
 *    logged (config, target, chap, acl, ...): a deep copy with every secret
 *    replaced, whatever the depth;
 *  - pino `redact` paths for secrets logged under other keys at shallow depth,
 *    and for the CHAP response/challenge keys of login traces.
 */
import pino from 'pino';

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
