import type { ObjectRef } from '../store/index.js';
import { isStrataError } from '../errors/index.js';
import { StoreError, type ObjectStore } from '../store/index.js';
import { retry } from '../async/index.js';
import { realSleep } from '../async/index.js';
import { untilAborted } from '../async/index.js';
import { partsOf } from './part-layout.js';
import type { PendingUpload } from './pending-upload.js';
import type { WritePathContext } from './write-path-context.js';
import { WritePathError } from './write-path-error.js';
import { writePathMetrics } from './write-path-metrics.js';

/**
 * Commits of pending versions to the store: one task per upload that waits for older versions
 * of its key, sends a single PUT or the missing parts and CompleteMultipartUpload under the
 * key's lock, confirms with HEAD, retries with backoff until it works or is interrupted, and
 * then hands the bytes to the cache and lets the staged copy go.
 */
export class Commits {
  readonly #ctx: WritePathContext;
  readonly #landedListeners = new Set<(storeId: string, key: string) => void>();

  constructor(ctx: WritePathContext) {
    this.#ctx = ctx;
  }

  /** See WritePath.onLanded. */
  onLanded(listener: (storeId: string, key: string) => void): () => void {
    this.#landedListeners.add(listener);
    return () => this.#landedListeners.delete(listener);
  }

  /** Starts the background commit of a released upload (finished, cleaned up, settled). */
  start(upload: PendingUpload): void {
    upload.taskAbort = new AbortController();
    const task = (async () => {
      const ref = await this.run(upload);
      if (ref) await this.#finish(upload, ref);
    })().catch((err: unknown) => this.#ctx.config.logger.error({ err, key: upload.key }, 'upload finished in the store but its cleanup failed'));
    upload.task = task;
  }

  /** Commits the upload's current bytes, retrying with backoff; `undefined` when interrupted. */
  async run(upload: PendingUpload): Promise<ObjectRef | undefined> {
    const signal = upload.taskAbort.signal;
    return retry(
      async () => {
        const etag = await this.#commitOnce(upload, signal);
        if (etag === undefined) return undefined;
        return { storeId: upload.storeId, key: upload.key, etag, size: upload.staged.size };
      },
      {
        ...this.#ctx.retryOptions(signal),
        onRetry: (err) => {
          this.noteFailure(upload, err, 'commit');
          upload.retrying();
        },
      },
    );
  }

  /** Stops the commit task and parts of `upload` and waits for them to settle. */
  async interrupt(upload: PendingUpload): Promise<void> {
    upload.taskAbort.abort();
    const task = upload.task;
    await task;
    if (upload.state === 'done') return;
    upload.interrupted();
    this.#ctx.parts.drop(upload);
  }

  /**
   * `work`'s value, or CHECKPOINT_UPLOAD_FAILED once `commitWaitMs` passed (after `onTimeout`,
   * and once `work` settled) or the write path closed.
   */
  async withDeadline<T>(work: Promise<T>, upload: PendingUpload, onTimeout: () => void): Promise<T> {
    const { commitWaitMs } = this.#ctx.config;
    const timer = new AbortController();
    const expired = realSleep(commitWaitMs, timer.signal).then(
      () => true,
      () => false,
    );
    try {
      const winner = await untilAborted(Promise.race([work.then((value) => ({ value })), expired.then((hit) => (hit ? 'timeout' : 'cancelled'))]), this.#ctx.closed.signal);
      if (typeof winner === 'object') return winner.value;
      if (winner === undefined) {
        throw new WritePathError('CHECKPOINT_UPLOAD_FAILED', `the write path closed before ${upload.key} was committed; it stays staged and resumes at the next start`);
      }
      onTimeout();
      await work.catch(() => undefined);
      throw new WritePathError(
        'CHECKPOINT_UPLOAD_FAILED',
        `${upload.key} is not in the store after ${commitWaitMs} ms (${upload.attempts} failed attempts${upload.lastError ? `, last: ${upload.lastError}` : ''}); its bytes stay staged`,
      );
    } finally {
      timer.abort();
    }
  }

  noteFailure(upload: PendingUpload, err: unknown, what: string): void {
    upload.failed(err);
    writePathMetrics.failures.inc();
    this.#ctx.config.logger.warn({ err, key: upload.key, what, attempts: upload.attempts }, 'upload to the store failed; retrying');
  }

  /** One attempt: single PUT, or the missing parts then CompleteMultipartUpload; then HEAD. Answers the ETag. */
  async #commitOnce(upload: PendingUpload, signal: AbortSignal): Promise<string | undefined> {
    const ctx = this.#ctx;
    if (!(await ctx.versions.olderSettled(upload, signal))) return undefined;
    const store = ctx.stores(upload.storeId);
    const size = upload.staged.size;
    if (upload.recovered) {
      const etag = await ctx.recovery.reconcile(upload, store);
      if (etag !== undefined) return etag;
      upload.reconciled();
    }
    upload.uploading();
    const key = upload.key;
    // The call that makes the object, and the HEAD that confirms it, hold the key's lock and
    // are not aborted once sent: see WritePathContext.locked. `undefined` when interrupted before it was sent.
    const create = (send: () => Promise<string>): Promise<string | undefined> =>
      ctx.locked(
        upload.storeId,
        [key],
        async () => {
          if (signal.aborted || upload.cancelled || upload.key !== key) return undefined;
          const etag = await this.#confirm(store, key, size, await send());
          upload.landed = true;
          for (const listener of this.#landedListeners) listener(upload.storeId, key);
          return etag;
        },
        signal,
      );
    if (size < upload.partSize) {
      if (upload.multipart) ctx.parts.drop(upload);
      return ctx.slots.run(size, async (buffer) => {
        const body = await upload.staged.readInto(buffer, 0);
        return create(async () => (await store.put(key, body, upload.meta ? { meta: upload.meta } : {})).etag);
      });
    }
    // Parts streamed while the kernel could still write the file (passthrough) are checked
    // against the final file while the others upload, and those that differ are uploaded again.
    const verifying = upload.partsUnverified
      ? ctx.parts.verify(upload).then((stale) => {
          writePathMetrics.restreamedParts.inc(stale);
          if (stale > 0) ctx.config.logger.info({ key: upload.key, parts: stale }, 'parts changed after they were streamed; uploading them again');
        })
      : undefined;
    void verifying?.catch(() => undefined); // awaited below, unless the attempt is interrupted first
    for (let checked = verifying === undefined; ; ) {
      ctx.parts.dispatch(upload, true);
      if (upload.inflight.size === 0) {
        if (checked) break;
        await untilAborted(verifying!, signal);
        if (signal.aborted) return undefined;
        checked = true;
        continue;
      }
      await untilAborted(Promise.all(upload.inflight.values()), signal);
      if (signal.aborted) return undefined;
    }
    const parts = partsOf(upload.partSize, size).map((range) => upload.parts.get(range.partNumber));
    const multipart = upload.multipart;
    if (!multipart || parts.some((p) => !p)) throw new StoreError('STORE_IO', `parts of ${upload.key} are missing after upload`);
    upload.completing();
    await ctx.records.persist(upload);
    return create(async () => {
      try {
        return (await store.completeMultipart(multipart, parts.map((p) => p!))).etag;
      } catch (err) {
        if (!isStrataError(err, 'STORE_NOT_FOUND')) throw err;
        // Gone: completed by an earlier attempt whose answer was lost, or dropped by the store.
        const head = await store.head(key);
        if (head && head.size === size) return head.etag;
        upload.multipartLost();
        ctx.parts.drop(upload);
        throw err;
      }
    });
  }

  /**
   * The store must have the object before the staged bytes go. The commit's own ETag names our
   * version; HEAD's only stands in when the store answered none.
   */
  async #confirm(store: ObjectStore, key: string, size: number, etag: string): Promise<string> {
    const head = await store.head(key);
    if (!head) throw new StoreError('STORE_IO', `${key} is missing right after it was committed`);
    if (head.size !== size || (etag && head.etag !== etag)) {
      this.#ctx.config.logger.warn({ key, size, storeSize: head.size }, 'the object changed in the store right after this upload; another writer won');
    }
    return etag || head.etag;
  }

  /** Committed: hand the bytes to the cache, pin, then delete the record and the staged file. */
  async #finish(upload: PendingUpload, ref: ObjectRef): Promise<void> {
    const ctx = this.#ctx;
    if (upload.metaAfterCommit && upload.meta) {
      const meta = upload.meta;
      const copied = await ctx.locked(upload.storeId, [ref.key], () => ctx.stores(upload.storeId).copy(ref.key, ref.key, { meta })).catch((err: unknown) => {
        ctx.config.logger.warn({ err, key: ref.key }, 'could not set the attributes of a committed file');
        return undefined;
      });
      if (copied) ref = { ...ref, etag: copied.etag };
    }
    upload.markInStore();
    await ctx.adoption.committed(ref, upload);
    await ctx.records.discard(upload);
    upload.settle('done');
    writePathMetrics.committed.inc();
    writePathMetrics.committedBytes.inc(ref.size);
    ctx.versions.notify();
    ctx.config.logger.debug({ key: ref.key, size: ref.size, etag: ref.etag }, 'upload committed');
  }
}
