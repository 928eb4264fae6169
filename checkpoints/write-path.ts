import { randomBytes } from 'node:crypto';
import { rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectRef } from '../store/index.js';
import type { ObjectMeta, ObjectStore } from '../store/index.js';
import { WritePathError } from './write-path-error.js';
import { queuedAges } from './write-path-metrics.js';
import { untilAborted } from '../async/index.js';
import { syncDir } from '../durable/index.js';
import { PendingUpload } from './pending-upload.js';
import { StagedFile } from './staged-file.js';
import { WriteHandle, type AdoptHook, type OpenOptions, type PendingFile, type UploadStatus, type WriteTarget } from './write-handle.js';
import { resolveWritePathConfig, type CloseMode, type ResolvedWritePathConfig, type WritePathConfig } from './write-path-config.js';
import { WritePathContext } from './write-path-context.js';

interface HandleState {
  readonly upload: PendingUpload;
  readonly closeMode: CloseMode;
  /** Calls on one handle run one after the other, in call order. */
  queue: Promise<unknown>;
  released: boolean;
  /** While the kernel writes the staged file itself (`shareWithKernel`): what watches it grow. */
  watch?: { timer: NodeJS.Timeout; stamp: string; size: number } | undefined;
}

const STAGED_SUFFIX = '.data';
/**
 * How often a staged file the kernel writes itself is looked at (one `fstat`) to stream the
 * parts it has grown by: a tenth of an 8 MiB part at 2 GB/s, and negligible work.
 */
const WATCH_INTERVAL_MS = 20;
/**
 * A writer is handed to the kernel only while staging has at least this share of its limit
 * free: the kernel's writes are accounted only after the fact, so a nearly full staging folder
 * keeps its writers on the daemon's path, where a write that does not fit waits.
 */
const SHARE_FREE_FRACTION = 0.5;
/** Random bytes in an upload id: 96 bits never collide among the uploads of one staging folder. */
const UPLOAD_ID_BYTES = 12;

/**
 * The write path: files written through handles are staged on a local tier, streamed to the
 * store as multipart uploads while they are written sequentially (whole-file upload after
 * release otherwise), journaled so that a released file survives a crash, and committed in
 * the background (`closeMode: 'async'`) or before `release` returns (`'sync'`).
 *
 * Call `recover()` once before anything else. A handle only writes; reads of files not yet
 * committed go through `readPending`.
 *
 * This class is the facade: it owns the handles (their queues and staging reservations) and
 * hands the rest to its parts: pending-versions.ts (versions per key, their order, rename and
 * unlink), part-streaming.ts, commit.ts, recovery.ts, upload-records.ts (journal records and
 * staged files) and cache-adoption.ts, wired together by write-path-context.ts.
 */
export class WritePath {
  readonly #config: ResolvedWritePathConfig;
  readonly #ctx: WritePathContext;
  readonly #handles = new Map<WriteHandle, HandleState>();
  #nextHandle = 1;

  constructor(config: WritePathConfig, stores: (storeId: string) => ObjectStore, adopt?: AdoptHook) {
    this.#config = resolveWritePathConfig(config);
    this.#ctx = new WritePathContext(this.#config, stores, adopt, (upload) => [...this.#handles.values()].some((h) => h.upload === upload && !h.released));
  }

  /**
   * Opens the staging folder and resumes the journal: released files are queued for upload
   * again (reusing the parts the store still holds), files whose handle never closed are
   * dropped and their multipart uploads aborted in the store, stray staged files deleted,
   * and the pinned set re-pinned. Resolves once the uploads are queued, not finished
   * (`flush()` waits for those).
   */
  async recover(): Promise<void> {
    queuedAges.add(this.oldestQueuedSeconds);
    await this.#ctx.recovery.run();
  }

  /** Starts a new version of `target`. With `truncate: false` the current bytes are staged first. */
  async open(target: WriteTarget, options: OpenOptions): Promise<WriteHandle> {
    const ctx = this.#ctx;
    ctx.records.journal();
    if (ctx.closing) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', `the write path is closing; cannot open ${target.key}`);
    const id = randomBytes(UPLOAD_ID_BYTES).toString('hex');
    const staged = await StagedFile.create(join(ctx.stagedDir, `${id}${STAGED_SUFFIX}`));
    const upload = new PendingUpload({ id, storeId: target.storeId, key: target.key, staged, partSize: this.#config.partSizeBytes, mtimeMs: this.#config.now(), openSeq: ctx.versions.nextOpenSeq() });
    upload.meta = options.meta ?? ctx.versions.newest(target.storeId, target.key)?.meta;
    try {
      // An unchanged copy of an existing file uploads nothing at release; a new file is created even if empty.
      // Under the key's lock: a version committed meanwhile cannot slip between the look at the
      // pending versions and the look at the store.
      if (!options.truncate) upload.copiedCurrent((await ctx.locked(target.storeId, [target.key], () => this.#copyCurrent(upload))) === true);
    } catch (err) {
      ctx.space.free(upload.reserved);
      await staged.close();
      await rm(staged.path, { force: true });
      throw err;
    }
    ctx.versions.add(upload);
    const handle = new WriteHandle(this.#nextHandle++, target);
    this.#handles.set(handle, { upload, closeMode: options.closeMode ?? this.#config.closeMode, queue: Promise.resolve(), released: false });
    return handle;
  }

  /**
   * Writes `data` at `offset` and answers the bytes written (all of them). Waits for staging
   * space (bounded), then throws CHECKPOINT_STAGING_FULL. A write that is not at the current
   * end switches the file to whole-file upload after release and aborts its streamed parts.
   * `data` is copied or written before the promise settles and never kept after that.
   */
  write(handle: WriteHandle, offset: number, data: Buffer): Promise<number> {
    return this.#serial(handle, async (upload) => {
      await this.#grow(upload, offset + data.length);
      if (upload.mode === 'stream' && offset !== upload.staged.size) this.#ctx.parts.fallBack(upload, `write at ${offset}, not at the end (${upload.staged.size})`);
      await upload.staged.write(offset, data);
      upload.touched(this.#config.now());
      this.#ctx.parts.dispatch(upload, false);
      return data.length;
    });
  }

  /**
   * Lets the kernel write the handle's file itself (FUSE passthrough): answers a read-write
   * descriptor of the staged file for the kernel (the caller closes it), or `undefined` when
   * the handle must stay on the daemon's path (sync close, which waits for the store at close;
   * staging more than half full; a handle already released). From then on the staged file is
   * watched: parts stream as it grows (and are checked against the final file before the
   * commit), `flushDurable` is what a close does, and `release` (the last close) commits.
   */
  shareWithKernel(handle: WriteHandle): Promise<FileHandle | undefined> {
    const state = this.#handles.get(handle);
    if (!state || state.closeMode !== 'async' || !this.#config.shareWithKernel) return Promise.resolve(undefined);
    return this.#serial(handle, async (upload) => {
      const { space } = this.#ctx;
      if (upload.staged.external || space.usedBytes > space.limitBytes * (1 - SHARE_FREE_FRACTION)) return undefined;
      const file = await upload.staged.shareWrites();
      upload.writtenExternally();
      const size = upload.staged.size;
      const timer = setInterval(() => this.#noticeGrowth(handle), WATCH_INTERVAL_MS);
      timer.unref();
      state.watch = { timer, stamp: upload.staged.changeStamp(), size };
      return file;
    });
  }

  /** Whether the kernel writes the handle's file itself (`shareWithKernel`). */
  sharedWithKernel(handle: WriteHandle): boolean {
    return this.#handles.get(handle)?.watch !== undefined;
  }

  /**
   * A close of a descriptor of a file the kernel writes itself (FLUSH): the bytes so far are
   * made durable and journaled, so they survive a crash, as async close promises. The upload
   * is committed at `release`, once no descriptor can write any more.
   */
  flushDurable(handle: WriteHandle): Promise<void> {
    return this.#serial(handle, async (upload) => {
      this.#noticeGrowth(handle);
      if (upload.cancelled || !upload.dirty) return;
      await upload.staged.sync();
      await syncDir(this.#ctx.stagedDir);
      upload.madeDurable();
      await this.#ctx.records.persist(upload, true);
    });
  }

  /**
   * Bytes [offset, offset + length) of the file as written through `handle` so far (fewer at its
   * end; zeros where nothing was written), in order with the handle's writes: an O_RDWR
   * descriptor reads what it wrote a moment ago.
   */
  read(handle: WriteHandle, offset: number, length: number): Promise<Buffer> {
    return this.#serial(handle, (upload) => upload.staged.read(offset, length));
  }

  /** The size of the file as written through `handle` so far (for fstat of an unlinked file). */
  sizeOf(handle: WriteHandle): number | undefined {
    return this.#handles.get(handle)?.upload.staged.size;
  }

  /** Sets the file's size (cut or zero-extended). Any change of size falls back to whole-file upload. */
  truncate(handle: WriteHandle, size: number): Promise<void> {
    return this.#serial(handle, async (upload) => {
      upload.touched(this.#config.now());
      if (size === upload.staged.size) return;
      await this.#grow(upload, size);
      if (upload.mode === 'stream') this.#ctx.parts.fallBack(upload, `truncate to ${size}`);
      await upload.staged.truncate(size);
      if (size < upload.reserved) {
        this.#ctx.space.free(upload.reserved - size);
        upload.reserved = size;
      }
    });
  }

  /**
   * Resolves once the store holds the file as written so far (and every older pending
   * version of the key before it). On an open handle this commits the current bytes as an
   * object; later writes make a new version, uploaded from its start. Throws
   * CHECKPOINT_UPLOAD_FAILED after `commitWaitMs` (the bytes stay staged).
   */
  fsync(handle: WriteHandle): Promise<void> {
    const ctx = this.#ctx;
    return this.#serial(handle, async (upload) => {
      if (upload.cancelled) return;
      this.#noticeGrowth(handle); // the kernel may have written a moment ago, since the last look
      if (!upload.dirty) {
        await ctx.commits.withDeadline(ctx.versions.olderSettled(upload), upload, () => undefined);
        return;
      }
      await upload.staged.sync();
      let ref: ObjectRef | undefined;
      // A rename during the commit interrupts it; commit again under the new key.
      while (!ref) {
        upload.ordered(ctx.versions.nextOrder());
        upload.taskAbort = new AbortController();
        const work = ctx.commits.run(upload);
        upload.task = work.then(() => undefined);
        ref = await ctx.commits.withDeadline(work, upload, () => upload.taskAbort.abort());
        if (upload.cancelled) return;
        if (ctx.closing) throw new WritePathError('CHECKPOINT_UPLOAD_FAILED', `the write path closed before ${upload.key} was committed; its handle is gone`);
      }
      await ctx.adoption.committed(ref, upload);
      // The multipart upload is complete: forget it without aborting it, and stream anew.
      upload.multipart = undefined;
      ctx.parts.drop(upload);
      upload.committedOpen();
      if (upload.hasRecord) await ctx.records.persist(upload);
    });
  }

  /**
   * Closes the handle. Async mode: resolves once the staged bytes and the journal record are
   * fsync'd (the upload goes on in the background). Sync mode: once the store has the object
   * (or throws CHECKPOINT_UPLOAD_FAILED after `commitWaitMs`; the upload goes on).
   * A handle that changed nothing uploads nothing.
   */
  release(handle: WriteHandle): Promise<void> {
    const ctx = this.#ctx;
    const state = this.#handles.get(handle);
    const done = this.#serial(handle, async (upload) => {
      if (state!.watch) {
        this.#noticeGrowth(handle);
        clearInterval(state!.watch.timer);
        state!.watch = undefined;
      }
      state!.released = true;
      this.#handles.delete(handle);
      if (upload.cancelled || !upload.dirty) {
        await ctx.records.discard(upload);
        if (!upload.cancelled) upload.settle('done');
        ctx.versions.notify();
        return;
      }
      await upload.staged.sync();
      await syncDir(ctx.stagedDir);
      upload.release(ctx.versions.nextOrder(), this.#config.now());
      await ctx.records.persist(upload, true);
      ctx.commits.start(upload);
      // The store has the object once `inStore` resolves; the cache's copy of it goes on behind.
      if (state!.closeMode === 'sync') await ctx.commits.withDeadline(upload.inStore, upload, () => undefined);
    });
    return done;
  }

  /** The newest not-yet-committed version of `key`, if any (files still open included). */
  pending(storeId: string, key: string): { size: number; mtime: Date; meta?: ObjectMeta | undefined } | undefined {
    const upload = this.#ctx.versions.newest(storeId, key);
    return upload ? { size: upload.staged.size, mtime: new Date(upload.mtimeMs), meta: upload.meta } : undefined;
  }

  /**
   * The staged file of the newest pending version of `key` once its writer is closed: whole
   * and durable on disk, and never changed again (a later write opens a new version, a
   * copy). Undefined while a writer still has it, or when nothing is pending. The file is
   * deleted once committed; a descriptor opened on it keeps reading it.
   */
  closedStagedFile(storeId: string, key: string): string | undefined {
    const upload = this.#ctx.versions.newest(storeId, key);
    return upload?.released && !upload.cancelled ? upload.staged.path : undefined;
  }

  /** Every key under `prefix` (recursively, `''` for all) with a version not yet committed; one entry per key. */
  pendingUnder(storeId: string, prefix: string): PendingFile[] {
    return this.#ctx.versions.pendingUnder(storeId, prefix);
  }

  /**
   * Bytes [offset, offset + length) of the pending version of `key` (fewer at its end), or
   * `undefined` when nothing is pending (any more): read the store then.
   */
  readPending(storeId: string, key: string, offset: number, length: number): Promise<Buffer | undefined> {
    return this.#ctx.versions.readPending(storeId, key, offset, length);
  }

  /**
   * Removes `key`: every pending version is cancelled (nothing more of it reaches the store, its
   * multipart upload is aborted) and the object is deleted from the store, after any commit of
   * the key already sent has landed, so an unlink always wins over the upload it races. An open
   * handle keeps accepting writes, which are dropped at release.
   */
  unlink(storeId: string, key: string): Promise<void> {
    return this.#ctx.versions.unlink(storeId, key);
  }

  /**
   * Changes the attributes of `key` (chmod, chown, an explicit mtime): on its pending versions,
   * committed with them, and on the object in the store (a metadata-only copy) unless a pending
   * version will replace it. Answers `false` when there is no file.
   */
  setMeta(storeId: string, key: string, patch: ObjectMeta): Promise<boolean> {
    return this.#ctx.versions.setMeta(storeId, key, patch);
  }

  /**
   * Writes a small object whole (a symbolic link's target), replacing the file at `key` and its
   * pending versions, in order with the key's other store calls. Answers the new ETag.
   */
  writeObject(storeId: string, key: string, body: Buffer, meta: ObjectMeta): Promise<string> {
    return this.#ctx.versions.writeObject(storeId, key, body, meta);
  }

  /**
   * Moves the file at `fromKey` to `toKey`, as rename(2) does: what was at `toKey` is replaced
   * (its pending versions cancelled), the committed object is copied and deleted in the store,
   * and pending versions (open ones included) move with it: their uploads restart under the new
   * key from the staged bytes and commit after the copy. Ordered with every commit of either
   * key (see WritePathContext.locked). Answers `false`, changing nothing, when there is no file at `fromKey`.
   */
  rename(storeId: string, fromKey: string, toKey: string): Promise<boolean> {
    return this.#ctx.versions.rename(storeId, fromKey, toKey);
  }

  /**
   * Moves a folder: every object under `fromPrefix` (folder markers included) and every pending
   * file. The caller has checked that nothing but an empty folder is at `toPrefix`. See
   * tree-rename.ts for the order and what a crash or a store failure leaves.
   */
  async renameTree(storeId: string, fromPrefix: string, toPrefix: string): Promise<void> {
    await this.#ctx.trees.run(storeId, fromPrefix, toPrefix, async () => {
      for (const pending of this.pendingUnder(storeId, fromPrefix)) {
        await this.rename(storeId, pending.key, `${toPrefix}${pending.key.slice(fromPrefix.length)}`);
      }
    });
  }

  /**
   * Calls `listener` whenever a version lands in the store (before its staged copy goes), so
   * whoever caches metadata of the key forgets what it learnt before. Answers a function that
   * removes the listener.
   */
  onLanded(listener: (storeId: string, key: string) => void): () => void {
    return this.#ctx.commits.onLanded(listener);
  }

  /** Pending uploads (released and still open), oldest first. */
  uploads(): UploadStatus[] {
    return this.#ctx.versions.statuses();
  }

  /**
   * Resolves when every released version (of `target` only, if given) pending at the call is
   * committed or cancelled, and every version a close made durable while its handle stays open
   * (`flushDurable`), which commits once released. With `until: 'inStore'` it resolves once the
   * store has them, before the cache's copy of their bytes and the staged files' removal (what
   * `POST /v1/uploads/flush` promises). Throws CHECKPOINT_UPLOAD_FAILED if the write path closes
   * first.
   */
  async flush(target?: WriteTarget, until: 'settled' | 'inStore' = 'settled'): Promise<void> {
    const waiting = this.#ctx.versions.all().filter((u) => (u.released || u.durable) && !u.settled && (!target || (u.storeId === target.storeId && u.key === target.key)));
    await untilAborted(Promise.all(waiting.map((u) => (until === 'inStore' ? u.inStore : u.finished))), this.#ctx.closed.signal);
    const left = waiting.filter((u) => !u.settled && !(until === 'inStore' && u.landed));
    if (left.length > 0) throw new WritePathError('CHECKPOINT_UPLOAD_FAILED', `the write path closed with ${left.length} uploads pending; they resume at the next start`);
  }

  stagingUsedBytes(): number {
    return this.#ctx.space.usedBytes;
  }

  /** Bytes of memory the upload buffers hold now (slots.ts): part of `--memory`, taken from the DRAM tier. */
  uploadBufferBytes(): number {
    return this.#ctx.slots.heldBytes;
  }

  /** The versions kept pinned (newest `keepNewest` per folder). */
  pinned(): ObjectRef[] {
    return this.#ctx.pins.pinned();
  }

  /** Seconds the oldest upload waiting for the store has waited since it was queued (0: none waits). */
  get oldestQueuedSeconds(): () => number {
    return this.#ctx.versions.oldestQueuedSeconds;
  }

  /**
   * Stops: in-flight store calls are let finish, retries stop, staged files and journal
   * records stay for the next `recover()`. Open handles are dropped (their files were not
   * released, so they are not kept).
   */
  async close(): Promise<void> {
    const ctx = this.#ctx;
    queuedAges.delete(this.oldestQueuedSeconds);
    ctx.closing = true;
    ctx.closed.abort();
    for (const state of this.#handles.values()) if (state.watch) clearInterval(state.watch.timer);
    const uploads = ctx.versions.all();
    for (const upload of uploads) {
      upload.taskAbort.abort();
      upload.generationAbort.abort();
    }
    ctx.versions.notify();
    await Promise.all(ctx.versions.all().map((u) => Promise.all([u.task, ...u.inflight.values()])));
    await ctx.parts.abortsSettled();
    await ctx.records.idle();
    for (const upload of ctx.versions.all()) await upload.staged.close();
    this.#handles.clear();
  }

  // ---- handles ----

  #serial<T>(handle: WriteHandle, body: (upload: PendingUpload) => Promise<T>): Promise<T> {
    const state = this.#handles.get(handle);
    if (!state || state.released) {
      return Promise.reject(new WritePathError('CHECKPOINT_HANDLE_CLOSED', `write handle ${handle.id} for ${handle.key} is not open`));
    }
    const run = state.queue.then(() => {
      if (state.released) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', `write handle ${handle.id} for ${handle.key} is already released`);
      if (this.#ctx.closing) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', `the write path is closing; handle ${handle.id} for ${handle.key} is gone`);
      return body(state.upload);
    });
    state.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Looks at a file the kernel writes itself: when it changed, the upload is touched, its
   * growth accounted (after the fact: the kernel did not wait) and synced behind, and the parts
   * it grew by start streaming.
   */
  #noticeGrowth(handle: WriteHandle): void {
    const state = this.#handles.get(handle);
    const watch = state?.watch;
    if (!state || !watch || state.released) return;
    const { upload } = state;
    const stamp = upload.staged.changeStamp();
    if (stamp === watch.stamp || upload.cancelled) return;
    watch.stamp = stamp;
    upload.touched(this.#config.now());
    const size = upload.staged.size;
    if (size > upload.reserved) {
      this.#ctx.space.claim(size - upload.reserved);
      upload.reserved = size;
    }
    if (size > watch.size) upload.staged.grewExternally(size - watch.size);
    watch.size = size;
    this.#ctx.parts.dispatch(upload, false);
  }

  async #grow(upload: PendingUpload, end: number): Promise<void> {
    if (end <= upload.reserved) return;
    await this.#ctx.space.reserve(end - upload.reserved, () => this.#ctx.versions.canFreeSpace());
    upload.reserved = end;
  }

  /**
   * Stages the bytes the file has now: the newest pending version's, else the committed object's
   * as the store has it now (one HEAD, then GETs with If-Match). Answers whether there was a file.
   */
  async #copyCurrent(upload: PendingUpload): Promise<boolean> {
    const ctx = this.#ctx;
    const source = ctx.versions.newest(upload.storeId, upload.key);
    let existing: { etag: string; size: number } | undefined;
    if (!source) {
      const head = await ctx.stores(upload.storeId).head(upload.key);
      if (head) existing = head;
      if (head?.meta && !upload.meta) upload.meta = head.meta;
    }
    const size = source ? source.staged.size : (existing?.size ?? 0);
    const chunk = this.#config.partSizeBytes;
    for (let offset = 0; offset < size; offset += chunk) {
      const length = Math.min(chunk, size - offset);
      let bytes: Buffer;
      if (source) bytes = await source.staged.read(offset, length);
      else bytes = (await ctx.stores(upload.storeId).getRange(upload.key, offset, length, { ifMatch: existing!.etag })).body;
      await this.#grow(upload, offset + bytes.length);
      await upload.staged.write(offset, bytes);
    }
    return source !== undefined || existing !== undefined;
  }
}
