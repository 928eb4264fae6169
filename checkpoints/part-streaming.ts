import type { MultipartUpload } from '../store/index.js';
import { retry } from '../async/index.js';
import { crc32c } from '../params/index.js';
import { partRange, partsOf } from './part-layout.js';
import type { PendingUpload } from './pending-upload.js';
import type { WritePathContext } from './write-path-context.js';

/**
 * Multipart uploads of staged files: full parts stream to the store while a file is written
 * sequentially, every missing part goes once it is released, the multipart upload is created
 * (and journaled) on first use and dropped (aborted in the store) when the file stops being
 * sequential, is renamed or unlinked.
 */
export class PartStreaming {
  readonly #ctx: WritePathContext;
  /** Store aborts of dropped multipart uploads still retrying. */
  readonly #aborts = new Set<Promise<void>>();

  constructor(ctx: WritePathContext) {
    this.#ctx = ctx;
  }

  /**
   * Starts uploads of parts that are ready: full parts while streaming; once released
   * (`final`), every part of the file not in the store or in flight yet.
   */
  dispatch(upload: PendingUpload, final: boolean): void {
    if (upload.cancelled || this.#ctx.closing) return;
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
    while (upload.inflight.size < this.#ctx.config.streamingPartsPerFile) {
      const range = partRange(upload.partSize, upload.nextPart);
      if (range.end > size) break;
      upload.nextPart++;
      if (!upload.parts.has(range.partNumber) && !upload.inflight.has(range.partNumber)) this.#startPart(upload, range.partNumber, range.start, range.end);
    }
  }

  /**
   * Once the file is final (released, or fsync'd with its writer's calls settled): every part
   * streamed so far, while another writer could still change the file, is compared with the
   * file's bytes in its range (CRC-32C of what was sent) once it has landed; a part that
   * differs, or whose check is unknown, is forgotten, so the next `dispatch(upload, true)`
   * uploads it again. Runs beside the upload of the other parts (read from the final file, they
   * need no check). Answers how many parts were forgotten.
   */
  async verify(upload: PendingUpload): Promise<number> {
    const generation = upload.generation;
    const streamed = new Set([...upload.parts.keys(), ...upload.inflight.keys()]);
    await Promise.allSettled([...upload.inflight].filter(([n]) => streamed.has(n)).map(([, run]) => run));
    let stale = 0;
    for (const partNumber of streamed) {
      const part = upload.parts.get(partNumber);
      if (!part || upload.generation !== generation) continue; // failed (dispatch sends it again, from the final file) or dropped
      const range = partRange(upload.partSize, partNumber);
      const check = upload.partChecks.get(partNumber);
      const same =
        check !== undefined &&
        (await this.#ctx.slots.run(range.end - range.start, async (buffer) => {
          const bytes = await upload.staged.readInto(buffer, range.start);
          return bytes.length === part.size && crc32c(bytes) === check;
        }));
      if (!same) {
        upload.parts.delete(partNumber);
        upload.partChecks.delete(partNumber);
        stale++;
      }
    }
    upload.partChecks.clear();
    // An fsync's commit of a file still open: parts of its next version are read while the kernel writes again.
    upload.partsUnverified = upload.external && !upload.released;
    return stale;
  }

  /** The file is no longer written sequentially: it is uploaded whole after release. */
  fallBack(upload: PendingUpload, why: string): void {
    upload.fellBack();
    this.#ctx.config.logger.debug({ key: upload.key, why }, 'write not sequential: the file is uploaded whole after release');
    this.drop(upload);
  }

  /** Forgets the multipart upload (aborting it in the store) so parts start over from part 1. */
  drop(upload: PendingUpload): void {
    const old = upload.multipart;
    upload.generation++;
    upload.generationAbort.abort();
    upload.generationAbort = new AbortController();
    upload.multipart = undefined;
    upload.creating = undefined;
    upload.parts.clear();
    upload.partChecks.clear();
    upload.inflight.clear();
    upload.nextPart = 1;
    if (old) this.abortInStore(upload.storeId, old);
  }

  /** Aborts a multipart upload in the store, retrying in the background until it works or the path closes. */
  abortInStore(storeId: string, multipart: MultipartUpload, then?: () => Promise<void>): void {
    const run = retry(
      async () => {
        await this.#ctx.stores(storeId).abortMultipart(multipart);
        await then?.();
      },
      {
        ...this.#ctx.retryOptions(),
        onRetry: (err, attempt) => this.#ctx.config.logger.warn({ err, key: multipart.key, attempt }, 'could not abort a multipart upload; retrying'),
      },
    ).then(() => undefined);
    this.#aborts.add(run);
    void run.finally(() => this.#aborts.delete(run));
  }

  /** Resolves once the store aborts still retrying have stopped (at close). */
  async abortsSettled(): Promise<void> {
    await Promise.all([...this.#aborts]);
  }

  #startPart(upload: PendingUpload, partNumber: number, start: number, end: number): void {
    const generation = upload.generation;
    const signal = upload.generationAbort.signal;
    const run = retry(
      async () => {
        if (upload.generation !== generation) return;
        const multipart = await this.#ensureMultipart(upload, generation);
        if (!multipart) return;
        let check: number | undefined;
        const part = await this.#ctx.slots.run(end - start, async (buffer) => {
          const body = await upload.staged.readInto(buffer, start);
          // Read while the kernel may still write the file: remember what was sent, checked against the final file.
          if (upload.partsUnverified) check = crc32c(body);
          return this.#ctx.stores(upload.storeId).uploadPart(multipart, partNumber, body);
        });
        if (upload.generation !== generation) return;
        if (check !== undefined) upload.partChecks.set(partNumber, check);
        // Not journaled per part: after a crash the store's ListParts is the authority, and
        // two fsyncs per part would compete with the writes being staged.
        upload.parts.set(partNumber, part);
        this.#ctx.space.progress();
        upload.partLanded();
      },
      // The signal aborts exactly when the generation changes (drop), so a failure of an
      // older generation is not counted.
      { ...this.#ctx.retryOptions(signal), onRetry: (err) => this.#ctx.commits.noteFailure(upload, err, `part ${partNumber}`) },
    )
      .then(() => undefined)
      .finally(() => {
        if (upload.inflight.get(partNumber) === run && upload.generation === generation) upload.inflight.delete(partNumber);
        this.dispatch(upload, false); // streaming: a part slot of this file is free
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
      upload.creatingSinceMs ??= this.#ctx.config.now();
      await this.#ctx.records.persist(upload, true);
      const created = await this.#ctx.stores(upload.storeId).createMultipart(key, upload.meta ? { meta: upload.meta } : {});
      upload.metaAfterCommit = false;
      if (upload.generation !== generation || upload.key !== key) {
        this.abortInStore(upload.storeId, created);
        return undefined;
      }
      upload.multipart = created;
      upload.creatingSinceMs = undefined;
      await this.#ctx.records.persist(upload, true);
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
}
