/**
 * TokenState kept in this process (the single-node default; scsi/state/lu-state.ts
 * has the contract): the records of live tokens and their tombstones in one
 * Map, and one sealing key (the data directory's secret, id 0). Every change
 * is applied before the returned promise is made, so the token store's
 * synchronous paths see it at once.
 */
import type { SealingKey, TokenInvalidation, TokenRecord, TokenState } from '../state/lu-state';

export class LocalTokenState implements TokenState {
  private readonly records = new Map<string, TokenRecord>();
  private readonly tombstoneUntil = new Map<string, number>();
  private readonly key: SealingKey;

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
      r.state = why;
      this.tombstoneUntil.set(key, tombstoneUntil);
    }
    return Promise.resolve();
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
