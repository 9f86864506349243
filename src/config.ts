/**
 * Daemon configuration: YAML files in configs/, validated once at start by a
 * zod schema; errors name the path of every bad key; the result is frozen.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  KB: 1000,
  KIB: 1024,
  M: 1024 ** 2,
  MB: 1000 ** 2,
  MIB: 1024 ** 2,
  G: 1024 ** 3,
  GB: 1000 ** 3,
  GIB: 1024 ** 3,
  T: 1024 ** 4,
  TB: 1000 ** 4,
  TIB: 1024 ** 4,
};

/** "1GiB", "512 MiB", 1073741824 -> bytes. */
export function parseSize(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  const m = /^\s*(\d+)\s*([A-Za-z]*)\s*$/.exec(v);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2].toUpperCase()];
  if (unit === undefined) return undefined;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) ? n : undefined;
}

const sizeSchema = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const n = parseSize(v);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a size: ${String(v)}` });
    return z.NEVER;
  }
  return n;
});

const iqnSchema = z
  .string()
  .max(223)
  .regex(/^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)$/, 'not an iSCSI name');

/** CHAP secrets: 12 to 16 characters (the Microsoft initiator insists). */
const secretSchema = z.string().min(12, 'CHAP secret needs at least 12 characters').max(16, 'CHAP secret may have at most 16 characters');

const chapSchema = z
  .object({
    user: z.string().min(1).max(255),
    secret: secretSchema,
    mutual: z.object({ user: z.string().min(1).max(255), secret: secretSchema }).strict().optional(),
  })
  .strict()
  .refine((c) => !c.mutual || c.mutual.secret !== c.secret, {
    message: 'mutual CHAP must not reuse the initiator secret',
    path: ['mutual', 'secret'],
  });

const hostPortSchema = z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$/, 'not HOST:PORT');

const lunSchema = z
  .object({
    lun: z.number().int().min(0).max(16383),
    path: z.string().min(1),
    size: sizeSchema.optional(),
    blockSize: z.union([z.literal(512), z.literal(4096)]).default(512),
    physicalBlockSize: z.union([z.literal(512), z.literal(4096)]).optional(),
    readOnly: z.boolean().default(false),
    writeCache: z.boolean().default(true),
    vendor: z.string().max(8).regex(/^[\x20-\x7e]*$/).default('XCOPYD'),
    product: z.string().max(16).regex(/^[\x20-\x7e]*$/).default('xcopyd disk'),
    serial: z.string().max(32).regex(/^[\x21-\x7e]+$/).optional(),
    naa: z.string().regex(/^6[0-9a-fA-F]{31}$/, 'NAA must be 32 hex digits starting with 6 (NAA IEEE Registered Extended)').optional(),
  })
  .strict()
  .refine((l) => !l.physicalBlockSize || l.physicalBlockSize >= l.blockSize, {
    message: 'physicalBlockSize must be >= blockSize',
    path: ['physicalBlockSize'],
  });

const targetSchema = z
  .object({
    iqn: iqnSchema,
    alias: z.string().max(255).optional(),
    portalGroupTag: z.number().int().min(1).max(65535).default(1),
    chap: chapSchema.optional(),
    allowedInitiators: z.array(iqnSchema).optional(),
    luns: z.array(lunSchema).min(1),
  })
  .strict()
  .refine((t) => new Set(t.luns.map((l) => l.lun)).size === t.luns.length, { message: 'duplicate LUN number', path: ['luns'] });

export const configSchema = z
  .object({
    listen: z.array(hostPortSchema).min(1).default(['127.0.0.1:3260']),
    dataDir: z.string().default('data'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    discoveryChap: chapSchema.optional(),
    limits: z
      .object({
        queueDepth: z.number().int().min(1).max(4096).optional(),
        maxSessions: z.number().int().min(1).max(65535).optional(),
        maxSessionsPerInitiator: z.number().int().min(1).max(65535).optional(),
        loginTimeoutMs: z.number().int().min(100).optional(),
        nopInIntervalMs: z.number().int().min(0).optional(),
        nopInTimeoutMs: z.number().int().min(100).optional(),
        authFailureDelayMs: z.number().int().min(0).optional(),
        /** Largest write (EDTL) buffered; a larger one is refused with CHECK CONDITION before its data is taken. */
        maxWriteBuffer: z.number().int().min(65536).max(1024 * 1024 * 1024).optional(),
        /** TCP connections at once, in any phase (default 2 x maxSessions). */
        maxConnections: z.number().int().min(1).max(65535).optional(),
        /** TCP connections at once from one initiator address. */
        maxConnectionsPerAddress: z.number().int().min(1).max(65535).optional(),
        logoutTimeoutMs: z.number().int().min(100).optional(),
      })
      .strict()
      .default({}),
    targets: z.array(targetSchema).min(1),
  })
  .strict()
  .refine((c) => new Set(c.targets.map((t) => t.iqn.toLowerCase())).size === c.targets.length, {
    message: 'duplicate target IQN',
    path: ['targets'],
  });

export type Config = z.infer<typeof configSchema>;
export type TargetConfig = Config['targets'][number];
export type LunConfig = TargetConfig['luns'][number];

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

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly issues: string[],
  ) {
    super(message);
  }
}

/** Validate a parsed document; throws ConfigError listing every bad key with its path. */
export function validateConfig(doc: unknown, source = 'config'): Readonly<Config> {
  const r = configSchema.safeParse(doc);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new ConfigError(`${source} is invalid:\n  ${issues.join('\n  ')}`, issues);
  }
  return deepFreeze(r.data);
}

export function parseConfigText(text: string, source: string): Readonly<Config> {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`${source}: YAML error: ${(err as Error).message}`, [(err as Error).message]);
  }
  return validateConfig(doc, source);
}

export function loadConfigFile(file: string): Readonly<Config> {
  return parseConfigText(fs.readFileSync(file, 'utf8'), file);
}

export function defaultConfig(): Readonly<Config> {
  return parseConfigText(DEFAULT_CONFIG_YAML, 'embedded default');
}

/** Resolve a LUN path against the data directory. */
export function lunPath(dataDir: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(dataDir, p);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
  }
  return o;
}
