/**
 * The configuration schema (zod): every key, its type and default, and the
 * cross-field checks (duplicate LUNs, IQNs, NAAs, serials, backing paths,
 * ACL LUN maps). Errors carry the path of the bad key. What a file looks like
 * after loading (secrets read, ACLs folded, INQUIRY defaults applied) is the
 * `Config` type here; ./load.ts makes it.
 */
import path from 'node:path';
import { z } from 'zod';
import { CHAP_SECRET_MAX_LENGTH, CHAP_SECRET_MIN_LENGTH } from '../../iscsi/chap';
import { iqnSchema } from './iscsi-names';

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

export const sizeSchema = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const n = parseSize(v);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a size: ${String(v)}` });
    return z.NEVER;
  }
  return n;
});


/** CHAP secrets: 12 to 16 characters (the Microsoft initiator insists). Messages never echo a secret. */
export function chapSecretProblem(secret: string): string | undefined {
  const n = [...secret].length;
  if (n < CHAP_SECRET_MIN_LENGTH) return `CHAP secret needs at least ${CHAP_SECRET_MIN_LENGTH} characters`;
  if (n > CHAP_SECRET_MAX_LENGTH) return `CHAP secret may have at most ${CHAP_SECRET_MAX_LENGTH} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(secret)) return 'CHAP secret must not contain control characters';
  return undefined;
}

const secretSchema = z.string().superRefine((v, ctx) => {
  const problem = chapSecretProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/**
 * One CHAP credential: the secret inline or in a file (`secretFile`, relative
 * to the configuration file; its first line is the secret). After loading,
 * `secret` always holds the secret.
 */
const credentialShape = {
  user: z.string().min(1).max(255),
  secret: secretSchema.optional(),
  secretFile: z.string().min(1).optional(),
};

function oneSecret(c: { secret?: string; secretFile?: string }, ctx: z.RefinementCtx): void {
  if ((c.secret === undefined) === (c.secretFile === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['secret'], message: 'give exactly one of secret and secretFile' });
  }
}

export const chapSchema = z
  .object({
    ...credentialShape,
    mutual: z.object(credentialShape).strict().superRefine(oneSecret).optional(),
  })
  .strict()
  .superRefine(oneSecret);

export type ChapConfig = {
  user: string;
  secret: string;
  secretFile?: string;
  mutual?: { user: string; secret: string; secretFile?: string };
};

/** src/copy-scope.ts CopyScopeMode. */
const copyScopeSchema = z.enum(['acl', 'sameInitiator']);

/** Relative target ports are node index x 16 + 1 (scsi/alua.ts), so 16 bits hold 4096 nodes; 64 is plenty. */
export const MAX_CLUSTER_NODES = 64;

const hostPortSchema = z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$/, 'not HOST:PORT');

/**
 * Cross-field checks run even when some fields are already invalid, so one
 * --check-config names every problem (zod skips refinements of a failed
 * object otherwise). The data may then be malformed: a check that trips over
 * it stops quietly, as the field's own issue already says what is wrong.
 */
const ALWAYS = { when: () => true };
function tolerant(check: () => void): void {
  try {
    check();
  } catch {
    // malformed input, reported by the field schemas
  }
}

function inquiryText(max: number) {
  return z.string().max(max).regex(/^[\x20-\x7e]*$/, 'printable ASCII only');
}

const lunSchema = z
  .object({
    lun: z.number().int().min(0).max(16383),
    path: z.string().min(1),
    size: sizeSchema.optional(),
    blockSize: z.union([z.literal(512), z.literal(4096)], { error: 'blockSize must be 512 or 4096' }).default(512),
    /** Reported in READ CAPACITY(16) (LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT) and VPD B0h. */
    physicalBlockSize: z
      .number()
      .int()
      .refine((n) => n >= 512 && n <= 65536 && (n & (n - 1)) === 0, 'physicalBlockSize must be a power of two from 512 to 65536')
      .optional(),
    readOnly: z.boolean().default(false),
    /** Write-back cache (WCE=1, caching mode page) or write-through (every write synced). */
    writeCache: z.boolean().default(true),
    /** INQUIRY identification; default from the top-level `inquiry` (one product ID for every LUN). */
    vendor: inquiryText(8).optional(),
    product: inquiryText(16).optional(),
    revision: inquiryText(4).optional(),
    serial: z.string().max(32).regex(/^[\x21-\x7e]+$/).optional(),
    naa: z.string().regex(/^6[0-9a-fA-F]{31}$/, 'NAA must be 32 hex digits starting with 6 (NAA IEEE Registered Extended)').optional(),
  })
  .strict()
  .refine((l) => !l.physicalBlockSize || l.physicalBlockSize >= l.blockSize, {
    message: 'physicalBlockSize must be >= blockSize',
    path: ['physicalBlockSize'],
  });

/** An ACL entry's LUN: the same number on both sides, or the initiator's `lun` showing the target's `targetLun`. */
const aclLunSchema = z.union([
  z.number().int().min(0).max(16383).transform((n) => ({ lun: n, targetLun: n })),
  z.object({ lun: z.number().int().min(0).max(16383), targetLun: z.number().int().min(0).max(16383) }).strict(),
]);

/**
 * One initiator allowed on a target (LIO's node ACL): the LUNs it sees (all
 * of the target's, same numbers, when omitted) and its own CHAP credentials
 * (else the target's).
 */
const aclSchema = z
  .object({
    initiator: iqnSchema,
    luns: z.array(aclLunSchema).optional(),
    chap: chapSchema.optional(),
  })
  .strict();

const targetSchema = z
  .object({
    iqn: iqnSchema,
    alias: z.string().max(255).optional(),
    /** Addresses SendTargets announces for this target (each one of `listen`); default: all of `listen`. */
    portals: z.array(hostPortSchema).min(1).optional(),
    portalGroupTag: z.number().int().min(1).max(65535).default(1),
    chap: chapSchema.optional(),
    /** Once a target has ACL entries, every other initiator is refused. */
    acls: z.array(aclSchema).optional(),
    /** Shorthand for ACL entries with every LUN and the target's CHAP. */
    allowedInitiators: z.array(iqnSchema).optional(),
    /** How far copies issued on other targets may reach this target's LUs; default the top-level copyScope. */
    copyScope: copyScopeSchema.optional(),
    luns: z.array(lunSchema).min(1),
  })
  .strict()
  .superRefine((t, ctx) => tolerant(() => {
    const seen = new Set<number>();
    t.luns.forEach((l, i) => {
      if (seen.has(l.lun)) ctx.addIssue({ code: 'custom', path: ['luns', i, 'lun'], message: `LUN ${l.lun} is configured twice` });
      seen.add(l.lun);
    });
    const initiators = new Map<string, string>();
    const note = (name: string, path: Array<string | number>) => {
      const k = name.toLowerCase();
      if (initiators.has(k)) ctx.addIssue({ code: 'custom', path, message: `initiator ${name} already has an ACL entry (${initiators.get(k)})` });
      else initiators.set(k, path.join('.'));
    };
    t.acls?.forEach((a, i) => {
      note(a.initiator, ['acls', i, 'initiator']);
      const mine = new Set<number>();
      const theirs = new Set<number>();
      a.luns?.forEach((m, j) => {
        if (!seen.has(m.targetLun)) {
          ctx.addIssue({ code: 'custom', path: ['acls', i, 'luns', j], message: `the target has no LUN ${m.targetLun}` });
        }
        if (mine.has(m.lun)) ctx.addIssue({ code: 'custom', path: ['acls', i, 'luns', j], message: `LUN ${m.lun} mapped twice` });
        if (theirs.has(m.targetLun)) ctx.addIssue({ code: 'custom', path: ['acls', i, 'luns', j], message: `target LUN ${m.targetLun} mapped twice` });
        mine.add(m.lun);
        theirs.add(m.targetLun);
      });
    });
    t.allowedInitiators?.forEach((name, i) => note(name, ['allowedInitiators', i]));
  }), ALWAYS);

/** `rbd:<pool>/<image>` (QEMU's syntax): a Ceph RBD image, cluster mode only. */
const RBD_PATH = /^rbd:([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)$/;

/** The pool and image of an `rbd:` LUN path, or undefined for a file or block device. */
export function rbdLocation(p: string): { pool: string; image: string } | undefined {
  const m = RBD_PATH.exec(p);
  return m ? { pool: m[1], image: m[2] } : undefined;
}

/** Node ids go into etcd keys and log lines. */
const nodeIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'a node id is 1-63 letters, digits, ".", "_" or "-"');

/**
 * Several xcopyd nodes serving the same LUs (issue 15). The file is the same
 * on every node; `--node ID` (or XCOPYD_NODE) says which node a process is.
 * Each node is one target port group (ALUA) and listens on its own portal.
 */
const clusterSchema = z
  .object({
    /** The cluster's name: the prefix of its keys in etcd. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'a cluster name is 1-63 letters, digits, ".", "_" or "-"'),
    nodes: z
      .array(
        z
          .object({
            id: nodeIdSchema,
            /** host:port this node listens on and SendTargets announces. */
            portal: hostPortSchema,
            /** Its ALUA target port group (and iSCSI portal group tag); default its index + 1. */
            targetPortGroup: z.number().int().min(1).max(65535).optional(),
          })
          .strict(),
      )
      .min(1)
      .max(MAX_CLUSTER_NODES),
    etcd: z
      .object({
        endpoints: z.array(z.string().regex(/^https?:\/\/[^/\s]+\/?$/, 'an etcd endpoint is http(s)://host:port')).min(1),
        /** A node whose lease is this old without renewal is gone (its group unavailable). */
        leaseTtlSeconds: z.number().int().min(1).max(300).default(5),
      })
      .strict(),
    /** How nodes reach Ceph for `rbd:` LUNs; without it librados reads /etc/ceph/ceph.conf as client.admin. */
    ceph: z
      .object({
        conf: z.string().min(1).optional(),
        clientId: z.string().min(1).default('admin'),
        keyring: z.string().min(1).optional(),
        monHost: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((c, ctx) => tolerant(() => {
    const ids = new Map<string, number>();
    const portals = new Map<string, number>();
    const groups = new Map<number, number>();
    c.nodes.forEach((n, i) => {
      const once = <K>(m: Map<K, number>, k: K, field: string, what: string) => {
        if (m.has(k)) ctx.addIssue({ code: 'custom', path: ['nodes', i, field], message: `duplicate ${what} (also nodes.${m.get(k)})` });
        else m.set(k, i);
      };
      once(ids, n.id, 'id', 'node id');
      once(portals, n.portal, 'portal', 'portal');
      once(groups, n.targetPortGroup ?? i + 1, 'targetPortGroup', 'target port group');
    });
  }), ALWAYS);

export const configSchema = z
  .object({
    listen: z.array(hostPortSchema).min(1).default(['127.0.0.1:3260']),
    dataDir: z.string().default('data'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Where `xcopyd status` reaches the daemon (Unix socket, mode 0600); default <dataDir>/control.sock. */
    controlSocket: z.string().min(1).optional(),
    /** Prometheus endpoint, off unless `listen` is given (e.g. 127.0.0.1:9464). */
    metrics: z.object({ listen: hostPortSchema }).strict().optional(),
    /** INQUIRY identification of every LUN that does not set its own (ESXi copies only between LUNs of one product ID). */
    inquiry: z
      .object({ vendor: inquiryText(8).default('XCOPYD'), product: inquiryText(16).default('xcopyd disk'), revision: inquiryText(4).default('0001') })
      .strict()
      .default({ vendor: 'XCOPYD', product: 'xcopyd disk', revision: '0001' }),
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
    /** ODX ROD tokens (POPULATE TOKEN / WRITE USING TOKEN); every key defaults to the measured or standard value. */
    odx: z
      .object({
        /** Live tokens at once; one more is refused with INSUFFICIENT RESOURCES. */
        maxLiveTokens: z.number().int().min(1).max(1_000_000).optional(),
        /** Space the point-in-time side files may take; the oldest tokens are cancelled beyond it. */
        maxSideFileBytes: sizeSchema.optional(),
        /** VPD 8Fh OPTIMAL TRANSFER COUNT x block size (default: measured, scsi/copy/limits.ts). */
        optimalTransferBytes: sizeSchema.optional(),
        /** A foreground WRITE USING TOKEN completes partially after this long (Windows gives up at ~4 s). */
        wutDeadlineMs: z.number().int().min(100).max(3_600_000).optional(),
      })
      .strict()
      .default({}),
    /**
     * Copies (EXTENDED COPY CSCDs, ODX tokens) across targets: `acl` reaches another target only for an
     * initiator its ACL names; `sameInitiator` also for one logged in to it (src/copy-scope.ts).
     */
    copyScope: copyScopeSchema.default('acl'),
    /** Several nodes serving these targets (multipath, ALUA); absent = one node, as always. */
    cluster: clusterSchema.optional(),
    targets: z.array(targetSchema).min(1),
  })
  .strict()
  .superRefine((c, ctx) => tolerant(() => {
    const iqns = new Map<string, number>();
    const naas = new Map<string, string>();
    const serials = new Map<string, string>();
    const paths = new Map<string, string>();
    c.targets.forEach((t, i) => {
      const k = t.iqn.toLowerCase();
      if (iqns.has(k)) ctx.addIssue({ code: 'custom', path: ['targets', i, 'iqn'], message: `duplicate target IQN (also targets.${iqns.get(k)}.iqn)` });
      else iqns.set(k, i);
      t.portals?.forEach((p, j) => {
        if (!c.listen.includes(p)) ctx.addIssue({ code: 'custom', path: ['targets', i, 'portals', j], message: `${p} is not one of listen` });
      });
      t.luns.forEach((l, j) => tolerant(() => {
        const at = `targets.${i}.luns.${j}`;
        const once = (m: Map<string, string>, key: string | undefined, field: string, what: string) => {
          if (key === undefined) return;
          if (m.has(key)) ctx.addIssue({ code: 'custom', path: ['targets', i, 'luns', j, field], message: `duplicate ${what} (also ${m.get(key)})` });
          else m.set(key, at);
        };
        once(naas, l.naa?.toLowerCase(), 'naa', 'NAA designator');
        once(serials, l.serial, 'serial', 'serial number');
        once(paths, rbdLocation(l.path) ? l.path : lunPath(c.dataDir, l.path), 'path', 'backing path');
        if (l.path.startsWith('rbd:') && !rbdLocation(l.path)) {
          ctx.addIssue({ code: 'custom', path: ['targets', i, 'luns', j, 'path'], message: 'an RBD image is rbd:<pool>/<image>' });
        }
        if (c.cluster) {
          // Every node reports the same identity for an LU (multipath joins paths by it), so none is generated per node.
          if (l.naa === undefined) ctx.addIssue({ code: 'custom', path: ['targets', i, 'luns', j, 'naa'], message: 'in cluster mode every LUN gives its naa (the same on every node)' });
          if (l.serial === undefined) ctx.addIssue({ code: 'custom', path: ['targets', i, 'luns', j, 'serial'], message: 'in cluster mode every LUN gives its serial (the same on every node)' });
        } else if (rbdLocation(l.path)) {
          ctx.addIssue({ code: 'custom', path: ['targets', i, 'luns', j, 'path'], message: 'an rbd: LUN needs the cluster section (RBD images are the shared storage of a cluster)' });
        }
      }));
    });
  }), ALWAYS);

export type ParsedConfig = z.infer<typeof configSchema>;
type ParsedTarget = ParsedConfig['targets'][number];
type ParsedLun = ParsedTarget['luns'][number];

/** A LUN after loading: INQUIRY identification filled in from the defaults. */
export type LunConfig = Omit<ParsedLun, 'vendor' | 'product' | 'revision'> & { vendor: string; product: string; revision: string };
/** One ACL entry after loading; `luns` undefined = every LUN of the target, same numbers. */
export interface AclConfig {
  initiator: string;
  luns?: Array<{ lun: number; targetLun: number }>;
  chap?: ChapConfig;
}
/** A target after loading: allowedInitiators folded into `acls` (undefined = open to every initiator). */
export type TargetConfig = Omit<ParsedTarget, 'luns' | 'acls' | 'allowedInitiators' | 'chap'> & {
  luns: LunConfig[];
  acls?: AclConfig[];
  chap?: ChapConfig;
};
/** One cluster node after loading: its target port group filled in. */
export interface ClusterNodeConfig {
  id: string;
  portal: string;
  targetPortGroup: number;
}
type ParsedCluster = NonNullable<ParsedConfig['cluster']>;
/** The cluster section after loading; `self` is the node this process is (--node / XCOPYD_NODE). */
export type ClusterConfig = Omit<ParsedCluster, 'nodes'> & {
  nodes: ClusterNodeConfig[];
  self?: string;
};
export type Config = Omit<ParsedConfig, 'targets' | 'discoveryChap' | 'cluster'> & {
  targets: TargetConfig[];
  discoveryChap?: ChapConfig;
  cluster?: ClusterConfig;
  /** Resolved control socket path. */
  controlSocket: string;
};

/** Resolve a LUN path against the data directory. */
export function lunPath(dataDir: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(dataDir, p);
}
