import { rm } from 'node:fs/promises';
import type { PendingUpload } from './pending-upload.js';
import { UploadJournal } from './upload-journal.js';
import type { WritePathContext } from './write-path-context.js';
import { WritePathError } from './write-path-error.js';

/**
 * The on-disk side of pending uploads: journal records written when an upload needs one, and
 * record, staged file and staging space given up together once the upload is over.
 */
export class UploadRecords {
  readonly #ctx: WritePathContext;
  readonly #dir: string;
  #journal: UploadJournal | undefined;

  constructor(ctx: WritePathContext, dir: string) {
    this.#ctx = ctx;
    this.#dir = dir;
  }

  /** Opens the journal (at recovery, before anything else). */
  async open(): Promise<UploadJournal> {
    this.#journal = await UploadJournal.open(this.#dir, this.#ctx.config.logger);
    return this.#journal;
  }

  /** The journal; throws until `open()` ran (`WritePath.recover()`). */
  journal(): UploadJournal {
    if (!this.#journal) throw new WritePathError('CHECKPOINT_HANDLE_CLOSED', 'WritePath.recover() must run before the write path is used');
    return this.#journal;
  }

  /** Writes the upload's record if it needs one (released or made durable, or holding a multipart upload to abort after a crash). */
  async persist(upload: PendingUpload, force = false): Promise<void> {
    if (upload.gone || this.#ctx.closing) return;
    if (!force && !upload.hasRecord) return;
    if (!upload.released && upload.recordState !== 'closed' && !upload.multipart && !upload.hasRecord && upload.creatingSinceMs === undefined) return;
    upload.hasRecord = true;
    await this.journal().write(upload.record());
  }

  /** Deletes the record (first) and the staged file, and returns the staging space. */
  async discard(upload: PendingUpload): Promise<void> {
    if (!upload.markGone()) return;
    if (upload.hasRecord) await this.journal().remove(upload.id);
    upload.hasRecord = false;
    await upload.staged.close();
    await rm(upload.staged.path, { force: true });
    this.#ctx.space.free(upload.reserved);
    upload.reserved = 0;
    this.#ctx.versions.delete(upload);
  }

  /** Resolves once journal writes in flight are done (at close). */
  async idle(): Promise<void> {
    await this.#journal?.idle();
  }
}
