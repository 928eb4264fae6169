import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { makeFolders, writeDurably } from '../durable/index.js';
import { StoreError } from './errors.js';
import { applyMeta, etagOf, ioError, MULTIPART_DIR, TEMP_PREFIX, writeAtomically, type LocalLayout } from './local-layout.js';
import type { MultipartUpload, PendingMultipart, UploadedPart } from './object-store.js';
import type { ObjectMeta } from './object-meta.js';

/** 12 random bytes: upload ids nobody guesses or reuses by accident. */
const UPLOAD_ID_BYTES = 12;
const UPLOAD_ID = /^[0-9a-f]{24}$/;
/**
 * An upload folder is renamed to this prefix before it is deleted (complete, abort): a crash
 * in the middle of the deletion then leaves a folder no call takes for an upload, instead of
 * half an upload, and the first multipart call of the next LocalStore removes it.
 */
const REMOVING_PREFIX = 'removing-';
/** S3 numbers parts 1 to 10,000; the local store keeps the same limits. */
const MAX_PART_NUMBER = 10_000;
/** Chunk of the copy loop that joins parts: big enough for few syscalls, small enough to stay out of the memory budget. */
const JOIN_CHUNK = 1024 * 1024;
/** Attributes of a multipart upload, applied to the object at completion. */
const META_FILE = 'meta.json';

/**
 * Multipart uploads of a local store: one folder per upload under MULTIPART_DIR holding its
 * key, its attributes and one file per part; completion joins the parts into the object with
 * the durable write protocol, and the folder is removed (renamed away first, see REMOVING_PREFIX).
 */
export class LocalMultipart {
  readonly #layout: LocalLayout;
  #swept: Promise<void> | undefined;

  constructor(layout: LocalLayout) {
    this.#layout = layout;
  }

  async create(key: string, options: { readonly meta?: ObjectMeta } = {}): Promise<MultipartUpload> {
    this.#layout.writePath(key); // refuse a key that cannot be completed, now rather than at the end
    const uploadId = randomBytes(UPLOAD_ID_BYTES).toString('hex');
    const dir = join(this.#layout.root, MULTIPART_DIR, uploadId);
    try {
      await makeFolders(dir);
      if (options.meta) await writeFile(join(dir, META_FILE), JSON.stringify(options.meta));
      await writeFile(join(dir, 'key'), key);
    } catch (err) {
      throw ioError(err, key);
    }
    return { key, uploadId };
  }

  async uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
      throw new StoreError('STORE_IO', `part number ${partNumber} of ${upload.key} is not between 1 and ${MAX_PART_NUMBER}`);
    }
    const dir = await this.#uploadDir(upload);
    const path = join(dir, `part-${partNumber}`);
    try {
      // An acknowledged part survives a crash, as in S3: its bytes are fsync'd before the rename.
      await writeDurably(path, (handle) => handle.writeFile(body), { tempName: `${TEMP_PREFIX}${partNumber}-${randomBytes(4).toString('hex')}`, syncFolder: false });
      return { partNumber, etag: etagOf(await stat(path, { bigint: true })), size: body.length };
    } catch (err) {
      throw ioError(err, upload.key);
    }
  }

  async listParts(upload: MultipartUpload): Promise<UploadedPart[]> {
    const dir = await this.#uploadDir(upload);
    try {
      const parts: UploadedPart[] = [];
      for (const name of await readdir(dir)) {
        const match = /^part-(\d+)$/.exec(name);
        if (!match) continue;
        const info = await stat(join(dir, name), { bigint: true });
        parts.push({ partNumber: Number(match[1]), etag: etagOf(info), size: Number(info.size) });
      }
      return parts.sort((a, b) => a.partNumber - b.partNumber);
    } catch (err) {
      throw ioError(err, upload.key);
    }
  }

  async complete(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
    const dir = await this.#uploadDir(upload);
    if (parts.length === 0) throw new StoreError('STORE_IO', `multipart upload of ${upload.key} cannot complete without parts`);
    const ordered = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    // Check every part before writing anything, as S3 does (InvalidPart).
    for (const part of ordered) {
      const info = await stat(join(dir, `part-${part.partNumber}`), { bigint: true }).catch(() => undefined);
      if (!info) throw new StoreError('STORE_IO', `part ${part.partNumber} of the upload of ${upload.key} was never uploaded`);
      if (etagOf(info) !== part.etag) throw new StoreError('STORE_PRECONDITION_FAILED', `part ${part.partNumber} of the upload of ${upload.key} is not the one listed (ETag ${etagOf(info)}, expected ${part.etag})`);
    }
    const meta = await readFile(join(dir, META_FILE), 'utf8').then((text) => JSON.parse(text) as ObjectMeta, () => undefined);
    const result = await writeAtomically(this.#layout.writePath(upload.key), upload.key, async (handle, temp) => {
      const chunk = Buffer.allocUnsafe(JOIN_CHUNK);
      for (const part of ordered) await appendFileTo(handle, join(dir, `part-${part.partNumber}`), chunk);
      await applyMeta(temp, meta);
    });
    await this.#removeUpload(upload.uploadId);
    return result;
  }

  async abort(upload: MultipartUpload): Promise<void> {
    if (!UPLOAD_ID.test(upload.uploadId)) return; // never created here, so already gone
    await this.#removeUpload(upload.uploadId).catch((err: unknown) => {
      throw ioError(err, upload.key);
    });
  }

  /** Renames the upload's folder out of the way (atomic), then deletes it; see REMOVING_PREFIX. */
  async #removeUpload(uploadId: string): Promise<void> {
    await this.#sweepRemovals();
    const root = join(this.#layout.root, MULTIPART_DIR);
    const doomed = join(root, `${REMOVING_PREFIX}${uploadId}`);
    try {
      await rename(join(root, uploadId), doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  /** Deletes the upload folders a crash left half-removed; once per LocalStore, on its first multipart call. */
  #sweepRemovals(): Promise<void> {
    this.#swept ??= (async () => {
      const root = join(this.#layout.root, MULTIPART_DIR);
      const names = await readdir(root).catch(() => [] as string[]);
      for (const name of names) if (name.startsWith(REMOVING_PREFIX)) await rm(join(root, name), { recursive: true, force: true });
    })();
    return this.#swept;
  }

  async list(key: string): Promise<PendingMultipart[]> {
    await this.#sweepRemovals();
    const root = join(this.#layout.root, MULTIPART_DIR);
    const found: PendingMultipart[] = [];
    try {
      const ids = await readdir(root).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [];
        throw err;
      });
      for (const uploadId of ids) {
        if (!UPLOAD_ID.test(uploadId)) continue;
        const keyFile = join(root, uploadId, 'key');
        const [owner, info] = await Promise.all([readFile(keyFile, 'utf8').catch(() => undefined), stat(keyFile).catch(() => undefined)]);
        // The key file is written once, at creation: its mtime is when the upload began.
        if (owner === key && info) found.push({ upload: { key, uploadId }, initiated: info.mtime });
      }
    } catch (err) {
      throw ioError(err, key);
    }
    return found.sort((a, b) => a.initiated.getTime() - b.initiated.getTime());
  }

  /** The folder of a live upload for this key, or STORE_NOT_FOUND (as S3's NoSuchUpload). */
  async #uploadDir(upload: MultipartUpload): Promise<string> {
    await this.#sweepRemovals();
    const gone = new StoreError('STORE_NOT_FOUND', `no multipart upload ${upload.uploadId} for ${upload.key} in ${this.#layout.url}`);
    if (!UPLOAD_ID.test(upload.uploadId)) throw gone;
    const dir = join(this.#layout.root, MULTIPART_DIR, upload.uploadId);
    const key = await readFile(join(dir, 'key'), 'utf8').catch(() => undefined);
    if (key !== upload.key) throw gone;
    return dir;
  }
}

/** Appends the whole file at `path` to `out`, through `chunk`. */
async function appendFileTo(out: FileHandle, path: string, chunk: Buffer): Promise<void> {
  const source = await open(path, 'r');
  try {
    for (;;) {
      const { bytesRead } = await source.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) return;
      await out.write(chunk, 0, bytesRead);
    }
  } finally {
    await source.close();
  }
}
