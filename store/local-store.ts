import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { copyFile, lchown, lstat, lutimes, open, readlink, rm, rmdir, stat, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { makeFolders, renameDurably } from '../durable/index.js';
import { StoreError } from './errors.js';
import { applyMeta, etagOf, FOLDER_ETAG, ioError, isMissing, LocalLayout, mtimeOf, objectInfo, TEMP_PREFIX, writeAtomically } from './local-layout.js';
import { levelCandidates, treeCandidates } from './local-listing.js';
import { LocalMultipart } from './local-multipart.js';
import type { CopyOptions, GetRangeOptions, GetRangeResult, ListOptions, ListPage, MultipartUpload, ObjectInfo, ObjectStore, PendingMultipart, PutOptions, UploadedPart } from './object-store.js';
import { S_IFLNK, isSymlinkMeta, type ObjectMeta } from './object-meta.js';

/** S3's page limit, and ours by default. */
const MAX_KEYS = 1000;

/**
 * An object store over a local directory (`file:///dir`), the embedded default backend.
 *
 * - Keys are paths under the directory and folders are directories. Keys that cannot be
 *   paths (empty, `.` or `..` segments, `//`, a leading `/`, NUL, the store's own hidden
 *   names) do not exist: reads find nothing and writes fail with STORE_ACCESS_DENIED.
 * - Every directory is also its own folder marker: `head('dir/')` finds it (size 0) and a
 *   delimiter listing of `dir/` reports the object `dir/` first, as S3 does for a marker
 *   object. `put('dir/')` creates the directory. Recursive listings report files only.
 * - Writes go to a temporary file in the target folder, are fsync'd, renamed into place and
 *   the folder fsync'd, so a reader sees the old or the new object, never a partial one,
 *   and a written object survives a crash.
 * - The ETag is derived from the file's inode, size and modification time (ns), so it
 *   changes whenever the file does; `getRange` checks it before and after reading.
 * - Listings are in UTF-8 byte order, like S3; the token is the last key of the previous page.
 * - Object attributes (object-meta.ts) are the file's own: its mode, owner and modification
 *   time, reported by `head` and by listings (they cost nothing extra here). A symbolic link
 *   to a folder is that folder; any other symbolic link (a dangling one too) is an object
 *   whose bytes are its target, with an `S_IFLNK` mode.
 *
 * This class is the facade over local-layout.ts (keys to paths, file facts, object writes),
 * local-listing.ts and local-multipart.ts.
 */
export class LocalStore implements ObjectStore {
  readonly url: string;
  readonly #layout: LocalLayout;
  readonly #multipart: LocalMultipart;

  /** @param dir absolute path of the store directory (it is not created). */
  constructor(dir: string) {
    this.#layout = new LocalLayout(dir);
    this.#multipart = new LocalMultipart(this.#layout);
    this.url = this.#layout.url;
  }

  async check(): Promise<void> {
    let info;
    try {
      info = await stat(this.#layout.root);
    } catch (err) {
      if (isMissing(err)) throw new StoreError('STORE_BUCKET_NOT_FOUND', `store directory ${this.#layout.root} does not exist`, { cause: err });
      throw ioError(err, this.#layout.root);
    }
    if (!info.isDirectory()) throw new StoreError('STORE_BUCKET_NOT_FOUND', `store path ${this.#layout.root} is not a directory`);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.#layout.readPath(key);
    if (path === undefined) return undefined;
    let info: BigIntStats;
    try {
      info = await lstat(path, { bigint: true });
      if (info.isSymbolicLink()) {
        // A link to a folder is that folder (listed as one); any other link is a link object.
        const target = await stat(path, { bigint: true }).catch(() => undefined);
        if (key.endsWith('/') || target?.isDirectory()) info = target ?? info;
      }
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw ioError(err, key);
    }
    if (key.endsWith('/')) return info.isDirectory() ? { key, size: 0, etag: FOLDER_ETAG, lastModified: mtimeOf(info) } : undefined;
    return info.isFile() || info.isSymbolicLink() ? objectInfo(key, info) : undefined;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const maxKeys = Math.max(1, Math.min(options.maxKeys ?? MAX_KEYS, MAX_KEYS));
    if (options.delimiter !== undefined && options.delimiter !== '/') {
      throw new StoreError('STORE_IO', `${this.url} lists with the delimiter "/" or none, not "${options.delimiter}"`);
    }
    const after = options.token === undefined ? undefined : Buffer.from(options.token);
    // One candidate past the page tells whether there is a next page.
    const candidates = options.delimiter === '/' ? await levelCandidates(this.#layout, prefix, after, maxKeys + 1) : await treeCandidates(this.#layout, prefix, after, maxKeys + 1);
    const page = candidates.slice(0, maxKeys);
    const infos = await Promise.all(page.map((c) => (c.folder ? undefined : this.head(c.key))));
    const objects: ObjectInfo[] = [];
    const prefixes: string[] = [];
    page.forEach((c, i) => {
      if (c.folder) prefixes.push(c.key);
      else if (infos[i]) objects.push(infos[i]); // a file deleted since readdir is left out
    });
    return { objects, prefixes, ...(candidates.length > maxKeys ? { nextToken: page[page.length - 1]!.key } : {}) };
  }

  async openVersion(key: string, etag: string): Promise<FileHandle | undefined> {
    const path = this.#layout.readPath(key);
    if (path === undefined || key.endsWith('/')) return undefined;
    const handle = await open(path, 'r').catch(() => undefined);
    if (!handle) return undefined;
    const info = await handle.stat({ bigint: true }).catch(() => undefined);
    if (info?.isFile() && etagOf(info) === etag) return handle;
    await handle.close();
    return undefined;
  }

  async getRange(key: string, start: number, length: number, options: GetRangeOptions = {}): Promise<GetRangeResult> {
    const path = this.#layout.readPath(key);
    if (path === undefined) throw this.#layout.notFound(key);
    if (key.endsWith('/')) return this.#markerRange(key, start, options);
    let handle: FileHandle;
    try {
      handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') throw this.#layout.notFound(key);
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') return this.#linkRange(key, path, start, length, options);
      throw ioError(err, key);
    }
    try {
      const before = await handle.stat({ bigint: true });
      if (!before.isFile()) throw this.#layout.notFound(key);
      const etag = etagOf(before);
      const size = Number(before.size);
      if (options.ifMatch !== undefined && options.ifMatch !== etag) {
        throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url} (ETag ${etag}, expected ${options.ifMatch})`);
      }
      if (start > size) throw new StoreError('STORE_INVALID_RANGE', `range start ${start} is past the end of ${key} (${size} bytes)`);
      const body = Buffer.allocUnsafe(Math.max(0, Math.min(length, size - start)));
      let done = 0;
      while (done < body.length) {
        const { bytesRead } = await handle.read(body, done, body.length - done, start + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      // Writers replace files by rename, but a file rewritten in place while it was read
      // would mix versions: make sure it did not change.
      const after = etagOf(await handle.stat({ bigint: true }));
      if (after !== etag || done !== body.length) throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url} while it was read`);
      return { body, etag, size };
    } catch (err) {
      if (err instanceof StoreError) throw err;
      throw ioError(err, key);
    } finally {
      await handle.close();
    }
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<{ etag: string }> {
    const path = this.#layout.writePath(key);
    if (key.endsWith('/')) {
      await makeFolders(path).catch((err: unknown) => {
        throw ioError(err, key);
      });
      return { etag: FOLDER_ETAG };
    }
    if (isSymlinkMeta(options.meta)) {
      const target = Buffer.isBuffer(body) ? body : await readAll(body as AsyncIterable<Buffer | string>);
      return this.#linkAtomically(path, key, target.toString('utf8'), options.meta!);
    }
    return writeAtomically(path, key, async (handle, temp) => {
      if (Buffer.isBuffer(body)) await handle.writeFile(body);
      // One chunk at a time: the stream's own buffering is the only memory used.
      else for await (const chunk of body as AsyncIterable<Buffer | string>) await handle.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
      await applyMeta(temp, options.meta);
    });
  }

  async delete(key: string): Promise<void> {
    const path = this.#layout.readPath(key);
    if (path === undefined) return;
    try {
      if (key.endsWith('/')) await rmdir(path);
      else await unlink(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A folder that still holds keys exists through them, as in S3; a folder is not a file.
      if (isMissing(err) || code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EISDIR') return;
      throw ioError(err, key);
    }
  }

  async copy(fromKey: string, toKey: string, options: CopyOptions = {}): Promise<{ etag: string }> {
    const from = this.#layout.readPath(fromKey);
    const source = from === undefined ? undefined : await this.head(fromKey);
    if (from === undefined || !source) throw this.#layout.notFound(fromKey);
    if (fromKey.endsWith('/')) return this.put(toKey, Buffer.alloc(0));
    const meta = options.meta ?? source.meta;
    if (isSymlinkMeta(source.meta) || isSymlinkMeta(meta)) {
      const target = (await this.getRange(fromKey, 0, source.size)).body;
      return this.#linkAtomically(this.#layout.writePath(toKey), toKey, target.toString('utf8'), { ...meta, mode: S_IFLNK | 0o777 });
    }
    if (fromKey === toKey) {
      // Attributes only: applied in place (the ETag follows the file's ctime-free identity, so
      // only a changed mtime changes it, as a metadata-only copy changes it in S3).
      await applyMeta(from, options.meta).catch((err: unknown) => {
        throw ioError(err, toKey);
      });
      return { etag: etagOf(await stat(from, { bigint: true })) };
    }
    // copyFile opens the temporary file again with O_TRUNC: same inode, so the handle's fsync covers it.
    return writeAtomically(this.#layout.writePath(toKey), toKey, async (_handle, temp) => {
      await copyFile(from, temp);
      await applyMeta(temp, { ...meta, mtime: options.meta?.mtime });
    });
  }

  async close(): Promise<void> {}

  /** Bytes of a symbolic link's object: its target. */
  async #linkRange(key: string, path: string, start: number, length: number, options: GetRangeOptions): Promise<GetRangeResult> {
    let info: BigIntStats;
    let target: Buffer;
    try {
      info = await lstat(path, { bigint: true });
      target = Buffer.from(await readlink(path), 'utf8');
    } catch (err) {
      if (isMissing(err)) throw this.#layout.notFound(key);
      throw ioError(err, key);
    }
    const etag = etagOf(info);
    if (options.ifMatch !== undefined && options.ifMatch !== etag) throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url}`);
    if (start > target.length) throw new StoreError('STORE_INVALID_RANGE', `range start ${start} is past the end of ${key} (${target.length} bytes)`);
    return { body: target.subarray(start, start + length), etag, size: target.length };
  }

  /** Makes `path` a symbolic link to `target` atomically (a temporary link renamed over it). */
  async #linkAtomically(path: string, key: string, target: string, meta: ObjectMeta): Promise<{ etag: string }> {
    const folder = dirname(path);
    const temp = join(folder, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await makeFolders(folder);
      await symlink(target, temp);
      if (meta.uid !== undefined || meta.gid !== undefined) await lchown(temp, meta.uid ?? -1, meta.gid ?? -1);
      if (meta.mtime !== undefined) await lutimes(temp, meta.mtime, meta.mtime);
      await renameDurably(temp, path);
      return { etag: etagOf(await lstat(path, { bigint: true })) };
    } catch (err) {
      await rm(temp, { force: true });
      throw ioError(err, key);
    }
  }

  /** A folder marker read as an object: no bytes. */
  async #markerRange(key: string, start: number, options: GetRangeOptions): Promise<GetRangeResult> {
    const info = await this.head(key);
    if (!info) throw this.#layout.notFound(key);
    if (options.ifMatch !== undefined && options.ifMatch !== info.etag) throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url}`);
    if (start > 0) throw new StoreError('STORE_INVALID_RANGE', `range start ${start} is past the end of ${key} (0 bytes)`);
    return { body: Buffer.alloc(0), etag: info.etag, size: 0 };
  }

  createMultipart(key: string, options: { readonly meta?: ObjectMeta } = {}): Promise<MultipartUpload> {
    return this.#multipart.create(key, options);
  }

  uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    return this.#multipart.uploadPart(upload, partNumber, body);
  }

  listParts(upload: MultipartUpload): Promise<UploadedPart[]> {
    return this.#multipart.listParts(upload);
  }

  completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
    return this.#multipart.complete(upload, parts);
  }

  abortMultipart(upload: MultipartUpload): Promise<void> {
    return this.#multipart.abort(upload);
  }

  listMultipart(key: string): Promise<PendingMultipart[]> {
    return this.#multipart.list(key);
  }
}

async function readAll(body: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}
