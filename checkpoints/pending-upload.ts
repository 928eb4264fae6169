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
 * The in-memory state of one staged file version on its way to the store. Owned by
 * WritePath; every field is changed only there.
 */
export class PendingUpload {
  readonly id: string;
  storeId: string;
  key: string;
  readonly staged: StagedFile;
  /** Part size this upload is cut with (the record's after a restart). */
  readonly partSize: number;
  /** `stream`: full parts are uploaded while the file is written. `whole`: everything after release. */
  mode: 'stream' | 'whole' = 'stream';
  state: UploadState = 'writing';
  recordState: RecordState = 'writing';
  /** A journal record exists on disk for this upload. */
  hasRecord = false;
  /** Released by its handle (or recovered from the journal): the staged bytes are final. */
  released = false;
  /** Changed since open or since the last fsync commit; a clean release uploads nothing. */
  dirty = true;
  /** Unlinked: nothing more goes to the store; the staged bytes go once the handle is released. */
  cancelled = false;
  /** Record and staged file are deleted (after commit or cancel). */
  gone = false;
  /** Found in the journal at start: the store's ListParts decides which parts to reuse. */
  recovered = false;
  /** Staging bytes accounted to this upload. */
  reserved = 0;
  mtimeMs: number;
  /** Attributes the object is committed with (mode, owner, an explicit mtime). */
  meta: ObjectMeta | undefined;
  /** The store call that creates the object succeeded (the commit is finishing): attributes changed now go to the object. */
  landed = false;
  /** Attributes changed after the multipart upload was created (which fixed them): applied by a copy after the commit. */
  metaAfterCommit = false;
  /** Open order within this process; the newest open version of a key is the one reads and listings see. */
  readonly openSeq: number;
  /** Release order; versions of one key are committed in this order. */
  order: readonly [number, number] = [0, 0];

  multipart: MultipartUpload | undefined;
  /** When the CreateMultipartUpload whose answer is not journaled yet was first sent (see UploadRecord). */
  creatingSinceMs: number | undefined;
  creating: Promise<MultipartUpload | undefined> | undefined;
  readonly parts = new Map<number, UploadedPart>();
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

  /** Failed store calls so far (0 while all goes well). */
  attempts = 0;
  lastError: string | undefined;

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
    this.key = fields.key;
    this.staged = fields.staged;
    this.partSize = fields.partSize;
    this.mtimeMs = fields.mtimeMs;
    this.openSeq = fields.openSeq;
    let resolve!: () => void;
    this.finished = new Promise<void>((r) => (resolve = r));
    this.#resolveFinished = resolve;
    let stored!: () => void;
    this.inStore = new Promise<void>((r) => (stored = r));
    this.#resolveInStore = stored;
  }

  /** The content changed: an explicit modification time no longer holds. */
  touched(nowMs: number): void {
    this.dirty = true;
    this.mtimeMs = nowMs;
    if (this.meta?.mtime !== undefined) {
      const { mtime: _dropped, ...rest } = this.meta;
      this.meta = rest;
    }
  }

  /** The store has committed this version: resolves `inStore`. */
  markInStore(): void {
    this.#resolveInStore();
  }

  /** Committed or cancelled: resolves `finished` (and `inStore`). */
  settle(state: 'done' | 'cancelled'): void {
    this.state = state;
    this.#resolveInStore();
    this.#resolveFinished();
  }

  get settled(): boolean {
    return this.state === 'done' || this.state === 'cancelled';
  }

  get uploadedBytes(): number {
    if (this.state === 'done') return this.staged.size;
    let sum = 0;
    for (const part of this.parts.values()) sum += part.size;
    return sum;
  }

  record(): UploadRecord {
    return {
      version: 1,
      id: this.id,
      storeId: this.storeId,
      key: this.key,
      stagedFile: this.staged.path,
      size: this.staged.size,
      partSizeBytes: this.partSize,
      uploadId: this.multipart?.uploadId,
      parts: [...this.parts.values()].sort((a, b) => a.partNumber - b.partNumber),
      state: this.recordState,
      order: this.order,
      mtimeMs: this.mtimeMs,
      ...(this.meta ? { meta: this.meta } : {}),
      ...(this.creatingSinceMs !== undefined && !this.multipart ? { creatingSinceMs: this.creatingSinceMs } : {}),
    };
  }
}
