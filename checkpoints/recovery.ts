import { createHash } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isStrataError } from '../errors/index.js';
import type { ObjectStore } from '../store/index.js';
import { partsOf } from './part-layout.js';
import { PendingUpload } from './pending-upload.js';
import { StagedFile } from './staged-file.js';
import type { UploadRecord } from './upload-record.js';
import type { WritePathContext } from './write-path-context.js';
import { makeFolders } from '../durable/index.js';

/**
 * How long after the journaled start of a CreateMultipartUpload the store may have created it:
 * the S3 client makes up to 4 attempts of at most 60 s each (store/s3-store.ts), so 5 minutes.
 */
const ORPHAN_WINDOW_MS = 5 * 60_000;
/** Store clocks (S3's Initiated, to the second) may run this far from ours. */
const STORE_CLOCK_SKEW_MS = 60_000;

/**
 * The write path's start after a crash or a clean stop: journaled uploads resumed (reusing the
 * parts the store still holds), files whose handle never closed dropped with their multipart
 * uploads, multipart uploads a crash left unnamed aborted, stray staged files deleted.
 */
export class Recovery {
  readonly #ctx: WritePathContext;

  constructor(ctx: WritePathContext) {
    this.#ctx = ctx;
  }

  /** See WritePath.recover. */
  async run(): Promise<void> {
    const ctx = this.#ctx;
    await makeFolders(ctx.stagedDir);
    const journal = await ctx.records.open();
    // Folder renames a crash interrupted are finished first, and uploads journaled under their
    // old folder move with them (tree-rename.ts has the argument).
    await ctx.trees.recover();
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
        if (record.uploadId) ctx.parts.abortInStore(record.storeId, { key: record.key, uploadId: record.uploadId }, () => journal.remove(record.id));
        else if (!unresolved.has(record.id)) await journal.remove(record.id); // else kept: the next start looks again
        continue;
      }
      keep.add(record.stagedFile);
      await this.#resume(record);
    }
    for (const name of await readdir(ctx.stagedDir)) {
      const path = join(ctx.stagedDir, name);
      if (!keep.has(path)) await rm(path, { force: true });
    }
    await ctx.pins.load();
    ctx.config.logger.info({ resumed: ctx.versions.count(), stagedBytes: ctx.space.usedBytes }, 'write path recovered');
  }

  /**
   * After a restart: is the object already there (answers its ETag), and which parts does the
   * store still hold? Parts whose size does not match their range are uploaded again.
   */
  async reconcile(upload: PendingUpload, store: ObjectStore): Promise<string | undefined> {
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
      upload.multipartLost();
      this.#ctx.parts.drop(upload);
      return undefined;
    }
    const ranges = new Map(partsOf(upload.partSize, size).map((r) => [r.partNumber, r]));
    upload.parts.clear();
    for (const part of listed) {
      const range = ranges.get(part.partNumber);
      if (!range || part.size !== range.end - range.start) continue;
      // Streamed while the kernel wrote the file (passthrough): kept only if it holds the file's bytes.
      if (upload.partsUnverified && !(await this.#sameBytes(upload, range, part.etag))) continue;
      upload.parts.set(part.partNumber, part);
    }
    upload.partsUnverified = false;
    this.#ctx.config.logger.info({ key: upload.key, reused: upload.parts.size, of: ranges.size }, 'resuming multipart upload');
    return undefined;
  }

  /**
   * Whether a part the store holds has the staged file's bytes in `range`: its ETag is the MD5
   * of its bytes (S3 and RGW without SSE-KMS); any other ETag counts as different.
   */
  async #sameBytes(upload: PendingUpload, range: { start: number; end: number }, etag: string): Promise<boolean> {
    const md5 = etag.replace(/"/g, '').toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(md5)) return false;
    return this.#ctx.slots.run(range.end - range.start, async (buffer) => createHash('md5').update(await upload.staged.readInto(buffer, range.start)).digest('hex') === md5);
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
      const store = this.#ctx.stores(record.storeId);
      for (const { upload, initiated } of await store.listMultipart(record.key)) {
        const at = initiated.getTime();
        if (journaled.has(upload.uploadId) || at < since - STORE_CLOCK_SKEW_MS || at > since + ORPHAN_WINDOW_MS + STORE_CLOCK_SKEW_MS) continue;
        if ((await store.listParts(upload)).length > 0) continue;
        await store.abortMultipart(upload);
        this.#ctx.config.logger.info({ key: record.key, uploadId: upload.uploadId }, 'aborted a multipart upload created just before a crash');
      }
      return true;
    } catch (err) {
      this.#ctx.config.logger.warn(
        { err, key: record.key },
        record.state === 'writing'
          ? 'could not look for a multipart upload left by a crash; its record stays for the next start'
          : 'could not look for a multipart upload left by a crash; one may stay in the store (a lifecycle rule for incomplete uploads removes it)',
      );
      return false;
    }
  }

  async #resume(record: UploadRecord): Promise<void> {
    const ctx = this.#ctx;
    let staged: StagedFile;
    try {
      staged = await StagedFile.reopen(record.stagedFile);
    } catch (err) {
      ctx.config.logger.error({ err, key: record.key, stagedFile: record.stagedFile }, 'staged file of a journaled upload is missing; it cannot be finished');
      return;
    }
    if (staged.size !== record.size) {
      ctx.config.logger.error({ key: record.key, size: staged.size, expected: record.size }, 'staged file has the wrong size; uploading what is there');
    }
    const upload = PendingUpload.resumed(record, staged, ctx.versions.nextOpenSeq());
    const key = ctx.trees.moved(record.storeId, record.key);
    if (key !== record.key) {
      // Its folder was renamed before the crash: it commits under the new name, from the start.
      upload.movedBeforeCrash(key);
      ctx.parts.drop(upload);
      await ctx.records.persist(upload);
    }
    upload.reserved = staged.size;
    ctx.space.claim(staged.size);
    ctx.versions.add(upload);
    ctx.commits.start(upload);
  }
}
