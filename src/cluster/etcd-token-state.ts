/**
 * TokenState in etcd (issue 15; scsi/state/lu-state.ts has the contract): a
 * ROD token made by POPULATE TOKEN on one node is found, verified and used
 * by WRITE USING TOKEN on another. Under /xcopyd/<cluster>/tokens/:
 *
 *  - `keys/<id>`: a sealing key {id, secret (base64)}; `current`: the id new
 *    tokens are sealed with. The first node creates key 1 and `current` in
 *    one create-if-absent transaction; every other node reads them. A
 *    rotation (rotateSealingKey) adds key id+1 and moves `current`; older
 *    keys stay, so tokens sealed with them still verify.
 *  - `rec/<token id hex>`: a token's record (bytes and bigints as text).
 *    create is a create-if-absent transaction; touch and invalidate are
 *    compare-and-swap on the record's mod revision, re-read on a conflict;
 *    invalidate keeps the first reason. A tombstone (state not 'live', token
 *    bytes and ranges dropped) is put under a lease of the time it must
 *    stay: etcd deletes it then, on every node at once.
 *
 * Reads (sealingKey, get, list) are synchronous, from a replica a watch
 * keeps current; this node's own changes are in the replica before their
 * promise resolves. A record object handed out is updated in place when its
 * state or last use changes (a token in use sees its invalidation), as in
 * LocalTokenState. Secrets are never logged.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { SealingKey, TokenInvalidation, TokenRecord, TokenState } from '../../scsi/state/lu-state';
import { keys as keyLayout } from './membership';
import { WatchProgress, withTimeout as within } from './etcd-progress';

const MAX_ATTEMPTS = 16;
const OP_TIMEOUT_MS = 5_000;
const withTimeout = <T>(p: Promise<T>, what: string): Promise<T> => within(p, OP_TIMEOUT_MS, what);
/** A transaction's gRPC deadline: the client sends nothing after it (no late resend of a change reported failed). */
const deadline = () => ({ deadline: Date.now() + OP_TIMEOUT_MS });
/** Bytes of a new sealing key (HMAC-SHA256 key size). */
export const SEALING_KEY_BYTES = 32;

interface WireRecord extends Omit<TokenRecord, 'bytes' | 'capacity'> {
  bytes: string;
  capacity: string;
}

function toWire(r: TokenRecord): string {
  const w: WireRecord = { ...r, bytes: r.bytes.toString('base64'), capacity: r.capacity.toString() };
  return JSON.stringify(w);
}

function fromWire(text: string): TokenRecord {
  const w = JSON.parse(text) as WireRecord;
  return { ...w, bytes: Buffer.from(w.bytes, 'base64'), capacity: BigInt(w.capacity) };
}

export interface EtcdTokenStateOptions {
  client: Etcd3;
  cluster: string;
  nodeId: string;
  log: Logger;
}

export class EtcdTokenState implements TokenState {
  private readonly records = new Map<string, { rec: TokenRecord; rev: number }>();
  private readonly sealing = new Map<number, SealingKey>();
  private currentId = 0;
  private readonly prefix: string;
  private readonly log: Logger;
  private watcher: Watcher | undefined;
  private closed = false;
  /** How far the replica has got (its first read, then the watch). */
  readonly progress = new WatchProgress();
  /** The etcd revision of this instance's last change. */
  committedRevision = 0;

  private constructor(private readonly o: EtcdTokenStateOptions) {
    this.prefix = keyLayout.tokens(o.cluster);
    this.log = o.log.child({ component: 'etcd-token-state', node: o.nodeId });
  }

  /** Create the first sealing key if the cluster has none, read everything, and watch. */
  static async open(o: EtcdTokenStateOptions): Promise<EtcdTokenState> {
    const s = new EtcdTokenState(o);
    await s.start();
    return s;
  }

  private k(rest: string): string {
    return `${this.prefix}${rest}`;
  }

  private async start(): Promise<void> {
    const { client } = this.o;
    const first: SealingKey = { id: 1, secret: randomBytes(SEALING_KEY_BYTES) };
    const made = await withTimeout(
      client
        .if(this.k('current'), 'Create', '==', 0)
        .then(client.put(this.k(`keys/${first.id}`)).value(JSON.stringify({ id: first.id, secret: first.secret.toString('base64') })), client.put(this.k('current')).value(String(first.id)))
        .options(deadline()).commit(),
      'sealing key',
    );
    if (made.succeeded) this.log.info({ keyId: first.id }, 'made the cluster\'s first ROD token sealing key');
    await this.load();
    if (!this.sealing.has(this.currentId)) throw new Error(`sealing key ${this.currentId} named current but absent`);
    this.log.info({ keyId: this.currentId, records: this.records.size }, 'token state loaded from etcd');
  }

  /** Read every key under tokens/ and watch from there (at start, and when etcd canceled the watch). */
  private async load(): Promise<void> {
    const { client } = this.o;
    const res = await withTimeout(client.getAll().prefix(this.prefix).exec(), 'token records');
    const present = new Set<string>();
    for (const kv of res.kvs) {
      this.applyPut(kv);
      const key = kv.key.toString().slice(this.prefix.length);
      if (key.startsWith('rec/')) present.add(key.slice(4));
    }
    for (const key of [...this.records.keys()]) if (!present.has(key)) this.records.delete(key);
    const rev = Number(res.header.revision);
    this.progress.advance(rev);
    const w = await client.watch().prefix(this.prefix).startRevision(String(rev + 1)).create();
    if (this.closed) {
      await w.cancel();
      return;
    }
    this.watcher = w;
    w.on('data', (r: IWatchResponse) => {
      for (const ev of r.events) {
        if (ev.type === 'Put') this.applyPut(ev.kv);
        else this.applyDelete(ev.kv);
      }
      this.progress.advance(Number(r.header.revision));
    });
    w.on('error', (err) => {
      if (this.closed || this.watcher !== w) return;
      this.watcher = undefined;
      this.log.warn({ err: String(err) }, 'token watch canceled; reading the tokens again');
      void w.cancel().catch(() => undefined);
      this.reload();
    });
  }

  private reload(attempt = 0): void {
    if (this.closed) return;
    this.load().catch((err: unknown) => {
      this.log.warn({ err: String(err), attempt }, 'reading the tokens again failed; retrying');
      const t = setTimeout(() => this.reload(attempt + 1), Math.min(5_000, 200 * 2 ** Math.min(attempt, 5)));
      t.unref();
    });
  }

  private applyPut(kv: IKeyValue): void {
    const key = kv.key.toString().slice(this.prefix.length);
    const value = kv.value.toString();
    try {
      if (key === 'current') {
        this.currentId = Number(value);
      } else if (key.startsWith('keys/')) {
        const w = JSON.parse(value) as { id: number; secret: string };
        this.sealing.set(w.id, { id: w.id, secret: Buffer.from(w.secret, 'base64') });
      } else if (key.startsWith('rec/')) {
        this.adopt(fromWire(value), Number(kv.mod_revision));
      }
    } catch (err) {
      this.log.warn({ key, err: String(err) }, 'unreadable token state entry ignored');
    }
  }

  private applyDelete(kv: IKeyValue): void {
    const key = kv.key.toString().slice(this.prefix.length);
    if (key.startsWith('rec/')) this.records.delete(key.slice(4));
  }

  /** Take a record read at `rev` unless the replica has a newer one; update a handed-out object in place. */
  private adopt(rec: TokenRecord, rev: number): void {
    const had = this.records.get(rec.key);
    if (had && had.rev >= rev) return;
    if (had) {
      had.rec.state = rec.state;
      had.rec.lastUse = rec.lastUse;
      if (rec.state === 'live') {
        had.rev = rev;
        return;
      }
    }
    this.records.set(rec.key, { rec, rev });
  }

  sealingKey(): SealingKey {
    const k = this.sealing.get(this.currentId);
    if (!k) throw new Error('no sealing key loaded');
    return k;
  }

  sealingKeyById(id: number): SealingKey | undefined {
    return this.sealing.get(id);
  }

  get(key: string): TokenRecord | undefined {
    return this.records.get(key)?.rec;
  }

  list(): readonly TokenRecord[] {
    return [...this.records.values()].map((x) => x.rec);
  }

  async create(record: TokenRecord): Promise<void> {
    const { client } = this.o;
    const k = this.k(`rec/${record.key}`);
    const res = await withTimeout(client.if(k, 'Create', '==', 0).then(client.put(k).value(toWire(record))).options(deadline()).commit(), 'token create');
    if (!res.succeeded) throw new Error(`token ${record.key} exists`);
    this.committedRevision = Number(res.header.revision);
    // The caller's object is the record (its state is updated in place later), even when the
    // watch brought this same revision in first.
    const had = this.records.get(record.key);
    if (had && had.rev === this.committedRevision) had.rec = record;
    else this.adopt(record, this.committedRevision);
  }

  /**
   * Read-modify-write of one record as a compare-and-swap on its mod revision: `next` gives
   * the new record (and a lease to put it under) from the current one, or undefined to leave
   * it. The fresh record comes back with a lost compare.
   */
  private async update(key: string, what: string, next: (cur: TokenRecord) => { rec: TokenRecord; ttlSeconds?: number } | undefined): Promise<void> {
    const { client } = this.o;
    const k = this.k(`rec/${key}`);
    let cur = this.records.get(key);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (!cur) {
        // Not in the replica (yet): read it.
        const got = await withTimeout(client.get(k).exec(), what);
        const kv = got.kvs[0];
        if (!kv) return;
        cur = { rec: fromWire(kv.value.toString()), rev: Number(kv.mod_revision) };
      }
      const n = next(cur.rec);
      if (!n) return;
      let leaseId: string | undefined;
      const lease = n.ttlSeconds === undefined ? undefined : client.lease(n.ttlSeconds, { autoKeepAlive: false });
      if (lease) leaseId = await withTimeout(lease.grant(), `${what} lease`);
      const put = client.put(k).value(toWire(n.rec));
      if (leaseId !== undefined) put.lease(leaseId);
      const res = await withTimeout(client.if(k, 'Mod', '==', cur.rev).then(put).else(client.get(k)).options(deadline()).commit(), what);
      if (res.succeeded) {
        this.committedRevision = Number(res.header.revision);
        this.adopt(n.rec, this.committedRevision);
        return;
      }
      if (lease) await lease.revoke().catch(() => undefined);
      const fresh = res.responses[0]?.response_range?.kvs[0];
      if (!fresh) return; // gone meanwhile (its tombstone expired): nothing to do
      cur = { rec: fromWire(fresh.value.toString()), rev: Number(fresh.mod_revision) };
      this.adopt(cur.rec, cur.rev);
    }
    throw new Error(`${what} ${key}: lost ${MAX_ATTEMPTS} attempts to concurrent changes`);
  }

  touch(key: string, at: number): Promise<void> {
    return this.update(key, 'token touch', (cur) => (cur.state === 'live' && at > cur.lastUse ? { rec: { ...cur, lastUse: at } } : undefined));
  }

  invalidate(key: string, why: TokenInvalidation, tombstoneUntil: number): Promise<void> {
    return this.update(key, 'token invalidate', (cur) => {
      if (cur.state !== 'live') return undefined; // the first reason stays
      const ttlSeconds = Math.max(1, Math.ceil((tombstoneUntil - Date.now()) / 1000));
      return { rec: { ...cur, state: why, bytes: Buffer.alloc(0), ranges: [] }, ttlSeconds };
    });
  }

  /** A new sealing key becomes current (id + 1); the old ones stay for the tokens sealed with them. */
  async rotateSealingKey(): Promise<SealingKey> {
    const { client } = this.o;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const cur = await withTimeout(client.get(this.k('current')).exec(), 'sealing key rotation');
      const kv = cur.kvs[0];
      const id = Number(kv.value.toString()) + 1;
      const key: SealingKey = { id, secret: randomBytes(SEALING_KEY_BYTES) };
      const res = await withTimeout(
        client
          .if(this.k('current'), 'Mod', '==', Number(kv.mod_revision))
          .then(client.put(this.k(`keys/${id}`)).value(JSON.stringify({ id, secret: key.secret.toString('base64') })), client.put(this.k('current')).value(String(id)))
          .options(deadline()).commit(),
        'sealing key rotation',
      );
      if (res.succeeded) {
        this.committedRevision = Number(res.header.revision);
        this.sealing.set(id, key);
        this.currentId = id;
        this.log.info({ keyId: id }, 'ROD token sealing key rotated');
        return key;
      }
    }
    throw new Error('sealing key rotation lost every attempt');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.watcher?.cancel().catch(() => undefined);
  }
}
