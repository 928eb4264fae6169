import type { MultipartUpload, ObjectMeta, UploadedPart } from '../store/index.js';
import type { StagedFile } from './staged-file.js';
import type { RecordState, UploadRecord } from './upload-record.js';

/**
 * - `writing`: a handle is open. `queued`: released, waiting for its turn or a slot.
 * - `uploading` / `committing`: store calls in progress. `retrying`: waiting after a failure.
 * - `done`: in the store. `cancelled`: unlinked before it was committed.
 */
export type UploadState = 'writing' | 'queued' | 'uploading' | 'retrying' | 'committing' | 'done' | 'cancelled';

/**
 * The in-memory state of one staged file version on its way to the store. Owned by the write
 * path. Its lifecycle is a state machine: `state` (what the upload does now, as
 * `GET /v1/uploads` shows it) and `recordState` (what the journal says a restart must do) change
 * only through the transition methods below, which keep the two in step; so do the flags that
 * decide the lifecycle (`released`, `dirty`, `cancelled`, `gone`, `recovered`).
 *
 * The multipart bookkeeping (`multipart`, `parts`, `inflight`, `generation`, ...) belongs to
 * part streaming (part-streaming.ts) and is changed there.
 */
export class PendingUpload {
  readonly id: string;
  readonly storeId: string;
  #key: string;
  readonly staged: StagedFile;
  /** Part size this upload is cut with (the record's after a restart). */
  readonly partSize: number;
  /** `stream`: full parts are uploaded while the file is written. `whole`: everything after release. */
  #mode: 'stream' | 'whole' = 'stream';
  #state: UploadState = 'writing';
  #recordState: RecordState = 'writing';
  #released = false;
  #dirty = true;
  #cancelled = false;
  #gone = false;
  #recovered = false;
  /** Its handle's writes reach the staged file without passing here (FUSE passthrough). */
  #external = false;
  /** A shared file made durable at a close (FLUSH) while its handle stays open: journaled as `closed`. */
  #durable = false;
  /**
   * Parts in the store may hold bytes the file no longer has (they were read while another
   * writer could still change the file): checked against the file before they are kept.
   */
  partsUnverified = false;
  /** A journal record exists on disk for this upload. */
  hasRecord = false;
  /** Staging bytes accounted to this upload. */
  reserved = 0;
  #mtimeMs: number;
  /** Attributes the object is committed with (mode, owner, an explicit mtime). */
  meta: ObjectMeta | undefined;
  /** The store call that creates the object succeeded (the commit is finishing): attributes changed now go to the object. */
  landed = false;
  /** Attributes changed after the multipart upload was created (which fixed them): applied by a copy after the commit. */
  metaAfterCommit = false;
  /** Open order within this process; the newest open version of a key is the one reads and listings see. */
  readonly openSeq: number;
  #order: readonly [number, number] = [0, 0];

  multipart: MultipartUpload | undefined;
  /** When the CreateMultipartUpload whose answer is not journaled yet was first sent (see UploadRecord). */
  creatingSinceMs: number | undefined;
  creating: Promise<MultipartUpload | undefined> | undefined;
  readonly parts = new Map<number, UploadedPart>();
  /** CRC-32C of each part's bytes as uploaded, while parts are unverified (`partsUnverified`). */
  readonly partChecks = new Map<number, number>();
  readonly inflight = new Map<number, Promise<void>>();
  /** Next part number to start while streaming. */
  nextPart = 1;
  /** Bumped whenever the multipart upload is dropped; part results of an older generation are ignored. */
  generation = 0;
  /** Aborted when the multipart upload is dropped: stops retry waits of its parts. */
  generationAbort = new AbortController();
  /** Aborted to stop the commit task (unlink, rename, shutdown). */
  taskAbort = new AbortController();
  task: Promise<void> | undefined;

  #attempts = 0;
  #lastError: string | undefined;

  readonly finished: Promise<void>;
  readonly #resolveFinished: () => void;
  /**
   * Resolves once the store has this version, before the cache has copied its bytes and its
   * staged file is gone (or when it settles without reaching the store): a sync close waits
   * for this, not for the cache.
   */
  readonly inStore: Promise<void>;
  readonly #resolveInStore: () => void;

  constructor(fields: { id: string; storeId: string; key: string; staged: StagedFile; partSize: number; mtimeMs: number; openSeq: number }) {
    this.id = fields.id;
    this.storeId = fields.storeId;
    this.#key = fields.key;
    this.staged = fields.staged;
    this.partSize = fields.partSize;
    this.#mtimeMs = fields.mtimeMs;
    this.openSeq = fields.openSeq;
    let resolve!: () => void;
    this.finished = new Promise<void>((r) => (resolve = r));
    this.#resolveFinished = resolve;
    let stored!: () => void;
    this.inStore = new Promise<void>((r) => (stored = r));
    this.#resolveInStore = stored;
  }

  /**
   * An upload found in the journal at start: released, queued, and `recovered` (the store's
   * ListParts decides which of the record's parts are reused).
   */
  static resumed(record: UploadRecord, staged: StagedFile, openSeq: number): PendingUpload {
    const upload = new PendingUpload({ id: record.id, storeId: record.storeId, key: record.key, staged, partSize: record.partSizeBytes, mtimeMs: record.mtimeMs, openSeq });
    upload.meta = record.meta;
    upload.#released = true;
    upload.#recovered = true;
    upload.hasRecord = true;
    upload.#recordState = record.state;
    upload.#state = 'queued';
    upload.#order = record.order;
    upload.partsUnverified = record.partsUnverified === true;
    upload.multipart = record.uploadId ? { key: record.key, uploadId: record.uploadId } : undefined;
    for (const part of record.parts) upload.parts.set(part.partNumber, part);
    return upload;
  }

  get key(): string {
    return this.#key;
  }

  get mode(): 'stream' | 'whole' {
    return this.#mode;
  }

  get state(): UploadState {
    return this.#state;
  }

  get recordState(): RecordState {
    return this.#recordState;
  }

  /** Released by its handle (or recovered from the journal): the staged bytes are final. */
  get released(): boolean {
    return this.#released;
  }

  /** Changed since open or since the last fsync commit; a clean release uploads nothing. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** Unlinked: nothing more goes to the store; the staged bytes go once the handle is released. */
  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** Record and staged file are deleted (after commit or cancel). */
  get gone(): boolean {
    return this.#gone;
  }

  /** Made durable by a close while its handle stays open (see `madeDurable`); committed at release. */
  get durable(): boolean {
    return this.#durable;
  }

  /** Written by the kernel through passthrough (see `writtenExternally`). */
  get external(): boolean {
    return this.#external;
  }

  /** Found in the journal at start: the store's ListParts decides which parts to reuse. */
  get recovered(): boolean {
    return this.#recovered;
  }

  get mtimeMs(): number {
    return this.#mtimeMs;
  }

  /** Release order; versions of one key are committed in this order. */
  get order(): readonly [number, number] {
    return this.#order;
  }

  /** Failed store calls so far (0 while all goes well). */
  get attempts(): number {
    return this.#attempts;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  get settled(): boolean {
    return this.#state === 'done' || this.#state === 'cancelled';
  }

  get uploadedBytes(): number {
    if (this.#state === 'done') return this.staged.size;
    let sum = 0;
    for (const part of this.parts.values()) sum += part.size;
    return sum;
  }

  // ---- transitions ----

  /** Opened as a copy of the current file: `dirty` says whether there was none (a new file is created even if empty). */
  copiedCurrent(existed: boolean): void {
    this.#dirty = !existed;
  }

  /** The content changed: an explicit modification time no longer holds. */
  touched(nowMs: number): void {
    this.#dirty = true;
    this.#mtimeMs = nowMs;
    if (this.meta?.mtime !== undefined) {
      const { mtime: _dropped, ...rest } = this.meta;
      this.meta = rest;
    }
  }

  /**
   * Its handle's writes go to the staged file through the kernel (FUSE passthrough), never
   * here: parts streamed meanwhile are unverified until the file is final.
   */
  writtenExternally(): void {
    this.#external = true;
    this.partsUnverified = true;
  }

  /**
   * A close (FLUSH) of a shared file's handle made its bytes durable while the handle stays
   * open until RELEASE: journaled as `closed`, so a restart uploads what the close promised.
   */
  madeDurable(): void {
    this.#durable = true;
    this.#recordState = 'closed';
  }

  /** A write out of order or a change of size: the file is uploaded whole after release. */
  fellBack(): void {
    this.#mode = 'whole';
  }

  /** writing → queued: the handle is released with changes; the staged bytes are final and journaled as `closed`. */
  release(order: readonly [number, number], nowMs: number): void {
    this.#released = true;
    this.#order = order;
    this.#mtimeMs = nowMs;
    this.#recordState = 'closed';
    this.#state = 'queued';
  }

  /** A commit of the current bytes begins (release or fsync) in this place of the key's order. */
  ordered(order: readonly [number, number]): void {
    this.#order = order;
  }

  /** Moved to `key` (rename, or a folder renamed before a crash), committed there in `order` if given. */
  moved(key: string, order?: readonly [number, number]): void {
    this.#key = key;
    if (order) this.#order = order;
  }

  /**
   * After a restart, the upload's folder had been renamed: it commits under `key` from the
   * start (its multipart upload is dropped), journaled as `closed`.
   */
  movedBeforeCrash(key: string): void {
    this.#key = key;
    this.#recovered = false;
    this.#recordState = 'closed';
  }

  /** The store answered what a restart needed to know; the commit goes on as a fresh one. */
  reconciled(): void {
    this.#recovered = false;
  }

  /** → uploading: the commit's store calls (parts or a single PUT) start. */
  uploading(): void {
    this.#state = 'uploading';
  }

  /** uploading → committing: CompleteMultipartUpload is about to be sent (journaled, so a restart checks with HEAD). */
  completing(): void {
    this.#state = 'committing';
    this.#recordState = 'committing';
  }

  /** The store no longer knows the multipart upload: the file is committed again from its staged bytes. */
  multipartLost(): void {
    this.#recordState = 'closed';
  }

  /** A store call failed: counted and kept for `GET /v1/uploads`; a released upload is `retrying`. */
  failed(err: unknown): void {
    this.#attempts++;
    this.#lastError = err instanceof Error ? err.message : String(err);
    if (this.#state !== 'writing') this.#state = 'retrying';
  }

  /** The commit task waits before its next attempt (an fsync's commit of an open file included). */
  retrying(): void {
    this.#state = 'retrying';
  }

  /** A part reached the store: a retrying upload is uploading again (or writing, while its handle is open). */
  partLanded(): void {
    if (this.#state === 'retrying') this.#state = this.#released ? 'uploading' : 'writing';
  }

  /** The commit task was stopped (rename, unlink): a released upload is queued again, an open one writing. */
  interrupted(): void {
    this.#recordState = this.#released || this.#durable ? 'closed' : 'writing';
    if (this.#released && !this.settled) this.#state = 'queued';
  }

  /**
   * An fsync committed the open file: it is clean, and later writes make a new version
   * streamed from its start (the caller has forgotten the completed multipart upload).
   */
  committedOpen(): void {
    this.#dirty = false;
    this.#durable = false;
    this.landed = false;
    this.#state = 'writing';
    this.#recordState = 'writing';
  }

  /** Unlinked or replaced: nothing more of it goes to the store. `settle('cancelled')` follows once its task stopped. */
  cancel(): void {
    this.#cancelled = true;
  }

  /** Its record and staged file are deleted; answers `false` if that was done already. */
  markGone(): boolean {
    if (this.#gone) return false;
    this.#gone = true;
    return true;
  }

  /** The store has committed this version: resolves `inStore`. */
  markInStore(): void {
    this.#resolveInStore();
  }

  /** → done or cancelled (final): resolves `finished` (and `inStore`). */
  settle(state: 'done' | 'cancelled'): void {
    this.#state = state;
    this.#resolveInStore();
    this.#resolveFinished();
  }

  record(): UploadRecord {
    return {
      version: 1,
      id: this.id,
      storeId: this.storeId,
      key: this.#key,
      stagedFile: this.staged.path,
      size: this.staged.size,
      partSizeBytes: this.partSize,
      uploadId: this.multipart?.uploadId,
      parts: [...this.parts.values()].sort((a, b) => a.partNumber - b.partNumber),
      state: this.#recordState,
      order: this.#order,
      mtimeMs: this.#mtimeMs,
      ...(this.meta ? { meta: this.meta } : {}),
      ...(this.partsUnverified ? { partsUnverified: true } : {}),
      ...(this.creatingSinceMs !== undefined && !this.multipart ? { creatingSinceMs: this.creatingSinceMs } : {}),
    };
  }
}
