/**
 * RBD backing store: an LU on a Ceph RBD image that every node of an xcopyd
 * cluster serves at once (issue 15). Config path `rbd:<pool>/<image>`
 * (QEMU's syntax); the cluster comes from the config's `ceph:` section.
 *
 * - Data calls are librbd aio (./rbd.ts), never blocking the event loop.
 *   rbd_cache is off: a write is on the OSD when it is acknowledged, and
 *   every node sees every other node's writes.
 * - FUA = write, then flush. punchHole = rbd write_zeroes (whole objects are
 *   deallocated, partial ones zeroed: reads return zeros, LBPRZ holds; a
 *   plain discard skips partial objects by default, rbd_skip_partial_discard).
 * - seekData/seekHole from rbd_diff_iterate2 (object granularity without the
 *   object map: an allocated object counts as data from its start to its end).
 * - compareAndWrite is rbd_compare_and_write, atomic in the OSD, so COMPARE
 *   AND WRITE (VMware ATS) is atomic across nodes; librbd takes one aligned
 *   512-byte sector (compareAndWriteMaxBytes).
 * - copyRange moves the bytes through this gateway (RADOS copy-from is C++
 *   only): 4 MiB pieces, four at a time, source holes (diff_iterate2) made
 *   holes in the destination instead of read and written; measured against
 *   the core's serial 1 MiB fallback in test/bench/rbd-store.ts.
 *
 * Fencing: at open each writable store takes an advisory shared lock on the
 * image (cookie = node id, tag 'xcopyd'); any number of nodes hold it and
 * write concurrently (no exclusive-lock feature: its managed lock would move
 * between writers on every write). fence(nodeId) breaks that node's locks;
 * librbd blocklists the holder's client first (rbd_blocklist_on_break_lock,
 * Ceph's default), so its later and in-flight operations fail with -108
 * ESHUTDOWN. Measured (test/interop/cluster-rbd.test.ts): break ~0.8 s on
 * a one-mon memstore cluster, the fenced client's next write fails at once.
 * One librados client per (cluster, node id) in a process, shared by its
 * stores: fencing a node fences all its images' I/O.
 *
 * Snapshots serve ROD tokens across nodes: createSnapshot/removeSnapshot and
 * readSnapshot (the image opened read-only at the snapshot).
 */
import type { Logger } from 'pino';
import { abortReason } from '../../scsi/abort';
import type { BackingStore, CopyRangeOptions, CopyRangeResult, WriteOptions } from '../../scsi/backing-store';
import { ENOENT, EEXIST, ESHUTDOWN, RBD_FEATURE_EXCLUSIVE_LOCK, RBD_FEATURE_LAYERING, RadosCluster, RbdImage, createImage, type RbdIoMode } from './rbd';

export interface RbdLocation {
  pool: string;
  image: string;
}

/** The config's `cluster.ceph` section. */
export interface CephConnection {
  conf?: string;
  clientId: string;
  keyring?: string;
  monHost?: string;
}

export interface RbdStoreOptions {
  blockSize: number;
  physicalBlockSize?: number;
  readOnly: boolean;
  /** Create the image with this size if it does not exist. */
  createSizeBytes?: number;
  /** This node's id: the lock cookie, and what fence() names. */
  nodeId: string;
  log: Logger;
  /** Completion mode (default 'aio'; 'pool' only for measurements). */
  ioMode?: RbdIoMode;
}

/** The advisory lock's tag: every xcopyd node shares it. */
export const RBD_LOCK_TAG = 'xcopyd';
/** diff_iterate2 looks this far ahead per call when seeking. */
const SEEK_WINDOW = 1024 * 1024 * 1024;
/** copyRange's piece (one default RBD object) and how many are in flight. */
const COPY_PIECE = 4 * 1024 * 1024;
const COPY_DEPTH = 4;

/** `rbd:<pool>/<image>` -> its parts, or null when `path` is not an RBD path. */
export function parseRbdPath(path: string): RbdLocation | null {
  const m = /^rbd:([^/@:]+)\/([^/@:]+)$/.exec(path);
  return m ? { pool: m[1], image: m[2] } : null;
}

interface SharedClient {
  cluster: Promise<RadosCluster>;
  users: number;
}
const clients = new Map<string, SharedClient>();

function clientKey(ceph: CephConnection, nodeId: string): string {
  return JSON.stringify([ceph.conf ?? '', ceph.clientId, ceph.keyring ?? '', ceph.monHost ?? '', nodeId]);
}

async function acquireClient(ceph: CephConnection, nodeId: string): Promise<{ cluster: RadosCluster; release: () => Promise<void> }> {
  const key = clientKey(ceph, nodeId);
  let c = clients.get(key);
  if (!c) {
    c = {
      cluster: RadosCluster.connect({ conf: ceph.conf, clientId: ceph.clientId, keyring: ceph.keyring, monHost: ceph.monHost }),
      users: 0,
    };
    clients.set(key, c);
    c.cluster.catch(() => clients.delete(key));
  }
  c.users++;
  const entry = c;
  let cluster: RadosCluster;
  try {
    cluster = await entry.cluster;
  } catch (err) {
    entry.users--;
    throw err;
  }
  let released = false;
  return {
    cluster,
    release: async () => {
      if (released) return;
      released = true;
      if (--entry.users === 0) {
        if (clients.get(key) === entry) clients.delete(key);
        await cluster.shutdown();
      }
    },
  };
}

function eofError(what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${what} is closed`), { code: 'EBADF' });
}

export class RbdStore implements BackingStore {
  readonly blockSize: number;
  readonly physicalBlockSize: number;
  private size: number;
  readonly readOnly: boolean;
  readonly canPunchHole: boolean;
  readonly canSeekData = true;
  readonly canClone = false;
  readonly supportsFua = true;
  readonly thinProvisioned = true;
  /**
   * librbd 16.2's compare and write takes one 512-byte aligned sector and
   * refuses more (EINVAL, measured): what ESXi's ATS sends (NLB 1 of 512-byte
   * blocks). Longer ones take the core's node-local path; the composition
   * should advertise MAXIMUM COMPARE AND WRITE LENGTH 1 for a 512-byte RBD LU.
   */
  readonly compareAndWriteMaxBytes = 512;
  /** Set once an operation failed with ESHUTDOWN: this node's client was blocklisted (fenced). */
  fenced = false;
  private closed = false;
  private readonly snapshots = new Map<string, Promise<RbdImage>>();

  private constructor(
    readonly where: RbdLocation,
    private readonly image: RbdImage,
    private readonly cluster: RadosCluster,
    private readonly ioctx: unknown,
    private readonly release: () => Promise<void>,
    readonly nodeId: string,
    private readonly log: Logger,
    o: { blockSize: number; physicalBlockSize: number; sizeBytes: number; readOnly: boolean },
  ) {
    this.blockSize = o.blockSize;
    this.physicalBlockSize = o.physicalBlockSize;
    this.size = o.sizeBytes;
    this.readOnly = o.readOnly;
    this.canPunchHole = !o.readOnly;
  }

  get path(): string {
    return `rbd:${this.where.pool}/${this.where.image}`;
  }

  get sizeBytes(): number {
    return this.size;
  }

  /** The librados client this store writes through ("client.<id>", as lockers list it). */
  get clientEntity(): string {
    return this.cluster.entity;
  }

  static async open(where: RbdLocation, ceph: CephConnection, o: RbdStoreOptions): Promise<RbdStore> {
    const blockSize = o.blockSize;
    const physicalBlockSize = o.physicalBlockSize ?? blockSize;
    const path = `rbd:${where.pool}/${where.image}`;
    if (blockSize !== 512 && blockSize !== 4096) throw new Error(`${path}: block size must be 512 or 4096`);
    if (physicalBlockSize < blockSize || physicalBlockSize % blockSize !== 0 || (physicalBlockSize & (physicalBlockSize - 1)) !== 0) {
      throw new Error(`${path}: physical block size ${physicalBlockSize} invalid for block size ${blockSize}`);
    }
    const { cluster, release } = await acquireClient(ceph, o.nodeId);
    let image: RbdImage | undefined;
    try {
      const ioctx = await cluster.ioctx(where.pool);
      const open = () => RbdImage.open(ioctx, where.image, { readOnly: o.readOnly, mode: o.ioMode });
      try {
        image = await open();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).errno !== -ENOENT || o.createSizeBytes === undefined || o.readOnly) throw err;
        // No exclusive-lock: every node writes the image concurrently (see the header).
        await createImage(ioctx, where.image, o.createSizeBytes, RBD_FEATURE_LAYERING).catch((e: NodeJS.ErrnoException) => {
          if (e.errno !== -EEXIST) throw e; // another node created it first
        });
        o.log.info({ path, bytes: o.createSizeBytes }, 'rbd image created');
        image = await open();
      }
      if (((await image.features()) & RBD_FEATURE_EXCLUSIVE_LOCK) !== 0n) {
        o.log.warn({ path }, 'rbd image has the exclusive-lock feature: concurrent writers from several nodes will pass the lock on every write (rbd feature disable IMAGE exclusive-lock)');
      }
      let size = await image.size();
      size -= size % blockSize;
      if (size <= 0) throw new Error(`${path}: smaller than one block`);
      const store = new RbdStore(where, image, cluster, ioctx, release, o.nodeId, o.log, {
        blockSize, physicalBlockSize, sizeBytes: size, readOnly: o.readOnly,
      });
      if (!o.readOnly) await store.takeLock();
      return store;
    } catch (err) {
      await image?.close().catch(() => undefined);
      await release();
      throw err;
    }
  }

  /**
   * Hold this node's shared lock; a lock under our node id from another
   * client (this node's previous run, or a zombie of it) is broken first,
   * which blocklists that client.
   */
  private async takeLock(): Promise<void> {
    const stale = await this.fence(this.nodeId);
    if (stale > 0) this.log.warn({ path: this.path, nodeId: this.nodeId, broken: stale }, 'broke a stale rbd lock of this node');
    try {
      await this.image.lockShared(this.nodeId, RBD_LOCK_TAG);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).errno !== -EEXIST) throw err; // EEXIST: ours already
    }
  }

  /**
   * Fence `nodeId`: break every lock it holds on this image under another
   * client than ours; librbd blocklists that client, so its later writes (to
   * any image) fail with ESHUTDOWN. Resolves with the number of locks broken.
   */
  async fence(nodeId: string): Promise<number> {
    if (this.closed) throw eofError(this.path);
    const own = this.cluster.entity;
    const { lockers } = await this.guard(this.image.lockers());
    let broken = 0;
    for (const l of lockers) {
      if (l.cookie !== nodeId || l.client === own) continue;
      try {
        await this.guard(this.image.breakLock(l.client, l.cookie));
        broken++;
        this.log.warn({ path: this.path, nodeId, client: l.client, addr: l.addr }, 'rbd lock broken: client blocklisted');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).errno !== -ENOENT) throw err; // someone else broke it first
      }
    }
    return broken;
  }

  /** Notes a blocklisted client (ESHUTDOWN), passes every outcome on. */
  private async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).errno === -ESHUTDOWN && !this.fenced) {
        this.fenced = true;
        this.log.error({ path: this.path, nodeId: this.nodeId }, 'this node was fenced (its rbd client is blocklisted)');
      }
      throw err;
    }
  }

  private writable(): void {
    if (this.closed) throw eofError(this.path);
    if (this.readOnly) throw Object.assign(new Error(`${this.path} is read-only`), { code: 'EROFS' });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (this.closed) throw eofError(this.path);
    const buf = Buffer.allocUnsafe(length);
    const n = await this.guard(this.image.read(offset, buf));
    if (n < length) buf.fill(0, n); // past the image's end
    return buf;
  }

  async write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    this.writable();
    await this.guard(this.image.write(offset, data));
    if (options.fua) await this.guard(this.image.flush());
  }

  async flush(): Promise<void> {
    if (this.closed || this.readOnly) return;
    await this.guard(this.image.flush());
  }

  async punchHole(offset: number, length: number): Promise<void> {
    this.writable();
    await this.guard(this.image.writeZeroes(offset, length));
  }

  /**
   * Atomic compare and write (the OSD compares and writes in one operation).
   * Resolves null when `compare` matched and `data` is written; else the byte
   * offset of the first difference within `compare`, and nothing is written.
   */
  async compareAndWrite(offset: number, compare: Buffer, data: Buffer, options: WriteOptions = {}): Promise<number | null> {
    this.writable();
    const miss = await this.guard(this.image.compareAndWrite(offset, compare, data));
    if (miss === null && options.fua) await this.guard(this.image.flush());
    return miss;
  }

  async seekData(offset: number): Promise<number> {
    if (this.closed) throw eofError(this.path);
    for (let from = offset; from < this.size; from += SEEK_WINDOW) {
      const len = Math.min(SEEK_WINDOW, this.size - from);
      for (const [start, n] of await this.guard(this.image.allocated(from, len))) {
        if (start + n > offset) return Math.min(Math.max(start, offset), this.size);
      }
    }
    return this.size;
  }

  async seekHole(offset: number): Promise<number> {
    if (this.closed) throw eofError(this.path);
    let at = offset;
    for (let from = offset; from < this.size; from += SEEK_WINDOW) {
      const len = Math.min(SEEK_WINDOW, this.size - from);
      for (const [start, n] of await this.guard(this.image.allocated(from, len))) {
        if (start + n <= at) continue;
        if (start > at) return at;
        at = start + n;
      }
      if (at < from + len) return at;
    }
    return Math.min(at, this.size);
  }

  /**
   * Copy [srcOffset, srcOffset+length) to `dst` at dstOffset through this
   * gateway: pieces of COPY_PIECE, COPY_DEPTH at a time (one at a time, in
   * memmove order, when the ranges overlap in one store); a piece with no
   * allocated source object becomes a hole in `dst` (punchHole, or zeros
   * where it cannot) unless preserveHoles is false. Stops between pieces
   * when aborted (rejects with the signal's reason); onProgress gets the
   * bytes done from the start of the range.
   */
  async copyRange(dst: BackingStore, srcOffset: number, dstOffset: number, length: number, options: CopyRangeOptions = {}): Promise<CopyRangeResult> {
    if (this.closed) throw eofError(this.path);
    if (dst.readOnly) throw Object.assign(new Error('copy destination is read-only'), { code: 'EROFS' });
    const result: CopyRangeResult = { bytes: 0, cloned: 0, offloaded: 0, buffered: 0, holes: 0 };
    if (length <= 0) return result;
    const extents = options.preserveHoles === false ? null : await this.guard(this.image.allocated(srcOffset, length));
    const isHole = (at: number, k: number): boolean =>
      extents !== null && !extents.some(([s0, n0]) => s0 < srcOffset + at + k && s0 + n0 > srcOffset + at);
    const overlap = dst === this && srcOffset < dstOffset + length && dstOffset < srcOffset + length;
    const backwards = overlap && dstOffset > srcOffset;
    const depth = overlap ? 1 : COPY_DEPTH;
    const pieces: Array<[number, number]> = [];
    for (let at = 0; at < length; at += COPY_PIECE) pieces.push([at, Math.min(COPY_PIECE, length - at)]);
    if (backwards) pieces.reverse();
    const signal = options.signal;
    let done = 0;
    for (let i = 0; i < pieces.length; i += depth) {
      if (signal?.aborted) throw abortReason(signal, 'copy aborted');
      await Promise.all(pieces.slice(i, i + depth).map(async ([at, k]) => {
        if (isHole(at, k)) {
          if (dst.canPunchHole) await dst.punchHole(dstOffset + at, k);
          else await dst.write(dstOffset + at, Buffer.alloc(k));
          result.holes += k;
        } else {
          const data = await this.read(srcOffset + at, k);
          await dst.write(dstOffset + at, data);
          result.buffered += k;
        }
        done += k;
      }));
      options.onProgress?.(done);
    }
    result.bytes = length;
    return result;
  }

  /** Grow the image (and the LU) to `bytes`; shrinking is refused. Returns the new size. */
  async resize(bytes: number): Promise<number> {
    this.writable();
    let next = bytes - (bytes % this.blockSize);
    if (next < this.size) throw new Error(`${this.path}: shrinking from ${this.size} to ${next} bytes is refused`);
    const current = await this.guard(this.image.size());
    if (next > current) await this.guard(this.image.resize(next));
    else next = current - (current % this.blockSize);
    this.size = next;
    return next;
  }

  /** Re-read the image's size (another node grew it). */
  async refreshSize(): Promise<number> {
    const s = await this.guard(this.image.size());
    this.size = s - (s % this.blockSize);
    return this.size;
  }

  /** A point-in-time snapshot of the image (a ROD token's). */
  async createSnapshot(name: string): Promise<void> {
    this.writable();
    await this.guard(this.image.snapCreate(name));
  }

  async removeSnapshot(name: string): Promise<void> {
    if (this.closed) throw eofError(this.path);
    const open = this.snapshots.get(name);
    if (open) {
      this.snapshots.delete(name);
      await (await open.catch(() => undefined))?.close();
    }
    await this.guard(this.image.snapRemove(name));
  }

  /** Bytes [offset, offset+length) as they were when snapshot `name` was taken. */
  async readSnapshot(name: string, offset: number, length: number): Promise<Buffer> {
    if (this.closed) throw eofError(this.path);
    let img = this.snapshots.get(name);
    if (!img) {
      img = RbdImage.open(this.ioctx, this.where.image, { snapshot: name, readOnly: true });
      this.snapshots.set(name, img);
      img.catch(() => this.snapshots.delete(name));
    }
    const buf = Buffer.allocUnsafe(length);
    const n = await this.guard((await img).read(offset, buf));
    if (n < length) buf.fill(0, n);
    return buf;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush().catch(() => undefined);
      this.closed = true;
      for (const s of this.snapshots.values()) await (await s.catch(() => undefined))?.close();
      this.snapshots.clear();
      if (!this.readOnly && !this.fenced) await this.image.unlock(this.nodeId).catch(() => undefined);
      await this.image.close();
    } finally {
      this.closed = true;
      await this.release();
    }
  }
}

/** The contract's entry point (cluster-plan.md). */
export function openRbdStore(where: RbdLocation, ceph: CephConnection, o: RbdStoreOptions): Promise<RbdStore> {
  return RbdStore.open(where, ceph, o);
}
