import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectRef } from '../store/index.js';
import { isStrataError } from '../errors/index.js';
import { StoreError, type MultipartUpload, type ObjectMeta, type ObjectStore } from '../store/index.js';
import { backoffDelay } from './backoff.js';
import { WritePathError } from './write-path-error.js';
import { queuedAges, writePathMetrics } from './write-path-metrics.js';
import { KeyLock } from '../async/index.js';
import { untilAborted } from '../async/index.js';
import { syncDir } from '../durable/index.js';
import { NewestPins } from './newest-pins.js';
import { partRange, partsOf } from './part-layout.js';
import { PendingUpload } from './pending-upload.js';
import { UploadSlots } from './slots.js';
import { StagedFile } from './staged-file.js';
import { StagingSpace } from './staging-space.js';
import { TreeRenames } from './tree-rename.js';
import { UploadJournal } from './upload-journal.js';
import type { UploadRecord } from './upload-record.js';
import { WriteHandle, type AdoptHook, type OpenOptions, type PendingFile, type UploadStatus, type WriteTarget } from './write-handle.js';
import { realSleep, resolveWritePathConfig, type CloseMode, type ResolvedWritePathConfig, type WritePathConfig } from './write-path-config.js';

interface HandleState {
  readonly upload: PendingUpload;
  readonly closeMode: CloseMode;
  /** Calls on one handle run one after the other, in call order. */
  queue: Promise<unknown>;
  released: boolean;
}

const STAGED_DIR = 'staged';
const JOURNAL_DIR = 'journal';
const PINS_FILE = 'pins.json';
const RENAMES_DIR = 'renames';
const STAGED_SUFFIX = '.data';
/**
 * How long after the journaled start of a CreateMultipartUpload the store may have created it:
 * the S3 client makes up to 4 attempts of at most 60 s each (store/s3-store.ts), so 5 minutes.
 */
const ORPHAN_WINDOW_MS = 5 * 60_000;
/** Store clocks (S3's Initiated, to the second) may run this far from ours. */
const STORE_CLOCK_SKEW_MS = 60_000;
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
 */
export class WritePath {
  readonly #config: ResolvedWritePathConfig;
  readonly #stores: (storeId: string) => ObjectStore;
  readonly #adopt: AdoptHook | undefined;
  readonly #space: StagingSpace;
  readonly #slots: UploadSlots;
  readonly #pins: NewestPins;
  readonly #stagedDir: string;
  #journal: UploadJournal | undefined;
  /**
   * Orders, per key, the store calls that create or remove an object: a commit's PUT or
   * CompleteMultipartUpload (with its HEAD), an unlink's DELETE, a rename's copy and delete.
   * Those calls are never aborted once sent (an aborted PUT may still land in the store after
   * a later DELETE); an unlink or rename waits for the one in flight instead.
   */
  readonly #locks = new KeyLock();
  readonly #trees: TreeRenames;
  readonly #uploads = new Map<string, PendingUpload>();
  readonly #landedListeners = new Set<(storeId: string, key: string) => void>();
  readonly #handles = new Map<WriteHandle, HandleState>();
  /** Store aborts of dropped multipart uploads still retrying. */
  readonly #aborts = new Set<Promise<void>>();
  #nextHandle = 1;
  #openSeq = 0;
  #orderSeq = 0;
  #closing = false;
  /** Aborted by `close()`: waits for commits (flush, fsync, sync release) end then. */
  readonly #closed = new AbortController();
  /** Resolved (and replaced) whenever an upload settles or moves, for waiters on other uploads. */
  #pulse = deferred();

  constructor(config: WritePathConfig, stores: (storeId: string) => ObjectStore, adopt?: AdoptHook) {
    this.#config = resolveWritePathConfig(config);
    this.#stores = stores;
    this.#adopt = adopt;
    this.#space = new StagingSpace({ limitBytes: this.#config.stagingLimitBytes, stallMs: this.#config.stagingWaitMs, sleep: realSleep, logger: this.#config.logger });
    this.#slots = new UploadSlots(this.#config.maxConcurrentParts, this.#config.partSizeBytes);
    this.#stagedDir = join(this.#config.stagingDir, STAGED_DIR);
    this.#pins = new NewestPins(this.#config.keepNewest, this.#config.pins, join(this.#config.stagingDir, PINS_FILE), this.#config.logger);
    this.#trees = new TreeRenames(join(this.#config.stagingDir, RENAMES_DIR), stores, <T>(storeId: string, keys: readonly string[], work: () => Promise<T>) => this.#locked(storeId, keys, work), this.#config.logger);
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
    await mkdir(this.#stagedDir, { recursive: true });
    const journal = await UploadJournal.open(join(this.#config.stagingDir, JOURNAL_DIR), this.#config.logger);
    this.#journal = journal;
    // Folder renames a crash interrupted are finished first, and uploads journaled under their
    // old folder move with them (tree-rename.ts has the argument).
    await this.#trees.recover();
    const records = (await journal.list()).sort((a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1]);
    const keep = new Set<string>();
    const journaled = new Set(records.flatMap((r) => (r.uploadId ? [r.uploadId] : [])));
    // Before any upload resumes (and creates uploads of its own): abort what a crash left
    // between journaling a CreateMultipartUpload and journaling its id.
    const unresolved = new Set<string>();
    for (const record of records) {
      if (record.creatingSinceMs !== undefined && !record.uploadId && !(await this.#abortOrphans(record, journaled))) unresolved.add(record.id);
    }
    for (const record of records) {
      if (record.state === 'writing') {
        await rm(record.stagedFile, { force: true });
        if (record.uploadId) this.#abortInStore(record.storeId, { key: record.key, uploadId: record.uploadId }, () => journal.remove(record.id));
        else if (!unresolved.has(record.id)) await journal.remove(record.id); // else kept: the next start looks again
        continue;
      }
      keep.add(record.stagedFile);
      await this.#resume(record);
    }
    for (const name of await readdir(this.#stagedDir)) {
      const path = join(this.#stagedDir, name);
      if (!keep.has(path)) await rm(path, { force: true });
    }
    await this.#pins.load();
    this.#config.logger.info({ resumed: this.#uploads.size, stagedBytes: this.#space.usedBytes }, 'write path recovered');
  }

  /** Starts a new version of `target`. With `truncate: false` the current bytes are staged first. */
  async open(target: WriteTarget, options: OpenOptions): Promise<WriteHandle> {
    this.#requireJournal();
    if (this.#closing) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', `the write path is closing; cannot open ${target.key}`);
    const id = randomBytes(UPLOAD_ID_BYTES).toString('hex');
    const staged = await StagedFile.create(join(this.#stagedDir, `${id}${STAGED_SUFFIX}`));
    const upload = new PendingUpload({ id, storeId: target.storeId, key: target.key, staged, partSize: this.#config.partSizeBytes, mtimeMs: this.#config.now(), openSeq: ++this.#openSeq });
    upload.meta = options.meta ?? this.#newest(target.storeId, target.key)?.meta;
    try {
      // An unchanged copy of an existing file uploads nothing at release; a new file is created even if empty.
      // Under the key's lock: a version committed meanwhile cannot slip between the look at the
      // pending versions and the look at the store.
      if (!options.truncate) upload.dirty = !(await this.#locked(target.storeId, [target.key], () => this.#copyCurrent(upload)));
    } catch (err) {
      this.#space.free(upload.reserved);
      await staged.close();
      await rm(staged.path, { force: true });
      throw err;
    }
    this.#uploads.set(id, upload);
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
      if (upload.mode === 'stream' && offset !== upload.staged.size) this.#fallBack(upload, `write at ${offset}, not at the end (${upload.staged.size})`);
      await upload.staged.write(offset, data);
      upload.touched(this.#config.now());
      this.#dispatchParts(upload, false);
      return data.length;
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
      if (upload.mode === 'stream') this.#fallBack(upload, `truncate to ${size}`);
      await upload.staged.truncate(size);
      if (size < upload.reserved) {
        this.#space.free(upload.reserved - size);
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
    return this.#serial(handle, async (upload) => {
      if (upload.cancelled) return;
      if (!upload.dirty) {
        await this.#withDeadline(this.#olderSettled(upload), upload, () => undefined);
        return;
      }
      await upload.staged.sync();
      let ref: ObjectRef | undefined;
      // A rename during the commit interrupts it; commit again under the new key.
      while (!ref) {
        upload.order = this.#nextOrder();
        upload.taskAbort = new AbortController();
        const work = this.#commitTask(upload);
        upload.task = work.then(() => undefined);
        ref = await this.#withDeadline(work, upload, () => upload.taskAbort.abort());
        if (upload.cancelled) return;
        if (this.#closing) throw new WritePathError('CHECKPOINT_UPLOAD_FAILED', `the write path closed before ${upload.key} was committed; its handle is gone`);
      }
      await this.#adoptBytes(ref, upload);
      await this.#pins.committed(ref, this.#config.now());
      // The multipart upload is complete: forget it without aborting it, and stream anew.
      upload.multipart = undefined;
      this.#dropMultipart(upload);
      upload.dirty = false;
      upload.landed = false;
      upload.state = 'writing';
      upload.recordState = 'writing';
      if (upload.hasRecord) await this.#persist(upload);
    });
  }

  /**
   * Closes the handle. Async mode: resolves once the staged bytes and the journal record are
   * fsync'd (the upload goes on in the background). Sync mode: once the store has the object
   * (or throws CHECKPOINT_UPLOAD_FAILED after `commitWaitMs`; the upload goes on).
   * A handle that changed nothing uploads nothing.
   */
  release(handle: WriteHandle): Promise<void> {
    const state = this.#handles.get(handle);
    const done = this.#serial(handle, async (upload) => {
      state!.released = true;
      this.#handles.delete(handle);
      if (upload.cancelled || !upload.dirty) {
        await this.#discard(upload);
        if (!upload.cancelled) upload.settle('done');
        this.#notify();
        return;
      }
      await upload.staged.sync();
      await syncDir(this.#stagedDir);
      upload.released = true;
      upload.order = this.#nextOrder();
      upload.mtimeMs = this.#config.now();
      upload.recordState = 'closed';
      upload.state = 'queued';
      await this.#persist(upload, true);
      this.#startCommit(upload);
      // The store has the object once `inStore` resolves; the cache's copy of it goes on behind.
      if (state!.closeMode === 'sync') await this.#withDeadline(upload.inStore, upload, () => undefined);
    });
    return done;
  }

  /** The newest not-yet-committed version of `key`, if any (files still open included). */
  pending(storeId: string, key: string): { size: number; mtime: Date; meta?: ObjectMeta | undefined } | undefined {
    const upload = this.#newest(storeId, key);
    return upload ? { size: upload.staged.size, mtime: new Date(upload.mtimeMs), meta: upload.meta } : undefined;
  }

  /**
   * The staged file of the newest pending version of `key` once its writer is closed: whole
   * and durable on disk, and never changed again (a later write opens a new version, a
   * copy). Undefined while a writer still has it, or when nothing is pending. The file is
   * deleted once committed; a descriptor opened on it keeps reading it.
   */
  closedStagedFile(storeId: string, key: string): string | undefined {
    const upload = this.#newest(storeId, key);
    return upload?.released && !upload.cancelled ? upload.staged.path : undefined;
  }

  /** Every key under `prefix` (recursively, `''` for all) with a version not yet committed; one entry per key. */
  pendingUnder(storeId: string, prefix: string): PendingFile[] {
    const newest = new Map<string, PendingUpload>();
    for (const upload of this.#live()) {
      if (upload.storeId !== storeId || !upload.key.startsWith(prefix)) continue;
      const seen = newest.get(upload.key);
      if (!seen || seen.openSeq < upload.openSeq) newest.set(upload.key, upload);
    }
    return [...newest.values()].sort((a, b) => (a.key < b.key ? -1 : 1)).map((u) => ({ key: u.key, size: u.staged.size, mtime: new Date(u.mtimeMs) }));
  }

  /**
   * Bytes [offset, offset + length) of the pending version of `key` (fewer at its end), or
   * `undefined` when nothing is pending (any more): read the store then.
   */
  async readPending(storeId: string, key: string, offset: number, length: number): Promise<Buffer | undefined> {
    const upload = this.#newest(storeId, key);
    if (!upload) return undefined;
    try {
      return await upload.staged.read(offset, length);
    } catch (err) {
      if (upload.gone) return undefined; // committed and deleted meanwhile
      throw err;
    }
  }

  /**
   * Removes `key`: every pending version is cancelled (nothing more of it reaches the store, its
   * multipart upload is aborted) and the object is deleted from the store, after any commit of
   * the key already sent has landed, so an unlink always wins over the upload it races. An open
   * handle keeps accepting writes, which are dropped at release.
   */
  async unlink(storeId: string, key: string): Promise<void> {
    await this.#locked(storeId, [key], async () => {
      await this.#cancel(storeId, key);
      await this.#stores(storeId).delete(key);
    });
  }

  /**
   * Changes the attributes of `key` (chmod, chown, an explicit mtime): on its pending versions,
   * committed with them, and on the object in the store (a metadata-only copy) unless a pending
   * version will replace it. Answers `false` when there is no file.
   */
  async setMeta(storeId: string, key: string, patch: ObjectMeta): Promise<boolean> {
    const done = await this.#locked(storeId, [key], async () => {
      const pending = this.#live().filter((u) => u.storeId === storeId && u.key === key);
      for (const upload of pending) {
        upload.meta = { ...upload.meta, ...patch };
        if (!upload.landed && (upload.multipart || upload.creating)) upload.metaAfterCommit = true;
        await this.#persist(upload);
      }
      // A version still to be committed carries the change; a clean copy (opened for writing,
      // not written: `touch`) or one already in the store does not, so the object is changed.
      if (pending.some((u) => u.dirty && !u.landed)) return true;
      const store = this.#stores(storeId);
      const head = await store.head(key);
      if (!head) return pending.length > 0;
      await store.copy(key, key, { meta: { ...head.meta, ...patch } });
      return true;
    });
    return done === true;
  }

  /**
   * Writes a small object whole (a symbolic link's target), replacing the file at `key` and its
   * pending versions, in order with the key's other store calls. Answers the new ETag.
   */
  async writeObject(storeId: string, key: string, body: Buffer, meta: ObjectMeta): Promise<string> {
    const etag = await this.#locked(storeId, [key], async () => {
      await this.#cancel(storeId, key);
      return (await this.#stores(storeId).put(key, body, { meta })).etag;
    });
    return etag!;
  }

  /**
   * Moves the file at `fromKey` to `toKey`, as rename(2) does: what was at `toKey` is replaced
   * (its pending versions cancelled), the committed object is copied and deleted in the store,
   * and pending versions (open ones included) move with it: their uploads restart under the new
   * key from the staged bytes and commit after the copy. Ordered with every commit of either
   * key (see #locks). Answers `false`, changing nothing, when there is no file at `fromKey`.
   */
  async rename(storeId: string, fromKey: string, toKey: string): Promise<boolean> {
    if (fromKey === toKey) return true;
    const moved = await this.#locked(storeId, [fromKey, toKey], () => this.#renameLocked(storeId, fromKey, toKey));
    return moved === true;
  }

  /**
   * Moves a folder: every object under `fromPrefix` (folder markers included) and every pending
   * file. The caller has checked that nothing but an empty folder is at `toPrefix`. See
   * tree-rename.ts for the order and what a crash or a store failure leaves.
   */
  async renameTree(storeId: string, fromPrefix: string, toPrefix: string): Promise<void> {
    await this.#trees.run(storeId, fromPrefix, toPrefix, async () => {
      for (const pending of this.pendingUnder(storeId, fromPrefix)) {
        await this.rename(storeId, pending.key, `${toPrefix}${pending.key.slice(fromPrefix.length)}`);
      }
    });
  }

  async #renameLocked(storeId: string, fromKey: string, toKey: string): Promise<boolean> {
    const movers = this.#live().filter((u) => u.storeId === storeId && u.key === fromKey);
    for (const upload of movers) await this.#interrupt(upload);
    let rekeyed = false;
    try {
      const store = this.#stores(storeId);
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
        upload.key = toKey;
        if (upload.released) upload.order = this.#nextOrder();
        await this.#persist(upload);
      }
      await this.#pins.forget(storeId, fromKey);
      return true;
    } finally {
      // Restarted whatever happened: under the new key, or the old one if the move failed.
      for (const upload of movers) {
        if (upload.settled || (!rekeyed && upload.cancelled)) continue;
        if (upload.released) this.#startCommit(upload);
        else this.#dispatchParts(upload, false);
      }
      this.#notify();
    }
  }

  /** Cancels every pending version of `key` (the caller holds its lock). */
  async #cancel(storeId: string, key: string): Promise<void> {
    const victims = this.#live().filter((u) => u.storeId === storeId && u.key === key);
    for (const upload of victims) {
      upload.cancelled = true;
      await this.#interrupt(upload);
      if (upload.state === 'done') continue;
      const open = [...this.#handles.values()].some((h) => h.upload === upload && !h.released);
      if (!open) await this.#discard(upload);
      upload.settle('cancelled');
    }
    await this.#pins.forget(storeId, key);
    this.#notify();
  }

  /**
   * Calls `listener` whenever a version lands in the store (before its staged copy goes), so
   * whoever caches metadata of the key forgets what it learnt before. Answers a function that
   * removes the listener.
   */
  onLanded(listener: (storeId: string, key: string) => void): () => void {
    this.#landedListeners.add(listener);
    return () => this.#landedListeners.delete(listener);
  }

  /** Pending uploads (released and still open), oldest first. */
  uploads(): UploadStatus[] {
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

  /**
   * Resolves when every released version (of `target` only, if given) pending at the call is
   * committed or cancelled. Throws CHECKPOINT_UPLOAD_FAILED if the write path closes first.
   */
  async flush(target?: WriteTarget): Promise<void> {
    const waiting = [...this.#uploads.values()].filter((u) => u.released && !u.settled && (!target || (u.storeId === target.storeId && u.key === target.key)));
    await untilAborted(Promise.all(waiting.map((u) => u.finished)), this.#closed.signal);
    const left = waiting.filter((u) => !u.settled);
    if (left.length > 0) throw new WritePathError('CHECKPOINT_UPLOAD_FAILED', `the write path closed with ${left.length} uploads pending; they resume at the next start`);
  }

  stagingUsedBytes(): number {
    return this.#space.usedBytes;
  }

  /** The versions kept pinned (newest `keepNewest` per folder). */
  pinned(): ObjectRef[] {
    return this.#pins.pinned();
  }

  /**
   * Stops: in-flight store calls are let finish, retries stop, staged files and journal
   * records stay for the next `recover()`. Open handles are dropped (their files were not
   * released, so they are not kept).
   */
  async close(): Promise<void> {
    queuedAges.delete(this.oldestQueuedSeconds);
    this.#closing = true;
    this.#closed.abort();
    for (const upload of this.#uploads.values()) {
      upload.taskAbort.abort();
      upload.generationAbort.abort();
    }
    this.#notify();
    await Promise.all([...this.#uploads.values()].map((u) => Promise.all([u.task, ...u.inflight.values()])));
    await Promise.all([...this.#aborts]);
    await this.#journal?.idle();
    for (const upload of this.#uploads.values()) await upload.staged.close();
    this.#handles.clear();
  }

  // ---- staging ----

  #serial<T>(handle: WriteHandle, body: (upload: PendingUpload) => Promise<T>): Promise<T> {
    const state = this.#handles.get(handle);
    if (!state || state.released) {
      return Promise.reject(new WritePathError('CHECKPOINT_HANDLE_CLOSED', `write handle ${handle.id} for ${handle.key} is not open`));
    }
    const run = state.queue.then(() => {
      if (state.released) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', `write handle ${handle.id} for ${handle.key} is already released`);
      if (this.#closing) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', `the write path is closing; handle ${handle.id} for ${handle.key} is gone`);
      return body(state.upload);
    });
    state.queue = run.catch(() => undefined);
    return run;
  }

  async #grow(upload: PendingUpload, end: number): Promise<void> {
    if (end <= upload.reserved) return;
    await this.#space.reserve(end - upload.reserved, () => [...this.#uploads.values()].some((u) => u.released && !u.settled && u.reserved > 0));
    upload.reserved = end;
  }

  /**
   * Stages the bytes the file has now: the newest pending version's, else the committed object's
   * as the store has it now (one HEAD, then GETs with If-Match). Answers whether there was a file.
   */
  async #copyCurrent(upload: PendingUpload): Promise<boolean> {
    const source = this.#newest(upload.storeId, upload.key);
    let existing: { etag: string; size: number } | undefined;
    if (!source) {
      const head = await this.#stores(upload.storeId).head(upload.key);
      if (head) existing = head;
      if (head?.meta && !upload.meta) upload.meta = head.meta;
    }
    const size = source ? source.staged.size : (existing?.size ?? 0);
    const chunk = this.#config.partSizeBytes;
    for (let offset = 0; offset < size; offset += chunk) {
      const length = Math.min(chunk, size - offset);
      let bytes: Buffer;
      if (source) bytes = await source.staged.read(offset, length);
      else bytes = (await this.#stores(upload.storeId).getRange(upload.key, offset, length, { ifMatch: existing!.etag })).body;
      await this.#grow(upload, offset + bytes.length);
      await upload.staged.write(offset, bytes);
    }
    return source !== undefined || existing !== undefined;
  }

  #fallBack(upload: PendingUpload, why: string): void {
    upload.mode = 'whole';
    this.#config.logger.debug({ key: upload.key, why }, 'write not sequential: the file is uploaded whole after release');
    this.#dropMultipart(upload);
  }

  // ---- uploading ----

  /**
   * Starts uploads of parts that are ready: full parts while streaming; once released
   * (`final`), every part of the file not in the store or in flight yet.
   */
  #dispatchParts(upload: PendingUpload, final: boolean): void {
    if (upload.cancelled || this.#closing) return;
    if (!final && (upload.mode !== 'stream' || upload.released)) return;
    const size = upload.staged.size;
    if (final) {
      for (const range of partsOf(upload.partSize, size)) {
        const have = upload.parts.get(range.partNumber);
        if ((have && have.size === range.end - range.start) || upload.inflight.has(range.partNumber)) continue;
        this.#startPart(upload, range.partNumber, range.start, range.end);
      }
      return;
    }
    while (upload.inflight.size < this.#config.streamingPartsPerFile) {
      const range = partRange(upload.partSize, upload.nextPart);
      if (range.end > size) break;
      upload.nextPart++;
      if (!upload.parts.has(range.partNumber) && !upload.inflight.has(range.partNumber)) this.#startPart(upload, range.partNumber, range.start, range.end);
    }
  }

  #startPart(upload: PendingUpload, partNumber: number, start: number, end: number): void {
    const generation = upload.generation;
    const signal = upload.generationAbort.signal;
    const run = (async () => {
      for (let attempt = 1; ; attempt++) {
        if (signal.aborted || upload.generation !== generation) return;
        try {
          const multipart = await this.#ensureMultipart(upload, generation);
          if (!multipart) return;
          const part = await this.#slots.run(end - start, async (buffer) => {
            const body = await upload.staged.readInto(buffer, start);
            return this.#stores(upload.storeId).uploadPart(multipart, partNumber, body);
          });
          if (upload.generation !== generation) return;
          // Not journaled per part: after a crash the store's ListParts is the authority, and
          // two fsyncs per part would compete with the writes being staged.
          upload.parts.set(partNumber, part);
          this.#space.progress();
          if (upload.state === 'retrying') upload.state = upload.released ? 'uploading' : 'writing';
          return;
        } catch (err) {
          if (signal.aborted || upload.generation !== generation) return;
          this.#noteFailure(upload, err, `part ${partNumber}`);
          if (!(await this.#backoff(attempt, signal))) return;
        }
      }
    })().finally(() => {
      if (upload.inflight.get(partNumber) === run && upload.generation === generation) upload.inflight.delete(partNumber);
      this.#dispatchParts(upload, false); // streaming: a part slot of this file is free
    });
    upload.inflight.set(partNumber, run);
  }

  /** The upload's multipart upload, created (and journaled) on first use; `undefined` if it was dropped meanwhile. */
  async #ensureMultipart(upload: PendingUpload, generation: number): Promise<MultipartUpload | undefined> {
    if (upload.multipart) return upload.multipart;
    upload.creating ??= (async () => {
      const key = upload.key;
      // The intent is journaled first: a crash after the store created the upload but before
      // the record names it would leave an upload nobody aborts; recover() looks for it then.
      upload.creatingSinceMs ??= this.#config.now();
      await this.#persist(upload, true);
      const created = await this.#stores(upload.storeId).createMultipart(key, upload.meta ? { meta: upload.meta } : {});
      upload.metaAfterCommit = false;
      if (upload.generation !== generation || upload.key !== key) {
        this.#abortInStore(upload.storeId, created);
        return undefined;
      }
      upload.multipart = created;
      upload.creatingSinceMs = undefined;
      await this.#persist(upload, true);
      return created;
    })();
    try {
      const multipart = await upload.creating;
      return upload.generation === generation ? multipart : undefined;
    } catch (err) {
      if (upload.generation === generation) upload.creating = undefined;
      throw err;
    }
  }

  /** Forgets the multipart upload (aborting it in the store) so parts start over from part 1. */
  #dropMultipart(upload: PendingUpload): void {
    const old = upload.multipart;
    upload.generation++;
    upload.generationAbort.abort();
    upload.generationAbort = new AbortController();
    upload.multipart = undefined;
    upload.creating = undefined;
    upload.parts.clear();
    upload.inflight.clear();
    upload.nextPart = 1;
    if (old) this.#abortInStore(upload.storeId, old);
  }

  #startCommit(upload: PendingUpload): void {
    upload.taskAbort = new AbortController();
    const task = (async () => {
      const ref = await this.#commitTask(upload);
      if (ref) await this.#finish(upload, ref);
    })().catch((err: unknown) => this.#config.logger.error({ err, key: upload.key }, 'upload finished in the store but its cleanup failed'));
    upload.task = task;
  }

  /** Commits the upload's current bytes, retrying with backoff; `undefined` when interrupted. */
  async #commitTask(upload: PendingUpload): Promise<ObjectRef | undefined> {
    const signal = upload.taskAbort.signal;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return undefined;
      try {
        const etag = await this.#commitOnce(upload, signal);
        if (etag === undefined) return undefined;
        return { storeId: upload.storeId, key: upload.key, etag, size: upload.staged.size };
      } catch (err) {
        if (signal.aborted) return undefined;
        this.#noteFailure(upload, err, 'commit');
        upload.state = 'retrying';
        if (!(await this.#backoff(attempt, signal))) return undefined;
      }
    }
  }

  /** One attempt: single PUT, or the missing parts then CompleteMultipartUpload; then HEAD. Answers the ETag. */
  async #commitOnce(upload: PendingUpload, signal: AbortSignal): Promise<string | undefined> {
    if (!(await this.#olderSettled(upload, signal))) return undefined;
    const store = this.#stores(upload.storeId);
    const size = upload.staged.size;
    if (upload.recovered) {
      const etag = await this.#reconcile(upload, store);
      if (etag !== undefined) return etag;
      upload.recovered = false;
    }
    upload.state = 'uploading';
    const key = upload.key;
    // The call that makes the object, and the HEAD that confirms it, hold the key's lock and
    // are not aborted once sent: see #locks. `undefined` when interrupted before it was sent.
    const create = (send: () => Promise<string>): Promise<string | undefined> =>
      this.#locked(upload.storeId, [key], async () => {
        if (signal.aborted || upload.cancelled || upload.key !== key) return undefined;
        const etag = await this.#confirm(store, key, size, await send());
        upload.landed = true;
        for (const listener of this.#landedListeners) listener(upload.storeId, key);
        return etag;
      }, signal);
    if (size < upload.partSize) {
      if (upload.multipart) this.#dropMultipart(upload);
      return this.#slots.run(size, async (buffer) => {
        const body = await upload.staged.readInto(buffer, 0);
        return create(async () => (await store.put(key, body, upload.meta ? { meta: upload.meta } : {})).etag);
      });
    }
    for (;;) {
      this.#dispatchParts(upload, true);
      if (upload.inflight.size === 0) break;
      await untilAborted(Promise.all(upload.inflight.values()), signal);
      if (signal.aborted) return undefined;
    }
    const parts = partsOf(upload.partSize, size).map((range) => upload.parts.get(range.partNumber));
    const multipart = upload.multipart;
    if (!multipart || parts.some((p) => !p)) throw new StoreError('STORE_IO', `parts of ${upload.key} are missing after upload`);
    upload.state = 'committing';
    upload.recordState = 'committing';
    await this.#persist(upload);
    return create(async () => {
      try {
        return (await store.completeMultipart(multipart, parts.map((p) => p!))).etag;
      } catch (err) {
        if (!isStrataError(err, 'STORE_NOT_FOUND')) throw err;
        // Gone: completed by an earlier attempt whose answer was lost, or dropped by the store.
        const head = await store.head(key);
        if (head && head.size === size) return head.etag;
        upload.recordState = 'closed';
        this.#dropMultipart(upload);
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
      this.#config.logger.warn({ key, size, storeSize: head.size }, 'the object changed in the store right after this upload; another writer won');
    }
    return etag || head.etag;
  }

  /** Runs `work` holding the locks of `keys` in `storeId`; `undefined` if `signal` aborts first. */
  #locked<T>(storeId: string, keys: readonly string[], work: () => Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
    return this.#locks.with(keys.map((k) => `${storeId}\0${k}`), work, signal);
  }

  /**
   * After a restart: is the object already there (answers its ETag), and which parts does the
   * store still hold? Parts whose size does not match their range are uploaded again.
   */
  async #reconcile(upload: PendingUpload, store: ObjectStore): Promise<string | undefined> {
    const size = upload.staged.size;
    if (!upload.multipart) {
      if (size >= upload.partSize) return undefined;
      const head = await store.head(upload.key);
      if (head && head.size === size && head.etag === (await upload.staged.md5())) return head.etag;
      return undefined;
    }
    let listed;
    try {
      listed = await store.listParts(upload.multipart);
    } catch (err) {
      if (!isStrataError(err, 'STORE_NOT_FOUND')) throw err;
      if (upload.recordState === 'committing') {
        const head = await store.head(upload.key);
        if (head && head.size === size) return head.etag;
      }
      upload.recordState = 'closed';
      this.#dropMultipart(upload);
      return undefined;
    }
    const ranges = new Map(partsOf(upload.partSize, size).map((r) => [r.partNumber, r]));
    upload.parts.clear();
    for (const part of listed) {
      const range = ranges.get(part.partNumber);
      if (range && part.size === range.end - range.start) upload.parts.set(part.partNumber, part);
    }
    this.#config.logger.info({ key: upload.key, reused: upload.parts.size, of: ranges.size }, 'resuming multipart upload');
    return undefined;
  }

  /** Committed: hand the bytes to the cache, pin, then delete the record and the staged file. */
  async #finish(upload: PendingUpload, ref: ObjectRef): Promise<void> {
    if (upload.metaAfterCommit && upload.meta) {
      const meta = upload.meta;
      const copied = await this.#locked(upload.storeId, [ref.key], () => this.#stores(upload.storeId).copy(ref.key, ref.key, { meta })).catch((err: unknown) => {
        this.#config.logger.warn({ err, key: ref.key }, 'could not set the attributes of a committed file');
        return undefined;
      });
      if (copied) ref = { ...ref, etag: copied.etag };
    }
    upload.markInStore();
    await this.#adoptBytes(ref, upload);
    await this.#pins.committed(ref, this.#config.now());
    await this.#discard(upload);
    upload.settle('done');
    writePathMetrics.committed.inc();
    writePathMetrics.committedBytes.inc(ref.size);
    this.#notify();
    this.#config.logger.debug({ key: ref.key, size: ref.size, etag: ref.etag }, 'upload committed');
  }

  async #adoptBytes(ref: ObjectRef, upload: PendingUpload): Promise<void> {
    if (!this.#adopt) return;
    try {
      await upload.staged.flush();
      await this.#adopt(ref, upload.staged.path);
    } catch (err) {
      this.#config.logger.warn({ err, key: ref.key }, 'the cache could not adopt the staged bytes; they will be read from the store');
    }
  }

  /** Deletes the record (first) and the staged file, and returns the staging space. */
  async #discard(upload: PendingUpload): Promise<void> {
    if (upload.gone) return;
    upload.gone = true;
    if (upload.hasRecord) await this.#requireJournal().remove(upload.id);
    upload.hasRecord = false;
    await upload.staged.close();
    await rm(upload.staged.path, { force: true });
    this.#space.free(upload.reserved);
    upload.reserved = 0;
    this.#uploads.delete(upload.id);
  }

  /** Stops the commit task and parts of `upload` and waits for them to settle. */
  async #interrupt(upload: PendingUpload): Promise<void> {
    upload.taskAbort.abort();
    const task = upload.task;
    await task;
    if (upload.state === 'done') return;
    upload.recordState = upload.released ? 'closed' : 'writing';
    if (upload.released && !upload.settled) upload.state = 'queued';
    this.#dropMultipart(upload);
  }

  /** Aborts a multipart upload in the store, retrying in the background until it works or the path closes. */
  #abortInStore(storeId: string, multipart: MultipartUpload, then?: () => Promise<void>): void {
    const run = (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#stores(storeId).abortMultipart(multipart);
          await then?.();
          return;
        } catch (err) {
          this.#config.logger.warn({ err, key: multipart.key, attempt }, 'could not abort a multipart upload; retrying');
          if (this.#closing || !(await this.#backoff(attempt))) return;
        }
      }
    })();
    this.#aborts.add(run);
    void run.finally(() => this.#aborts.delete(run));
  }

  /**
   * Finds and aborts the multipart upload a crash left between journaling its creation and
   * journaling its id (`record.creatingSinceMs`); `false` if the store could not be asked (the
   * S3 client's own retries included). Only an upload that is surely ours is touched: of the
   * record's key, begun within ORPHAN_WINDOW_MS of the journaled time (store clocks may differ
   * from ours by STORE_CLOCK_SKEW_MS), holding no parts (ours never got one: parts start only
   * once its id is journaled) and named by no journal record. Runs before any upload resumes,
   * so none of this process's own uploads exists yet.
   */
  async #abortOrphans(record: UploadRecord, journaled: ReadonlySet<string>): Promise<boolean> {
    const since = record.creatingSinceMs!;
    try {
      const store = this.#stores(record.storeId);
      for (const { upload, initiated } of await store.listMultipart(record.key)) {
        const at = initiated.getTime();
        if (journaled.has(upload.uploadId) || at < since - STORE_CLOCK_SKEW_MS || at > since + ORPHAN_WINDOW_MS + STORE_CLOCK_SKEW_MS) continue;
        if ((await store.listParts(upload)).length > 0) continue;
        await store.abortMultipart(upload);
        this.#config.logger.info({ key: record.key, uploadId: upload.uploadId }, 'aborted a multipart upload created just before a crash');
      }
      return true;
    } catch (err) {
      this.#config.logger.warn(
        { err, key: record.key },
        record.state === 'writing'
          ? 'could not look for a multipart upload left by a crash; its record stays for the next start'
          : 'could not look for a multipart upload left by a crash; one may stay in the store (a lifecycle rule for incomplete uploads removes it)',
      );
      return false;
    }
  }

  // ---- journal ----

  /** Writes the upload's record if it needs one (released, or holding a multipart upload to abort after a crash). */
  async #persist(upload: PendingUpload, force = false): Promise<void> {
    if (upload.gone || this.#closing) return;
    if (!force && !upload.hasRecord) return;
    if (!upload.released && !upload.multipart && !upload.hasRecord && upload.creatingSinceMs === undefined) return;
    upload.hasRecord = true;
    await this.#requireJournal().write(upload.record());
  }

  async #resume(record: UploadRecord): Promise<void> {
    let staged: StagedFile;
    try {
      staged = await StagedFile.reopen(record.stagedFile);
    } catch (err) {
      this.#config.logger.error({ err, key: record.key, stagedFile: record.stagedFile }, 'staged file of a journaled upload is missing; it cannot be finished');
      return;
    }
    if (staged.size !== record.size) {
      this.#config.logger.error({ key: record.key, size: staged.size, expected: record.size }, 'staged file has the wrong size; uploading what is there');
    }
    const upload = new PendingUpload({ id: record.id, storeId: record.storeId, key: record.key, staged, partSize: record.partSizeBytes, mtimeMs: record.mtimeMs, openSeq: ++this.#openSeq });
    upload.meta = record.meta;
    upload.released = true;
    upload.recovered = true;
    upload.hasRecord = true;
    upload.recordState = record.state;
    upload.state = 'queued';
    upload.order = record.order;
    upload.multipart = record.uploadId ? { key: record.key, uploadId: record.uploadId } : undefined;
    for (const part of record.parts) upload.parts.set(part.partNumber, part);
    const key = this.#trees.moved(record.storeId, record.key);
    if (key !== record.key) {
      // Its folder was renamed before the crash: it commits under the new name, from the start.
      upload.key = key;
      upload.recovered = false;
      upload.recordState = 'closed';
      this.#dropMultipart(upload);
      await this.#persist(upload);
    }
    upload.reserved = staged.size;
    this.#space.claim(staged.size);
    this.#uploads.set(upload.id, upload);
    this.#startCommit(upload);
  }

  // ---- helpers ----

  /** Waits until no older released version of the same key is pending; `false` if aborted. */
  async #olderSettled(upload: PendingUpload, signal?: AbortSignal): Promise<boolean> {
    for (;;) {
      const older = [...this.#uploads.values()].some(
        (u) => u !== upload && u.released && !u.settled && u.storeId === upload.storeId && u.key === upload.key && compareOrder(u.order, upload.order) < 0,
      );
      const blocked = older || (!upload.released && [...this.#uploads.values()].some((u) => u.released && !u.settled && u.storeId === upload.storeId && u.key === upload.key && u !== upload));
      if (!blocked) return true;
      const pulse = this.#pulse.promise;
      await (signal ? untilAborted(pulse, signal) : pulse);
      if (signal?.aborted || this.#closing) return false;
    }
  }

  async #withDeadline<T>(work: Promise<T>, upload: PendingUpload, onTimeout: () => void): Promise<T> {
    const timer = new AbortController();
    const expired = realSleep(this.#config.commitWaitMs, timer.signal).then(
      () => true,
      () => false,
    );
    try {
      const winner = await untilAborted(Promise.race([work.then((value) => ({ value })), expired.then((hit) => (hit ? 'timeout' : 'cancelled'))]), this.#closed.signal);
      if (typeof winner === 'object') return winner.value;
      if (winner === undefined) {
        throw new WritePathError('CHECKPOINT_UPLOAD_FAILED', `the write path closed before ${upload.key} was committed; it stays staged and resumes at the next start`);
      }
      onTimeout();
      await work.catch(() => undefined);
      throw new WritePathError(
        'CHECKPOINT_UPLOAD_FAILED',
        `${upload.key} is not in the store after ${this.#config.commitWaitMs} ms (${upload.attempts} failed attempts${upload.lastError ? `, last: ${upload.lastError}` : ''}); its bytes stay staged`,
      );
    } finally {
      timer.abort();
    }
  }

  #noteFailure(upload: PendingUpload, err: unknown, what: string): void {
    upload.attempts++;
    writePathMetrics.failures.inc();
    upload.lastError = err instanceof Error ? err.message : String(err);
    if (upload.state !== 'writing') upload.state = 'retrying';
    this.#config.logger.warn({ err, key: upload.key, what, attempts: upload.attempts }, 'upload to the store failed; retrying');
  }

  /** Sleeps before retry `attempt`; `false` when aborted (or closing). */
  async #backoff(attempt: number, signal?: AbortSignal): Promise<boolean> {
    const ms = backoffDelay(attempt, this.#config.retryBaseDelayMs, this.#config.retryMaxDelayMs, this.#config.random);
    try {
      await this.#config.sleep(ms, signal);
      return !this.#closing && !signal?.aborted;
    } catch {
      return false;
    }
  }

  #newest(storeId: string, key: string): PendingUpload | undefined {
    let best: PendingUpload | undefined;
    for (const u of this.#live()) if (u.storeId === storeId && u.key === key && (!best || best.openSeq < u.openSeq)) best = u;
    return best;
  }

  /** Uploads that still stand for a file: not cancelled, not committed. */
  /** Seconds the oldest upload waiting for the store has waited since it was queued (0: none waits). */
  readonly oldestQueuedSeconds = (): number => {
    let oldest = Infinity;
    for (const upload of this.#live()) if (upload.released && upload.order[0] < oldest) oldest = upload.order[0];
    return Number.isFinite(oldest) ? Math.max(0, (this.#config.now() - oldest) / 1000) : 0;
  };

  #live(): PendingUpload[] {
    return [...this.#uploads.values()].filter((u) => !u.cancelled && !u.settled && !u.gone);
  }

  #nextOrder(): readonly [number, number] {
    return [this.#config.now(), ++this.#orderSeq];
  }

  #notify(): void {
    writePathMetrics.stagingUsed.set(this.#space.usedBytes);
    writePathMetrics.pending.set(this.#live().length);
    const old = this.#pulse;
    this.#pulse = deferred();
    old.resolve();
  }

  #requireJournal(): UploadJournal {
    if (!this.#journal) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', 'WritePath.recover() must run before the write path is used');
    return this.#journal;
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
