import { randomBytes } from 'node:crypto';
import type { BigIntStats, Dirent } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { chmod, chown, copyFile, lchown, lstat, lutimes, mkdir, open, readdir, readFile, readlink, rename, rm, rmdir, stat, symlink, unlink, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { StoreError } from './errors.js';
import type { CopyOptions, GetRangeOptions, GetRangeResult, ListOptions, ListPage, MultipartUpload, ObjectInfo, ObjectStore, PendingMultipart, PutOptions, UploadedPart } from './object-store.js';
import { S_IFLNK, S_IFMT, isSymlinkMeta, type ObjectMeta } from './object-meta.js';

/** Folder of multipart uploads in progress, at the top of the store directory; never listed. */
const MULTIPART_DIR = '.strata-multipart';
/** Names of temporary files of writes in progress; renamed into place when complete, never listed. */
const TEMP_PREFIX = '.strata-tmp-';
/** S3's page limit, and ours by default. */
const MAX_KEYS = 1000;
/** ETag of a folder marker: a directory has no bytes whose change it could track. */
const FOLDER_ETAG = 'folder';
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

/** A name read from a directory, with the key it sorts by (folders end in `/`, as their keys do). */
interface Candidate {
  readonly key: string;
  readonly sortKey: Buffer;
  readonly folder: boolean;
}

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
 */
export class LocalStore implements ObjectStore {
  readonly url: string;
  readonly #root: string;
  #swept: Promise<void> | undefined;

  /** @param dir absolute path of the store directory (it is not created). */
  constructor(dir: string) {
    this.#root = dir;
    this.url = `file://${dir}`;
  }

  async check(): Promise<void> {
    let info;
    try {
      info = await stat(this.#root);
    } catch (err) {
      if (isMissing(err)) throw new StoreError('STORE_BUCKET_NOT_FOUND', `store directory ${this.#root} does not exist`, { cause: err });
      throw ioError(err, this.#root);
    }
    if (!info.isDirectory()) throw new StoreError('STORE_BUCKET_NOT_FOUND', `store path ${this.#root} is not a directory`);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.#readPath(key);
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
    const candidates = options.delimiter === '/' ? await this.#levelCandidates(prefix, after, maxKeys + 1) : await this.#treeCandidates(prefix, after, maxKeys + 1);
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
    const path = this.#readPath(key);
    if (path === undefined || key.endsWith('/')) return undefined;
    const handle = await open(path, 'r').catch(() => undefined);
    if (!handle) return undefined;
    const info = await handle.stat({ bigint: true }).catch(() => undefined);
    if (info?.isFile() && etagOf(info) === etag) return handle;
    await handle.close();
    return undefined;
  }

  async getRange(key: string, start: number, length: number, options: GetRangeOptions = {}): Promise<GetRangeResult> {
    const path = this.#readPath(key);
    if (path === undefined) throw this.#notFound(key);
    if (key.endsWith('/')) return this.#markerRange(key, start, options);
    let handle: FileHandle;
    try {
      handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') throw this.#notFound(key);
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') return this.#linkRange(key, path, start, length, options);
      throw ioError(err, key);
    }
    try {
      const before = await handle.stat({ bigint: true });
      if (!before.isFile()) throw this.#notFound(key);
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
    const path = this.#writePath(key);
    if (key.endsWith('/')) {
      await mkdir(path, { recursive: true }).catch((err: unknown) => {
        throw ioError(err, key);
      });
      return { etag: FOLDER_ETAG };
    }
    if (isSymlinkMeta(options.meta)) {
      const target = Buffer.isBuffer(body) ? body : await readAll(body as AsyncIterable<Buffer | string>);
      return this.#linkAtomically(path, key, target.toString('utf8'), options.meta!);
    }
    return this.#writeAtomically(path, key, async (handle, temp) => {
      if (Buffer.isBuffer(body)) await handle.writeFile(body);
      // One chunk at a time: the stream's own buffering is the only memory used.
      else for await (const chunk of body as AsyncIterable<Buffer | string>) await handle.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
      await applyMeta(temp, options.meta);
    });
  }

  async delete(key: string): Promise<void> {
    const path = this.#readPath(key);
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
    const from = this.#readPath(fromKey);
    const source = from === undefined ? undefined : await this.head(fromKey);
    if (from === undefined || !source) throw this.#notFound(fromKey);
    if (fromKey.endsWith('/')) return this.put(toKey, Buffer.alloc(0));
    const meta = options.meta ?? source.meta;
    if (isSymlinkMeta(source.meta) || isSymlinkMeta(meta)) {
      const target = (await this.getRange(fromKey, 0, source.size)).body;
      return this.#linkAtomically(this.#writePath(toKey), toKey, target.toString('utf8'), { ...meta, mode: S_IFLNK | 0o777 });
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
    return this.#writeAtomically(this.#writePath(toKey), toKey, async (_handle, temp) => {
      await copyFile(from, temp);
      await applyMeta(temp, { ...meta, mtime: options.meta?.mtime });
    });
  }

  async createMultipart(key: string, options: { readonly meta?: ObjectMeta } = {}): Promise<MultipartUpload> {
    this.#writePath(key); // refuse a key that cannot be completed, now rather than at the end
    const uploadId = randomBytes(UPLOAD_ID_BYTES).toString('hex');
    const dir = join(this.#root, MULTIPART_DIR, uploadId);
    try {
      await mkdir(dir, { recursive: true });
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
    const temp = join(dir, `${TEMP_PREFIX}${partNumber}-${randomBytes(4).toString('hex')}`);
    const path = join(dir, `part-${partNumber}`);
    try {
      const handle = await open(temp, 'wx');
      try {
        await handle.writeFile(body);
        await handle.sync(); // an acknowledged part survives a crash, as in S3
      } finally {
        await handle.close();
      }
      await rename(temp, path);
      return { partNumber, etag: etagOf(await stat(path, { bigint: true })), size: body.length };
    } catch (err) {
      await rm(temp, { force: true });
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

  async completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
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
    const result = await this.#writeAtomically(this.#writePath(upload.key), upload.key, async (handle, temp) => {
      const chunk = Buffer.allocUnsafe(JOIN_CHUNK);
      for (const part of ordered) await appendFileTo(handle, join(dir, `part-${part.partNumber}`), chunk);
      await applyMeta(temp, meta);
    });
    await this.#removeUpload(upload.uploadId);
    return result;
  }

  async abortMultipart(upload: MultipartUpload): Promise<void> {
    if (!UPLOAD_ID.test(upload.uploadId)) return; // never created here, so already gone
    await this.#removeUpload(upload.uploadId).catch((err: unknown) => {
      throw ioError(err, upload.key);
    });
  }

  /** Renames the upload's folder out of the way (atomic), then deletes it; see REMOVING_PREFIX. */
  async #removeUpload(uploadId: string): Promise<void> {
    await this.#sweepRemovals();
    const root = join(this.#root, MULTIPART_DIR);
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
      const root = join(this.#root, MULTIPART_DIR);
      const names = await readdir(root).catch(() => [] as string[]);
      for (const name of names) if (name.startsWith(REMOVING_PREFIX)) await rm(join(root, name), { recursive: true, force: true });
    })();
    return this.#swept;
  }

  async listMultipart(key: string): Promise<PendingMultipart[]> {
    await this.#sweepRemovals();
    const root = join(this.#root, MULTIPART_DIR);
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

  async close(): Promise<void> {}

  /** The folder of a live upload for this key, or STORE_NOT_FOUND (as S3's NoSuchUpload). */
  async #uploadDir(upload: MultipartUpload): Promise<string> {
    await this.#sweepRemovals();
    const gone = new StoreError('STORE_NOT_FOUND', `no multipart upload ${upload.uploadId} for ${upload.key} in ${this.url}`);
    if (!UPLOAD_ID.test(upload.uploadId)) throw gone;
    const dir = join(this.#root, MULTIPART_DIR, upload.uploadId);
    const key = await readFile(join(dir, 'key'), 'utf8').catch(() => undefined);
    if (key !== upload.key) throw gone;
    return dir;
  }

  /** Bytes of a symbolic link's object: its target. */
  async #linkRange(key: string, path: string, start: number, length: number, options: GetRangeOptions): Promise<GetRangeResult> {
    let info: BigIntStats;
    let target: Buffer;
    try {
      info = await lstat(path, { bigint: true });
      target = Buffer.from(await readlink(path), 'utf8');
    } catch (err) {
      if (isMissing(err)) throw this.#notFound(key);
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
      await mkdir(folder, { recursive: true });
      await symlink(target, temp);
      if (meta.uid !== undefined || meta.gid !== undefined) await lchown(temp, meta.uid ?? -1, meta.gid ?? -1);
      if (meta.mtime !== undefined) await lutimes(temp, meta.mtime, meta.mtime);
      await rename(temp, path);
      await syncFolder(folder);
      return { etag: etagOf(await lstat(path, { bigint: true })) };
    } catch (err) {
      await rm(temp, { force: true });
      throw ioError(err, key);
    }
  }

  /** Writes a temporary file through `fill`, fsyncs it, renames it over `path`, fsyncs the folder. */
  async #writeAtomically(path: string, key: string, fill: (handle: FileHandle, temp: string) => Promise<void>): Promise<{ etag: string }> {
    const folder = dirname(path);
    const temp = join(folder, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(folder, { recursive: true });
      const handle = await open(temp, 'wx');
      try {
        await fill(handle, temp);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
      await syncFolder(folder);
      return { etag: etagOf(await stat(path, { bigint: true })) };
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      if (err instanceof StoreError) throw err;
      throw ioError(err, key);
    }
  }

  /** A folder marker read as an object: no bytes. */
  async #markerRange(key: string, start: number, options: GetRangeOptions): Promise<GetRangeResult> {
    const info = await this.head(key);
    if (!info) throw this.#notFound(key);
    if (options.ifMatch !== undefined && options.ifMatch !== info.etag) throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url}`);
    if (start > 0) throw new StoreError('STORE_INVALID_RANGE', `range start ${start} is past the end of ${key} (0 bytes)`);
    return { body: Buffer.alloc(0), etag: info.etag, size: 0 };
  }

  /**
   * One folder level as S3 groups it with delimiter `/`: the folder's own marker, files as
   * objects, subfolders as prefixes, sorted, the first `limit` after `after`.
   */
  async #levelCandidates(prefix: string, after: Buffer | undefined, limit: number): Promise<Candidate[]> {
    const cut = prefix.lastIndexOf('/') + 1;
    const base = prefix.slice(0, cut);
    const namePrefix = prefix.slice(cut);
    const found = await this.#folderEntries(base, namePrefix);
    if (found === undefined) return [];
    if (base !== '' && namePrefix === '') found.push(candidate(base, false));
    return sortCandidates(found)
      .filter((c) => after === undefined || Buffer.compare(c.sortKey, after) > 0)
      .slice(0, limit);
  }

  /**
   * Files under `prefix` at any depth, in key order, the first `limit` after `after`. The
   * walk visits folders in key order and skips those whose keys all sort before `after`,
   * so a page costs one readdir per level on its path, not a walk of the whole tree.
   */
  async #treeCandidates(prefix: string, after: Buffer | undefined, limit: number): Promise<Candidate[]> {
    const cut = prefix.lastIndexOf('/') + 1;
    const out: Candidate[] = [];
    const walk = async (base: string, namePrefix: string): Promise<void> => {
      const entries = await this.#folderEntries(base, namePrefix);
      if (entries === undefined) return;
      for (const entry of sortCandidates(entries)) {
        if (out.length >= limit) return;
        if (entry.folder) {
          // Every key below starts with the folder's key: all of them sort before `after`
          // when the folder's key does and is not a prefix of `after`.
          const before = after !== undefined && Buffer.compare(entry.sortKey, after) < 0 && !startsWith(after, entry.sortKey);
          if (!before) await walk(entry.key, '');
        } else if (after === undefined || Buffer.compare(entry.sortKey, after) > 0) {
          out.push(entry);
        }
      }
    };
    await walk(prefix.slice(0, cut), prefix.slice(cut));
    return out;
  }

  /** The visible entries of the folder `base` whose names start with `namePrefix`; undefined when there is no such folder. */
  async #folderEntries(base: string, namePrefix: string): Promise<Candidate[] | undefined> {
    const path = base === '' ? this.#root : this.#readPath(base);
    if (path === undefined) return undefined;
    let dirents: Dirent[];
    try {
      dirents = await readdir(path, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw ioError(err, base);
    }
    const out: Candidate[] = [];
    for (const dirent of dirents) {
      const name = dirent.name;
      if (!name.startsWith(namePrefix) || isReservedName(name, base === '')) continue;
      let folder = dirent.isDirectory();
      if (dirent.isSymbolicLink()) {
        // A link to a folder is that folder; any other link (dangling ones too) is a link object.
        const target = await stat(join(path, name)).catch(() => undefined);
        folder = target?.isDirectory() ?? false;
      } else if (!folder && !dirent.isFile()) {
        continue; // sockets, fifos, devices are not objects
      }
      out.push(candidate(folder ? `${base}${name}/` : `${base}${name}`, folder));
    }
    return out;
  }

  /** The path of a key, or undefined when no object can have that key here. */
  #readPath(key: string): string | undefined {
    return keyProblem(key) === undefined ? join(this.#root, key) : undefined;
  }

  /** The path of a key to write, or STORE_ACCESS_DENIED naming what is wrong with it. */
  #writePath(key: string): string {
    const problem = keyProblem(key);
    if (problem !== undefined) throw new StoreError('STORE_ACCESS_DENIED', `key "${key}" cannot be stored in ${this.url}: ${problem}`);
    return join(this.#root, key);
  }

  #notFound(key: string): StoreError {
    return new StoreError('STORE_NOT_FOUND', `no object ${key} in ${this.url}`);
  }
}

/** Why a key cannot name a path under the store directory, or undefined when it can. */
function keyProblem(key: string): string | undefined {
  if (key === '') return 'it is empty';
  if (key.includes('\0')) return 'it contains NUL';
  if (key.startsWith('/')) return 'it starts with /';
  const segments = (key.endsWith('/') ? key.slice(0, -1) : key).split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return 'it has an empty, . or .. segment';
  if (segments.some((s, i) => isReservedName(s, i === 0))) return `names starting with ${TEMP_PREFIX} and the top-level ${MULTIPART_DIR} are the store's own`;
  return undefined;
}

function isReservedName(name: string, topLevel: boolean): boolean {
  return name.startsWith(TEMP_PREFIX) || (topLevel && name === MULTIPART_DIR);
}

function candidate(key: string, folder: boolean): Candidate {
  return { key, folder, sortKey: Buffer.from(key) };
}

/** UTF-8 byte order, as S3 lists keys. */
function sortCandidates(list: Candidate[]): Candidate[] {
  return list.sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
}

function startsWith(whole: Buffer, start: Buffer): boolean {
  return whole.length >= start.length && whole.subarray(0, start.length).equals(start);
}

function objectInfo(key: string, info: BigIntStats): ObjectInfo {
  const meta: ObjectMeta = { mode: Number(info.mode), uid: Number(info.uid), gid: Number(info.gid) };
  return { key, size: Number(info.size), etag: etagOf(info), lastModified: mtimeOf(info), meta };
}

/** Sets a file's mode bits, owner and modification time from `meta` (what it leaves out stays). */
async function applyMeta(path: string, meta: ObjectMeta | undefined): Promise<void> {
  if (!meta) return;
  if (meta.mode !== undefined && (meta.mode & S_IFMT) !== S_IFLNK) await chmod(path, meta.mode & 0o7777);
  if (meta.uid !== undefined || meta.gid !== undefined) await chown(path, meta.uid ?? -1, meta.gid ?? -1);
  if (meta.mtime !== undefined) await utimes(path, meta.mtime, meta.mtime);
}

async function readAll(body: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

function etagOf(info: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${info.ino.toString(16)}-${info.size.toString(16)}-${info.mtimeNs.toString(16)}`;
}

function mtimeOf(info: BigIntStats): Date {
  return new Date(Number(info.mtimeNs / 1_000_000n));
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

/** fsync of a folder makes a rename in it durable. */
async function syncFolder(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function ioError(err: unknown, key: string): StoreError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return new StoreError('STORE_ACCESS_DENIED', `permission denied for ${key}: ${(err as Error).message}`, { cause: err });
  return new StoreError('STORE_IO', `local store I/O error on ${key}: ${(err as Error).message}`, { cause: err });
}
