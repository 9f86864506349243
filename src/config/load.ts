/**
 * Loading: YAML text or a file -> the schema -> secrets read from their
 * files, `allowedInitiators` folded into ACL entries, INQUIRY defaults
 * applied -> a frozen Config. Every problem is reported with its key path;
 * checkBackingPaths adds what only the filesystem can say.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import {
  chapSchema, chapSecretProblem, configSchema, lunPath, rbdLocation,
  type AclConfig, type ChapConfig, type ClusterConfig, type Config, type ParsedConfig, type TargetConfig,
} from './schema';

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly issues: string[],
  ) {
    super(message);
  }
}

export interface ValidateOptions {
  /** Where relative `secretFile` paths start (the configuration file's directory); default the working directory. */
  baseDir?: string;
  /** The cluster node this process is (--node / XCOPYD_NODE); must name one of cluster.nodes. */
  node?: string;
  /** A cluster configuration needs `node` (the daemon); --check-config checks the file for any node. */
  requireNode?: boolean;
}

/** Validate a parsed document; throws ConfigError listing every bad key with its path. */
export function validateConfig(doc: unknown, source = 'config', options: ValidateOptions = {}): Readonly<Config> {
  const r = configSchema.safeParse(doc);
  const fail = (issues: string[]): never => {
    throw new ConfigError(`${source} is invalid:\n  ${issues.join('\n  ')}`, issues);
  };
  const early = clusterDocumentIssues(doc, options);
  if (!r.success) fail([...r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`), ...early]);
  const issues: string[] = [...early];
  const config = normalize(r.data!, options.baseDir ?? process.cwd(), issues);
  if (r.data!.cluster) applyCluster(config, r.data!.cluster, options, issues);
  if (issues.length) fail(issues);
  return deepFreeze(config);
}

/**
 * What only the document as written shows in cluster mode: keys that have a
 * default (so the parsed config cannot tell them from absent) but that the
 * cluster section decides: a node listens on its own portal, SendTargets
 * announces every node's portal with that node's target port group as tag.
 */
function clusterDocumentIssues(doc: unknown, o: ValidateOptions): string[] {
  if (!doc || typeof doc !== 'object') return [];
  const d = doc as Record<string, unknown>;
  const issues: string[] = [];
  if (d.cluster === undefined) {
    if (o.node !== undefined) issues.push(`--node ${o.node}: the configuration has no cluster section`);
    return issues;
  }
  if (d.listen !== undefined) issues.push('listen: in cluster mode a node listens on its own portal (cluster.nodes[].portal)');
  if (Array.isArray(d.targets)) {
    d.targets.forEach((t: unknown, i) => {
      if (!t || typeof t !== 'object') return;
      const tt = t as Record<string, unknown>;
      if (tt.portals !== undefined) issues.push(`targets.${i}.portals: in cluster mode every node's portal is announced (cluster.nodes[].portal)`);
      if (tt.portalGroupTag !== undefined) issues.push(`targets.${i}.portalGroupTag: in cluster mode a node's portal group tag is its targetPortGroup`);
    });
  }
  return issues;
}

/** Cluster mode: target port groups filled in, this node chosen, its portal the one address it listens on. */
function applyCluster(config: Config, parsed: NonNullable<ParsedConfig['cluster']>, o: ValidateOptions, issues: string[]): void {
  const nodes = parsed.nodes.map((n, i) => ({ id: n.id, portal: n.portal, targetPortGroup: n.targetPortGroup ?? i + 1 }));
  const cluster: ClusterConfig = { ...parsed, nodes };
  if (o.node !== undefined) {
    const self = nodes.find((n) => n.id === o.node);
    if (!self) issues.push(`--node ${o.node}: not one of cluster.nodes (${nodes.map((n) => n.id).join(', ')})`);
    else {
      cluster.self = self.id;
      config.listen = [self.portal];
    }
  } else if (o.requireNode) {
    issues.push('cluster: which node is this? give --node ID (or XCOPYD_NODE)');
  }
  config.cluster = cluster;
}

/** Secrets from files, allowedInitiators folded into ACLs, INQUIRY defaults applied. */
function normalize(c: ParsedConfig, baseDir: string, issues: string[]): Config {
  const chap = (x: z.infer<typeof chapSchema> | undefined, at: string): ChapConfig | undefined => {
    if (!x) return undefined;
    const one = (cred: { user: string; secret?: string; secretFile?: string }, where: string) => {
      let secret = cred.secret ?? '';
      if (cred.secretFile !== undefined) {
        const file = path.resolve(baseDir, cred.secretFile);
        try {
          secret = fs.readFileSync(file, 'utf8').split(/\r?\n/)[0];
          const problem = chapSecretProblem(secret);
          if (problem) issues.push(`${where}.secretFile: ${problem} (in ${file})`);
        } catch (err) {
          issues.push(`${where}.secretFile: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      }
      return cred.secretFile === undefined ? { user: cred.user, secret } : { user: cred.user, secret, secretFile: cred.secretFile };
    };
    const out: ChapConfig = one(x, at);
    if (x.mutual) {
      out.mutual = one(x.mutual, `${at}.mutual`);
      if (out.mutual.secret === out.secret) issues.push(`${at}.mutual.secret: mutual CHAP must not reuse the initiator secret`);
    }
    return out;
  };
  const targets: TargetConfig[] = c.targets.map((t, i) => {
    const { allowedInitiators, acls: parsedAcls, luns, chap: tchap, ...rest } = t;
    let acls: AclConfig[] | undefined;
    if (parsedAcls || allowedInitiators) {
      acls = [
        ...(parsedAcls ?? []).map((a, j) => {
          const e: AclConfig = { initiator: a.initiator };
          if (a.luns) e.luns = a.luns;
          const ac = chap(a.chap, `targets.${i}.acls.${j}.chap`);
          if (ac) e.chap = ac;
          return e;
        }),
        ...(allowedInitiators ?? []).map((initiator) => ({ initiator })),
      ];
    }
    const target: TargetConfig = {
      ...rest,
      luns: luns.map((l) => ({
        ...l,
        vendor: l.vendor ?? c.inquiry.vendor,
        product: l.product ?? c.inquiry.product,
        revision: l.revision ?? c.inquiry.revision,
      })),
    };
    const tc = chap(tchap, `targets.${i}.chap`);
    if (tc) target.chap = tc;
    if (acls) target.acls = acls;
    return target;
  });
  const { discoveryChap, cluster: _cluster, ...rest } = c; // the cluster section: applyCluster
  const out: Config = { ...rest, targets, controlSocket: c.controlSocket ?? path.join(c.dataDir, 'control.sock') };
  const dc = chap(discoveryChap, 'discoveryChap');
  if (dc) out.discoveryChap = dc;
  return out;
}

/**
 * What the schema cannot see: each LUN's backing file or device. A missing
 * path is fine when the LUN gives a size (it is created sparse); otherwise it
 * is reported with the key's path, as is anything that is not a regular file
 * or block device.
 */
export function checkBackingPaths(config: Readonly<Config>): string[] {
  const issues: string[] = [];
  config.targets.forEach((t, i) => {
    t.luns.forEach((l, j) => {
      if (rbdLocation(l.path)) return; // an RBD image: only librados can tell (opened at start)
      const at = `targets.${i}.luns.${j}.path`;
      const file = lunPath(config.dataDir, l.path);
      let st: fs.Stats | undefined;
      try {
        st = fs.statSync(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') issues.push(`${at}: ${file}: ${(err as NodeJS.ErrnoException).code}`);
      }
      if (!st) {
        if (l.size === undefined) issues.push(`${at}: ${file} does not exist (give size to create it)`);
        else if (l.readOnly) issues.push(`${at}: ${file} does not exist and a read-only LUN is not created`);
        else if (file.startsWith('/dev/')) issues.push(`${at}: block device ${file} does not exist`);
      } else if (!st.isFile() && !st.isBlockDevice()) {
        issues.push(`${at}: ${file} is not a regular file or block device`);
      }
    });
  });
  return issues;
}

export function parseConfigText(text: string, source: string, options: ValidateOptions = {}): Readonly<Config> {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`${source}: YAML error: ${(err as Error).message}`, [(err as Error).message]);
  }
  return validateConfig(doc, source, options);
}

export function loadConfigFile(file: string, o: Omit<ValidateOptions, 'baseDir'> = {}): Readonly<Config> {
  return parseConfigText(fs.readFileSync(file, 'utf8'), file, { ...o, baseDir: path.dirname(path.resolve(file)) });
}

/**
 * Load and check a file completely (schema, secrets, backing paths): --check-config and SIGHUP.
 * A cluster file is checked for `o.node` when given, else for any of its nodes.
 */
export function checkConfigFile(file: string, o: Omit<ValidateOptions, 'baseDir'> = {}): Readonly<Config> {
  const config = loadConfigFile(file, o);
  const issues = checkBackingPaths(config);
  if (issues.length) throw new ConfigError(`${file} is invalid:\n  ${issues.join('\n  ')}`, issues);
  return config;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
  }
  return o;
}
