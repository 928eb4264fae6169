import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StoreError } from './errors.js';
import type { GetRangeOptions, GetRangeResult, ListOptions, ListPage, MultipartUpload, ObjectInfo, ObjectStore, UploadedPart } from './object-store.js';

/** Folder of multipart uploads in progress, inside the store directory; never listed. */
const MULTIPART_DIR = '.strata-multipart';
/** Temporary files of writes in progress; renamed into place when complete, never listed. */
const TEMP_PREFIX = '.strata-tmp-';
/** S3's page limit, and ours by default. */
const MAX_KEYS = 1000;

/**
 * An object store over a local directory (`file:///dir`): keys are paths under it, folders
 * are directories. Writes go to a temporary file in the target folder and are renamed into
 * place once fsync'd, so a reader sees the old or the new object, never a partial one.
 * The ETag is derived from the file's inode, size and modification time, so it changes
 * whenever the file does.
 */
export class LocalStore implements ObjectStore {
  readonly url: string;
  readonly #root: string;

  constructor(dir: string) {
    this.#root = dir;
    this.url = `file://${dir}`;
  }

  async check(): Promise<void> {
    let info;
    try {
      info = await stat(this.#root);
    } catch {
      throw new StoreError('STORE_BUCKET_NOT_FOUND', `store directory ${this.#root} does not exist`);
    }
    if (!info.isDirectory()) throw new StoreError('STORE_BUCKET_NOT_FOUND', `store path ${this.#root} is not a directory`);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.#path(key);
    try {
      const info = await stat(path, { bigint: true });
      if (key.endsWith('/')) return info.isDirectory() ? { key, size: 0, etag: 'folder', lastModified: new Date(Number(info.mtimeMs)) } : undefined;
      if (!info.isFile()) return undefined;
      return { key, size: Number(info.size), etag: etagOf(info), lastModified: new Date(Number(info.mtimeMs)) };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw ioError(err, key);
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const maxKeys = Math.min(options.maxKeys ?? MAX_KEYS, MAX_KEYS);
    const entries = options.delimiter === '/' ? await this.#listLevel(prefix) : await this.#listAll(prefix);
    entries.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    const after = options.token;
    const start = after === undefined ? 0 : entries.findIndex((e) => Buffer.compare(Buffer.from(e.key), Buffer.from(after)) > 0);
    const page = start < 0 ? [] : entries.slice(start, start + maxKeys);
    const more = start >= 0 && start + maxKeys < entries.length;
    return {
      objects: page.filter((e) => e.info).map((e) => e.info!),
      prefixes: page.filter((e) => !e.info).map((e) => e.key),
      ...(more ? { nextToken: page[page.length - 1]!.key } : {}),
    };
  }

  async getRange(key: string, start: number, length: number, options: GetRangeOptions = {}): Promise<GetRangeResult> {
    let handle: FileHandle;
    try {
      handle = await open(this.#path(key), 'r');
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') throw new StoreError('STORE_NOT_FOUND', `no object ${key} in ${this.url}`);
      throw ioError(err, key);
    }
    try {
      const before = await handle.stat({ bigint: true });
      if (!before.isFile()) throw new StoreError('STORE_NOT_FOUND', `no object ${key} in ${this.url}`);
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
      // A file rewritten in place while we read would mix versions: check it did not change.
      const after = etagOf(await handle.stat({ bigint: true }));
      if (after !== etag || done !== body.length) {
        throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url} while it was read`);
      }
      return { body, etag, size };
    } finally {
      await handle.close();
    }
  }

  async put(key: string, body: Buffer | Readable): Promise<{ etag: string }> {
    const path = this.#path(key);
    if (key.endsWith('/')) {
      await mkdir(path, { recursive: true }).catch((err: unknown) => {
        throw ioError(err, key);
      });
      return { etag: 'folder' };
    }
    await this.#writeAtomically(path, key, async (temp) => {
      if (Buffer.isBuffer(body)) await writeFile(temp, body);
      else await pipeline(body, createWriteStream(temp));
    });
    return { etag: (await this.head(key))!.etag };
  }

  async delete(key: string): Promise<void> {
    const path = this.#path(key);
    try {
      if (key.endsWith('/')) await rmdir(path);
      else await unlink(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (isMissing(err) || code === 'ENOTEMPTY' || code === 'EISDIR' || code === 'ENOTDIR') return;
      throw ioError(err, key);
    }
  }

  async copy(fromKey: string, toKey: string): Promise<{ etag: string }> {
    const from = this.#path(fromKey);
    if (!(await this.head(fromKey))) throw new StoreError('STORE_NOT_FOUND', `no object ${fromKey} in ${this.url}`);
    await this.#writeAtomically(this.#path(toKey), toKey, (temp) => copyFile(from, temp));
    return { etag: (await this.head(toKey))!.etag };
  }

  async createMultipart(key: string): Promise<MultipartUpload> {
    this.#path(key); // validates the key
    const uploadId = randomBytes(12).toString('hex');
    const dir = join(this.#root, MULTIPART_DIR, uploadId);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'key'), key);
    return { key, uploadId };
  }

  async uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    const dir = await this.#uploadDir(upload);
    const temp = join(dir, `${TEMP_PREFIX}${partNumber}-${randomBytes(4).toString('hex')}`);
    await writeFile(temp, body);
    await rename(temp, join(dir, `part-${partNumber}`));
    return { partNumber, etag: `part-${partNumber}-${body.length}`, size: body.length };
  }

  async listParts(upload: MultipartUpload): Promise<UploadedPart[]> {
    const dir = await this.#uploadDir(upload);
    const parts: UploadedPart[] = [];
    for (const name of await readdir(dir)) {
      const match = /^part-(\d+)$/.exec(name);
      if (!match) continue;
      const size = (await stat(join(dir, name))).size;
      parts.push({ partNumber: Number(match[1]), etag: `part-${match[1]}-${size}`, size });
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  async completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
    const dir = await this.#uploadDir(upload);
    await this.#writeAtomically(this.#path(upload.key), upload.key, async (temp) => {
      const out = await open(temp, 'w');
      try {
        for (const part of [...parts].sort((a, b) => a.partNumber - b.partNumber)) {
          const bytes = await readFile(join(dir, `part-${part.partNumber}`)).catch(() => {
            throw new StoreError('STORE_IO', `part ${part.partNumber} of upload ${upload.uploadId} is missing`);
          });
          await out.write(bytes);
        }
      } finally {
        await out.close();
      }
    });
    await rm(dir, { recursive: true, force: true });
    return { etag: (await this.head(upload.key))!.etag };
  }

  async abortMultipart(upload: MultipartUpload): Promise<void> {
    await rm(join(this.#root, MULTIPART_DIR, safeUploadId(upload.uploadId)), { recursive: true, force: true });
  }

  async close(): Promise<void> {}

  async #uploadDir(upload: MultipartUpload): Promise<string> {
    const dir = join(this.#root, MULTIPART_DIR, safeUploadId(upload.uploadId));
    try {
      await stat(dir);
    } catch {
      throw new StoreError('STORE_NOT_FOUND', `no multipart upload ${upload.uploadId} for ${upload.key}`);
    }
    return dir;
  }

  /** Writes through `fill(temp)`, fsyncs, and renames over `path`. */
  async #writeAtomically(path: string, key: string, fill: (temp: string) => Promise<void>): Promise<void> {
    const temp = join(dirname(path), `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(dirname(path), { recursive: true });
      await fill(temp);
      const handle = await open(temp, 'r+');
      await handle.sync().finally(() => handle.close());
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true });
      if (err instanceof StoreError) throw err;
      throw ioError(err, key);
    }
  }

  /** One folder level: files become objects, folders prefixes, as S3 does with delimiter `/`. */
  async #listLevel(prefix: string): Promise<Array<{ key: string; info?: ObjectInfo }>> {
    const cut = prefix.lastIndexOf('/') + 1;
    const dirPart = prefix.slice(0, cut);
    const namePrefix = prefix.slice(cut);
    const dir = this.#path(dirPart || '.');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw ioError(err, prefix);
    }
    const out: Array<{ key: string; info?: ObjectInfo }> = [];
    // A folder is its own marker object (`dir/`), as a folder marker is in S3.
    if (dirPart !== '' && namePrefix === '') {
      const marker = await this.head(dirPart);
      if (marker) out.push({ key: dirPart, info: marker });
    }
    for (const name of names) {
      if (!name.startsWith(namePrefix) || isInternal(name, dirPart)) continue;
      const key = `${dirPart}${name}`;
      const info = await stat(join(dir, name)).catch(() => undefined);
      if (!info) continue;
      if (info.isDirectory()) out.push({ key: `${key}/` });
      else if (info.isFile()) {
        const meta = await this.head(key);
        if (meta) out.push({ key, info: meta });
      }
    }
    return out;
  }

  /** Every file under `prefix`, recursively. */
  async #listAll(prefix: string): Promise<Array<{ key: string; info: ObjectInfo }>> {
    const out: Array<{ key: string; info: ObjectInfo }> = [];
    const walk = async (dirPart: string): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(this.#path(dirPart || '.'));
      } catch (err) {
        if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
        throw ioError(err, dirPart);
      }
      for (const name of names) {
        if (isInternal(name, dirPart)) continue;
        const key = `${dirPart}${name}`;
        const info = await stat(join(this.#root, key)).catch(() => undefined);
        if (info?.isDirectory()) {
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) await walk(`${key}/`);
        } else if (info?.isFile() && key.startsWith(prefix)) {
          const meta = await this.head(key);
          if (meta) out.push({ key, info: meta });
        }
      }
    };
    await walk('');
    return out;
  }

  /** The file path of a key; keys that would escape the store directory are refused. */
  #path(key: string): string {
    if (key.startsWith('/') || key.includes('\0') || key.split('/').some((p) => p === '..')) {
      throw new StoreError('STORE_NOT_FOUND', `invalid key "${key}" for ${this.url}`);
    }
    return key === '.' ? this.#root : join(this.#root, key);
  }
}

function etagOf(info: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${info.ino.toString(16)}-${info.size.toString(16)}-${info.mtimeNs.toString(16)}`;
}

function isInternal(name: string, dirPart: string): boolean {
  return name.startsWith(TEMP_PREFIX) || (dirPart === '' && name === MULTIPART_DIR);
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function safeUploadId(id: string): string {
  if (!/^[0-9a-f]{24}$/.test(id)) throw new StoreError('STORE_NOT_FOUND', `no multipart upload ${id}`);
  return id;
}

function ioError(err: unknown, key: string): StoreError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return new StoreError('STORE_ACCESS_DENIED', `permission denied for ${key}`, { cause: err });
  return new StoreError('STORE_IO', `local store I/O error on ${key}: ${(err as Error).message}`, { cause: err });
}
