/**
 * The point in time of ROD tokens (SPC-5 5.17.6.2; reference 2.11, 2.12):
 * what a token reads, and the write guard that keeps it.
 *
 *  - clone (the filesystem shares extents): POPULATE TOKEN clones the ranges
 *    into a per-token side file; the token reads only from it. Writes to the
 *    source cost nothing here except the space accounting.
 *  - cow (elsewhere): the token reads the source live; before a write lands
 *    on a range it covers (LogicalUnit.beforeWrite), the old extent is copied
 *    by the data mover to the side file, and the token reads that part there.
 *  - vulnerable (RTV=1, change vulnerable): reads live; a write to a covered
 *    range cancels it.
 *  - reference (access upon reference): reads live, as FreeBSD does.
 *
 * A read from the live source registers the source range as in flight; a
 * writer's guard waits for overlapping reads after it has saved, so no copy
 * ever sees a torn mix of old and new bytes.
 */
import type { Logger } from 'pino';
import type { BackingStore } from '../backing-store';
import type { LogicalUnit, WriteGuard } from '../logical-unit';
import { SenseError } from '../sense';
import { CopyIoError, moveData } from './mover';
import { StepPacer } from './step-pacer';
import { INVALIDATION_SENSE, SIDE_FILE_ALIGNMENT, type InFlight, type Invalidation, type MappedPiece, type RodToken, type SideFile, type SideFileFactory } from './token-record';

/** The largest step of taking a token's image (a clone is metadata: bigger than a copy step). */
const IMAGE_STEP_BYTES = 256 * 1024 * 1024;

/** What the guard needs of the token store. */
export interface PointInTimeHost {
  readonly logger: Logger;
  readonly sideFiles: SideFileFactory;
  /** Account `bytes` more side-file space to `t`; false if `t` itself had to be cancelled. */
  reserve(t: RodToken, bytes: number): boolean;
  invalidate(t: RodToken, why: Invalidation): void;
  hold(t: RodToken): void;
  release(t: RodToken): void;
}

export class PointInTime {
  private readonly byLu = new Map<LogicalUnit, Set<RodToken>>();
  private readonly guard: WriteGuard;

  constructor(private readonly host: PointInTimeHost) {
    this.guard = (lu, offset, length) => this.beforeWrite(lu, offset, length);
  }

  /**
   * clone mode: share the ranges into the side file. A filesystem that will
   * not clone turns the token into cow; so does the deadline (Windows'
   * budget: a POPULATE TOKEN must end in time) for the part not taken yet,
   * which the write guard then saves when it is about to change.
   */
  async takeImage(token: RodToken, o: { signal?: AbortSignal; deadline?: number } = {}): Promise<void> {
    const side = await this.sideOf(token);
    if (!side.store.canClone) {
      token.mode = 'cow';
      return;
    }
    const pacer = new StepPacer(o.deadline ?? Infinity, IMAGE_STEP_BYTES, token.blockSize);
    for (const p of token.mapRod(0, token.bytesRepresented)) {
      for (let done = 0; done < p.bytes; ) {
        const want = pacer.next();
        if (want === 0) {
          this.host.logger.debug({ token: token.key, imaged: token.saved.total, bytes: token.bytesRepresented }, 'POPULATE TOKEN deadline: the rest is copy on write');
          token.mode = 'cow';
          return;
        }
        let n = Math.min(want, p.bytes - done);
        // End a step that stops inside the range on a source offset aligned to the clone unit (the
        // side file is congruent to it): a step edge inside a block would copy that block, not clone it.
        const edge = Math.floor((p.src + done + n) / SIDE_FILE_ALIGNMENT) * SIDE_FILE_ALIGNMENT - p.src;
        if (done + n < p.bytes && edge > done) n = edge - done;
        await pacer.step(n, () => copyBetween(token.lu.store, side.store, p.src + done, p.side + done, n, o.signal));
        token.saved.add(p.rod + done, p.rod + done + n);
        token.cloned.add(p.rod + done, p.rod + done + n);
        done += n;
      }
    }
  }

  /** Guard the token's source ranges (every mode but reference). */
  watch(token: RodToken): void {
    if (token.mode === 'reference') return;
    let set = this.byLu.get(token.lu);
    if (!set) {
      set = new Set();
      this.byLu.set(token.lu, set);
      token.lu.addWriteGuard(this.guard);
    }
    set.add(token);
  }

  unwatch(token: RodToken): void {
    const set = this.byLu.get(token.lu);
    if (!set) return;
    set.delete(token);
    if (set.size === 0) {
      this.byLu.delete(token.lu);
      token.lu.removeWriteGuard(this.guard);
    }
  }

  // ---- reading the ROD ---------------------------------------------------------------

  /**
   * Copy ROD bytes [rod, rod+n) to `dst` at dstOffset (the caller holds the
   * destination range and has run its write guard).
   */
  async readInto(t: RodToken, dst: BackingStore, rod: number, dstOffset: number, n: number, signal?: AbortSignal): Promise<void> {
    for (const p of t.mapRod(rod, n)) {
      const at = dstOffset + (p.rod - rod);
      if (t.mode === 'clone' || t.mode === 'cow') {
        // One piece at a time, each looked up in `saved` right before it is read: a writer may
        // save (and then overwrite) a later piece while an earlier one is being copied. The
        // lookup and readLive's in-flight registration happen in the same tick.
        for (let a = p.rod; a < p.rod + p.bytes; ) {
          const [, b, saved] = t.saved.split(a, p.rod + p.bytes)[0];
          if (saved) {
            if (!t.side) throw new SenseError('TOKEN_CANCELLED');
            await copyBetween(t.side.store, dst, p.side + (a - p.rod), at + (a - p.rod), b - a, signal);
          } else {
            await this.readLive(t, p.src + (a - p.rod), dst, at + (a - p.rod), b - a, signal);
          }
          a = b;
        }
      } else {
        await this.readLive(t, p.src, dst, at, p.bytes, signal);
      }
      if (t.state !== 'live') throw new SenseError(INVALIDATION_SENSE[t.state]);
    }
  }

  /** Read straight from the source, registered so a writer waits for it after saving. */
  private async readLive(t: RodToken, src: number, dst: BackingStore, dstOffset: number, n: number, signal?: AbortSignal): Promise<void> {
    if (t.state !== 'live') throw new SenseError(INVALIDATION_SENSE[t.state]);
    let finish!: () => void;
    const entry: InFlight = { start: src, end: src + n, done: new Promise<void>((r) => (finish = r)) };
    t.inflight.add(entry);
    try {
      await copyBetween(t.lu.store, dst, src, dstOffset, n, signal);
    } finally {
      t.inflight.delete(entry);
      finish();
    }
  }

  // ---- the write guard ---------------------------------------------------------------

  /** LogicalUnit.beforeWrite for LUs with watched tokens. */
  private async beforeWrite(lu: LogicalUnit, offset: number, length: number): Promise<void> {
    const set = this.byLu.get(lu);
    if (!set) return;
    for (const t of [...set]) {
      if (t.state !== 'live') continue;
      const pieces = t.mapSource(offset, length);
      if (pieces.length === 0) continue;
      if (t.mode === 'vulnerable') {
        await waitInflight(t, offset, length);
        this.host.invalidate(t, 'cancelled'); // SPC-5: change vulnerable tokens may be invalidated by writes
        continue;
      }
      this.host.hold(t);
      try {
        // Cloned parts: the side file shares them until the source changes; from then on they cost space.
        if (this.diverge(t, pieces) && t.mode === 'cow') await this.save(t, pieces);
        await waitInflight(t, offset, length);
      } finally {
        this.host.release(t);
      }
    }
  }

  /** Account the cloned parts of `pieces` that diverge now; false if the token had to be cancelled. */
  private diverge(t: RodToken, pieces: MappedPiece[]): boolean {
    for (const p of pieces) {
      for (const [a, b, cloned] of t.cloned.split(p.rod, p.rod + p.bytes)) {
        if (!cloned) continue;
        for (const [x, y, known] of t.diverged.split(a, b)) {
          if (known) continue;
          if (!this.host.reserve(t, y - x)) return false;
          t.diverged.add(x, y);
        }
      }
    }
    return true;
  }

  /** cow: copy the not yet saved parts of `pieces` from the source into the side file. */
  private async save(t: RodToken, pieces: MappedPiece[]): Promise<void> {
    for (const p of pieces) {
      for (const [a, b, saved] of t.saved.split(p.rod, p.rod + p.bytes)) {
        if (saved) continue;
        if (!this.host.reserve(t, b - a)) return;
        const side = await this.sideOf(t);
        if (t.state !== 'live') return;
        await copyBetween(t.lu.store, side.store, p.src + (a - p.rod), p.side + (a - p.rod), b - a);
        t.saved.add(a, b);
      }
    }
  }

  /** The token's side file, made once even when several writers save at the same time. */
  private sideOf(t: RodToken): Promise<SideFile> {
    if (t.side) return Promise.resolve(t.side);
    t.sideMaking ??= this.host.sideFiles({ name: t.key, bytes: t.sideBytes, blockSize: t.blockSize, source: t.lu.store }).then(
      (side) => (t.side = side),
      (err: unknown) => {
        t.sideMaking = undefined;
        throw err;
      },
    );
    return t.sideMaking;
  }
}

async function waitInflight(t: RodToken, offset: number, length: number): Promise<void> {
  const end = offset + length;
  for (;;) {
    const hit = [...t.inflight].filter((f) => f.start < end && offset < f.end);
    if (hit.length === 0) return;
    await Promise.all(hit.map((f) => f.done));
  }
}

/**
 * Move bytes between two stores with the copy engine's one data mover; a
 * failure comes out as the store's own error (a writer's guard or a WUT maps it).
 */
async function copyBetween(src: BackingStore, dst: BackingStore, srcOffset: number, dstOffset: number, n: number, signal?: AbortSignal): Promise<void> {
  try {
    await moveData(src, dst, srcOffset, dstOffset, n, { signal });
  } catch (err) {
    throw err instanceof CopyIoError ? err.failure : err;
  }
}
