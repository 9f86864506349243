/**
 * TokenState kept in this process (the single-node default; scsi/state/lu-state.ts
 * has the contract): the records of live tokens and their tombstones in one
 * Map, and one sealing key (the data directory's secret, id 0). Every change
 * is applied before the returned promise is made, so the token store's
 * synchronous paths see it at once. A tombstone keeps the record's state
 * only (not its token bytes or ranges), and there are at most maxTombstones
 * of them: past that the oldest go first (a late use of such a token is
 * then told EXPIRED or CANCELLED by its creation time, no longer exactly).
 */
import type { SealingKey, TokenInvalidation, TokenRecord, TokenState } from '../state/lu-state';
import { MAX_TOMBSTONES } from './limits';

const NO_BYTES = Buffer.alloc(0);

export class LocalTokenState implements TokenState {
  private readonly records = new Map<string, TokenRecord>();
  private readonly tombstoneUntil = new Map<string, number>();
  private readonly key: SealingKey;
  /** Tunable (tests, operators). */
  maxTombstones = MAX_TOMBSTONES;

  constructor(secret: Buffer) {
    this.key = { id: 0, secret };
  }

  sealingKey(): SealingKey {
    return this.key;
  }

  sealingKeyById(id: number): SealingKey | undefined {
    return id === this.key.id ? this.key : undefined;
  }

  get(key: string): TokenRecord | undefined {
    return this.records.get(key);
  }

  list(): readonly TokenRecord[] {
    return [...this.records.values()];
  }

  create(record: TokenRecord): Promise<void> {
    if (this.records.has(record.key)) return Promise.reject(new Error(`token ${record.key} exists`));
    this.records.set(record.key, record);
    return Promise.resolve();
  }

  touch(key: string, at: number): Promise<void> {
    const r = this.records.get(key);
    if (r) r.lastUse = at;
    return Promise.resolve();
  }

  invalidate(key: string, why: TokenInvalidation, tombstoneUntil: number): Promise<void> {
    const r = this.records.get(key);
    if (r && r.state === 'live') {
      r.state = why; // the record a token in use holds sees it too
      this.records.set(key, { ...r, bytes: NO_BYTES, ranges: [] });
      this.tombstoneUntil.set(key, tombstoneUntil);
      for (const oldest of this.tombstoneUntil.keys()) {
        if (this.tombstoneUntil.size <= this.maxTombstones) break;
        this.tombstoneUntil.delete(oldest);
        this.records.delete(oldest);
      }
    }
    return Promise.resolve();
  }

  /** Tombstones kept now. */
  get tombstones(): number {
    return this.tombstoneUntil.size;
  }

  /** Forget tombstones whose time has passed (the store's sweep); the number of records left. */
  forget(now: number): number {
    for (const [key, until] of this.tombstoneUntil) {
      if (until <= now) {
        this.tombstoneUntil.delete(key);
        this.records.delete(key);
      }
    }
    return this.records.size;
  }
}
