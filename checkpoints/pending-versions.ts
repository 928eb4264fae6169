import type { ObjectMeta } from '../store/index.js';
import { untilAborted } from '../async/index.js';
import type { PendingUpload } from './pending-upload.js';
import type { PendingFile, UploadStatus } from './write-handle.js';
import type { WritePathContext } from './write-path-context.js';
import { writePathMetrics } from './write-path-metrics.js';

/**
 * The file versions not yet committed, per key: which one reads and listings see (the newest
 * open), the order versions of one key commit in, reads of their staged bytes, and the key
 * operations that must treat them with the committed object as one file (unlink, rename,
 * attribute changes, a whole-object write). Every store call that creates or removes an
 * object holds the key's lock (WritePathContext.locked).
 */
export class PendingVersions {
  readonly #ctx: WritePathContext;
  readonly #uploads = new Map<string, PendingUpload>();
  #openSeq = 0;
  #orderSeq = 0;
  /** Resolved (and replaced) whenever an upload settles or moves, for waiters on other uploads. */
  #pulse = deferred();

  constructor(ctx: WritePathContext) {
    this.#ctx = ctx;
  }

  add(upload: PendingUpload): void {
    this.#uploads.set(upload.id, upload);
  }

  delete(upload: PendingUpload): void {
    this.#uploads.delete(upload.id);
  }

  count(): number {
    return this.#uploads.size;
  }

  /** Every upload this process knows of, settled ones included until their files are gone. */
  all(): PendingUpload[] {
    return [...this.#uploads.values()];
  }

  /** Open order: the newest open version of a key is the one reads and listings see. */
  nextOpenSeq(): number {
    return ++this.#openSeq;
  }

  /** Release order: versions of one key are committed in this order. */
  nextOrder(): readonly [number, number] {
    return [this.#ctx.config.now(), ++this.#orderSeq];
  }

  newest(storeId: string, key: string): PendingUpload | undefined {
    let best: PendingUpload | undefined;
    for (const u of this.#live()) if (u.storeId === storeId && u.key === key && (!best || best.openSeq < u.openSeq)) best = u;
    return best;
  }

  /** See WritePath.pendingUnder. */
  pendingUnder(storeId: string, prefix: string): PendingFile[] {
    const newest = new Map<string, PendingUpload>();
    for (const upload of this.#live()) {
      if (upload.storeId !== storeId || !upload.key.startsWith(prefix)) continue;
      const seen = newest.get(upload.key);
      if (!seen || seen.openSeq < upload.openSeq) newest.set(upload.key, upload);
    }
    return [...newest.values()].sort((a, b) => (a.key < b.key ? -1 : 1)).map((u) => ({ key: u.key, size: u.staged.size, mtime: new Date(u.mtimeMs) }));
  }

  /** See WritePath.readPending. */
  async readPending(storeId: string, key: string, offset: number, length: number): Promise<Buffer | undefined> {
    const upload = this.newest(storeId, key);
    if (!upload) return undefined;
    try {
      return await upload.staged.read(offset, length);
    } catch (err) {
      if (upload.gone) return undefined; // committed and deleted meanwhile
      throw err;
    }
  }

  /** Pending uploads (released and still open), oldest first. */
  statuses(): UploadStatus[] {
    return [...this.#uploads.values()]
      .filter((u) => !u.settled)
      .sort((a, b) => a.openSeq - b.openSeq)
      .map((u) => ({
        storeId: u.storeId,
        key: u.key,
        bytes: u.staged.size,
        uploadedBytes: u.uploadedBytes,
        state: u.state,
        attempts: u.attempts,
        ...(u.lastError !== undefined ? { lastError: u.lastError } : {}),
      }));
  }

  /** Whether a released file is on its way to the store and will free staging space. */
  canFreeSpace(): boolean {
    return [...this.#uploads.values()].some((u) => u.released && !u.settled && u.reserved > 0);
  }

  /** Seconds the oldest upload waiting for the store has waited since it was queued (0: none waits). */
  readonly oldestQueuedSeconds = (): number => {
    let oldest = Infinity;
    for (const upload of this.#live()) if (upload.released && upload.order[0] < oldest) oldest = upload.order[0];
    return Number.isFinite(oldest) ? Math.max(0, (this.#ctx.config.now() - oldest) / 1000) : 0;
  };

  /** Waits until no older released version of the same key is pending; `false` if aborted. */
  async olderSettled(upload: PendingUpload, signal?: AbortSignal): Promise<boolean> {
    for (;;) {
      const older = [...this.#uploads.values()].some(
        (u) => u !== upload && u.released && !u.settled && u.storeId === upload.storeId && u.key === upload.key && compareOrder(u.order, upload.order) < 0,
      );
      const blocked = older || (!upload.released && [...this.#uploads.values()].some((u) => u.released && !u.settled && u.storeId === upload.storeId && u.key === upload.key && u !== upload));
      if (!blocked) return true;
      const pulse = this.#pulse.promise;
      await (signal ? untilAborted(pulse, signal) : pulse);
      if (signal?.aborted || this.#ctx.closing) return false;
    }
  }

  /** An upload settled or moved: waiters on other uploads look again; the gauges are updated. */
  notify(): void {
    writePathMetrics.stagingUsed.set(this.#ctx.space.usedBytes);
    writePathMetrics.pending.set(this.#live().length);
    const old = this.#pulse;
    this.#pulse = deferred();
    old.resolve();
  }

  /** See WritePath.unlink. */
  async unlink(storeId: string, key: string): Promise<void> {
    await this.#ctx.locked(storeId, [key], async () => {
      await this.#cancel(storeId, key);
      await this.#ctx.stores(storeId).delete(key);
    });
  }

  /** See WritePath.setMeta. */
  async setMeta(storeId: string, key: string, patch: ObjectMeta): Promise<boolean> {
    const done = await this.#ctx.locked(storeId, [key], async () => {
      const pending = this.#live().filter((u) => u.storeId === storeId && u.key === key);
      for (const upload of pending) {
        upload.meta = { ...upload.meta, ...patch };
        if (!upload.landed && (upload.multipart || upload.creating)) upload.metaAfterCommit = true;
        await this.#ctx.records.persist(upload);
      }
      // A version still to be committed carries the change; a clean copy (opened for writing,
      // not written: `touch`) or one already in the store does not, so the object is changed.
      if (pending.some((u) => u.dirty && !u.landed)) return true;
      const store = this.#ctx.stores(storeId);
      const head = await store.head(key);
      if (!head) return pending.length > 0;
      await store.copy(key, key, { meta: { ...head.meta, ...patch } });
      return true;
    });
    return done === true;
  }

  /** See WritePath.writeObject. */
  async writeObject(storeId: string, key: string, body: Buffer, meta: ObjectMeta): Promise<string> {
    const etag = await this.#ctx.locked(storeId, [key], async () => {
      await this.#cancel(storeId, key);
      return (await this.#ctx.stores(storeId).put(key, body, { meta })).etag;
    });
    return etag!;
  }

  /** See WritePath.rename. */
  async rename(storeId: string, fromKey: string, toKey: string): Promise<boolean> {
    if (fromKey === toKey) return true;
    const moved = await this.#ctx.locked(storeId, [fromKey, toKey], () => this.#renameLocked(storeId, fromKey, toKey));
    return moved === true;
  }

  async #renameLocked(storeId: string, fromKey: string, toKey: string): Promise<boolean> {
    const ctx = this.#ctx;
    const movers = this.#live().filter((u) => u.storeId === storeId && u.key === fromKey);
    for (const upload of movers) await ctx.commits.interrupt(upload);
    let rekeyed = false;
    try {
      const store = ctx.stores(storeId);
      // Asked after the interrupts: a commit that landed meanwhile is in the store now.
      const committed = await store.head(fromKey);
      const pending = movers.filter((u) => !u.settled);
      if (!committed && pending.length === 0) return false;
      await this.#cancel(storeId, toKey);
      if (committed) {
        await store.copy(fromKey, toKey);
        await store.delete(fromKey);
      }
      rekeyed = true;
      for (const upload of pending) {
        upload.moved(toKey, upload.released ? this.nextOrder() : undefined);
        await ctx.records.persist(upload);
      }
      await ctx.pins.forget(storeId, fromKey);
      return true;
    } finally {
      // Restarted whatever happened: under the new key, or the old one if the move failed.
      for (const upload of movers) {
        if (upload.settled || (!rekeyed && upload.cancelled)) continue;
        if (upload.released) ctx.commits.start(upload);
        else ctx.parts.dispatch(upload, false);
      }
      this.notify();
    }
  }

  /** Cancels every pending version of `key` (the caller holds its lock). */
  async #cancel(storeId: string, key: string): Promise<void> {
    const ctx = this.#ctx;
    const victims = this.#live().filter((u) => u.storeId === storeId && u.key === key);
    for (const upload of victims) {
      upload.cancel();
      await ctx.commits.interrupt(upload);
      if (upload.state === 'done') continue;
      if (!ctx.hasOpenHandle(upload)) await ctx.records.discard(upload);
      upload.settle('cancelled');
    }
    await ctx.pins.forget(storeId, key);
    this.notify();
  }

  /** Uploads that still stand for a file: not cancelled, not committed. */
  #live(): PendingUpload[] {
    return [...this.#uploads.values()].filter((u) => !u.cancelled && !u.settled && !u.gone);
  }
}

function compareOrder(a: readonly [number, number], b: readonly [number, number]): number {
  return a[0] - b[0] || a[1] - b[1];
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
