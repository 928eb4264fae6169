import { keyOfPath } from '../namespace/index.js';
import { open, type FileHandle } from 'node:fs/promises';
import type { BlockFiles, ObjectReader } from '../cache/index.js';
import type { WriteHandle, WritePath } from '../checkpoints/index.js';
import { isStrataError } from '../errors/index.js';
import { S_IFREG, type ObjectMeta } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import type { FileStat, FsAttributes } from './fs-attributes.js';
import { FsError } from './fs-error.js';
import type { FsPaths, LinkRoute } from './fs-paths.js';
import type { NextFiles } from './next-files.js';
import type { OpenFiles, WriterFile } from './open-files.js';

/**
 * Open handles and their I/O: open and create, read (cache, staged bytes, or the stored
 * object once committed), write and truncate through the write path, flush, fsync and
 * release, and what the adapters may serve without the daemon (backing files, tier files).
 * A handle reads or writes, never both (see `OpenFile`).
 */

const O_ACCMODE = 0o3;
const O_RDONLY = 0o0;
const O_TRUNC = 0o1000;

export class FileIo {
  readonly #paths: FsPaths;
  readonly #files: OpenFiles;
  readonly #reader: ObjectReader;
  readonly #logger: Logger;
  readonly #attrs: FsAttributes;
  readonly #next: NextFiles;

  constructor(paths: FsPaths, files: OpenFiles, reader: ObjectReader, logger: Logger, attrs: FsAttributes, next: NextFiles) {
    this.#paths = paths;
    this.#files = files;
    this.#reader = reader;
    this.#logger = logger;
    this.#attrs = attrs;
    this.#next = next;
  }

  /** The write path: only called once `FsPaths.writable` or a writer handle proved there is one. */
  get #writes(): WritePath {
    return this.#paths.writes!;
  }

  /** See Filesystem.open. */
  async open(path: string, flags: number, announceRead: boolean): Promise<number> {
    const route = this.#paths.route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) return this.#openWriter(path, route, (flags & O_TRUNC) !== 0);
    const staged = this.#paths.staged(route);
    if (staged) return this.#files.add({ kind: 'staged', path, route, storeId: route.link.storeId!, key: keyOfPath(route.innerPath) });
    const entry = await route.link.namespace.lookup(route.innerPath);
    if (entry.kind !== 'file') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    const handle = this.#files.add({ kind: 'read', path, route, session: this.#reader.openSession(entry.ref) });
    if (announceRead) this.announceRead(handle);
    return handle;
  }

  /** See Filesystem.announceRead. */
  announceRead(handle: number): void {
    const file = this.#files.get(handle);
    if (file?.kind !== 'read') return;
    this.#reader.readAhead?.(file.session.ref);
    this.#next.opened(file.route.link.namespace, file.route.innerPath);
  }

  /** See Filesystem.create. */
  async create(path: string, mode?: number): Promise<number> {
    const route = this.#paths.route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    return this.#openWriter(path, route, true, mode === undefined ? undefined : { mode: S_IFREG | (mode & 0o7777) });
  }

  /** See Filesystem.write. */
  async write(handle: number, offset: number, data: Buffer): Promise<number> {
    const file = await this.#liveWriter(handle);
    if (offset < 0) throw new FsError('FS_INVALID_ARGUMENT', `negative offset for ${file.path}`);
    this.#files.dirty.add(handle);
    return this.#writes.write(file.writer, offset, data);
  }

  /** See Filesystem.truncate. */
  async truncate(path: string, size: number, handle?: number): Promise<void> {
    if (size < 0) throw new FsError('FS_INVALID_ARGUMENT', `negative size for ${path}`);
    const open = handle !== undefined ? await this.#liveWriter(handle) : this.#files.writerAt(path);
    if (open) {
      for (const [h, f] of this.#files.entries()) if (f === open) this.#files.dirty.add(h);
      return this.#writes.truncate(open.writer, size);
    }
    const route = this.#paths.route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    const temporary = await this.#openWriter(path, route, size === 0);
    try {
      await this.#writes.truncate(this.#files.writerOf(temporary).writer, size);
    } finally {
      await this.release(temporary);
    }
  }

  /** See Filesystem.fsync. */
  async fsync(handle: number): Promise<void> {
    const file = this.#files.require(handle);
    if (file.kind === 'write') await this.#writes.fsync(file.writer);
    if (file.kind === 'flushed' && file.route.link.storeId) await this.#writes.flush({ storeId: file.route.link.storeId, key: keyOfPath(file.route.innerPath) });
  }

  /** See Filesystem.read. */
  async read(handle: number, offset: number, length: number): Promise<Buffer> {
    const file = this.#files.require(handle);
    if (offset < 0 || length < 0) throw new FsError('FS_INVALID_ARGUMENT', `negative offset or length for ${file.path}`);
    // The kernel sends reads only for descriptors opened for reading: a writer here is O_RDWR.
    if (file.kind === 'write') return this.#writes.read(file.writer, offset, length);
    if (file.kind === 'staged' || file.kind === 'flushed') {
      const storeId = file.route.link.storeId!;
      const key = keyOfPath(file.route.innerPath);
      const bytes = await this.#paths.writes?.readPending(storeId, key, offset, length);
      if (bytes) return bytes;
      // Committed meanwhile: read the stored object.
      file.route.link.namespace.invalidate(file.route.innerPath);
      const entry = await file.route.link.namespace.lookup(file.route.innerPath);
      if (entry.kind !== 'file') throw new FsError('FS_STALE', `${file.path} changed; reopen it`);
      const session = this.#reader.openSession(entry.ref);
      try {
        return await this.#reader.read(session, offset, length);
      } finally {
        this.#reader.closeSession(session);
      }
    }
    try {
      return await this.#reader.read(file.session, offset, length);
    } catch (err) {
      if (isStrataError(err, 'STORE_PRECONDITION_FAILED', 'STORE_NOT_FOUND')) {
        file.route.link.namespace.invalidate(file.route.innerPath);
        this.#logger.warn({ path: file.path }, 'object changed in the store while open; answering ESTALE');
        throw new FsError('FS_STALE', `${file.path} changed in the store; reopen it`, { cause: err });
      }
      throw err;
    }
  }

  /** See Filesystem.flushes: `flush` below returns at once for any other handle. */
  flushes(handle: number): boolean {
    return this.#files.get(handle)?.kind === 'write';
  }

  /** See Filesystem.flush. */
  async flush(handle: number): Promise<void> {
    const file = this.#files.get(handle);
    if (file?.kind === 'write' && this.#writes.sharedWithKernel(file.writer)) {
      // The kernel writes the file itself (passthrough): its bytes are made durable here,
      // and the handle stays a writer until RELEASE, since another descriptor may still write.
      try {
        await this.#writes.flushDurable(file.writer);
      } finally {
        file.route.link.namespace.invalidate(file.route.innerPath);
      }
      return;
    }
    if (file?.kind !== 'write' || !this.#files.dirty.has(handle)) return;
    this.#files.dirty.delete(handle);
    this.#files.set(handle, { kind: 'flushed', path: file.path, route: file.route });
    try {
      await this.#writes.release(file.writer);
    } finally {
      file.route.link.namespace.invalidate(file.route.innerPath);
    }
  }

  /** See Filesystem.release. */
  async release(handle: number): Promise<void> {
    const file = this.#files.remove(handle);
    if (!file) return;
    if (file.kind === 'read') this.#reader.closeSession(file.session);
    if (file.kind === 'write') {
      try {
        await this.#writes.release(file.writer);
      } finally {
        file.route.link.namespace.invalidate(file.route.innerPath);
      }
    }
  }

  /** See Filesystem.backingFile. */
  async backingFile(handle: number): Promise<FileHandle | undefined> {
    const file = this.#files.get(handle);
    if (file?.kind === 'staged') {
      const path = this.#paths.writes?.closedStagedFile(file.storeId, file.key);
      // Committed and deleted meanwhile: the handle reads the stored object through the daemon.
      return path === undefined ? undefined : open(path, 'r').catch(() => undefined);
    }
    // A writer: the kernel writes the staged file itself, when the write path lets it.
    if (file?.kind === 'write') return this.#writes.shareWithKernel(file.writer);
    if (file?.kind === 'read') {
      const { store } = file.route.link;
      const local = await store?.openVersion?.(file.session.ref.key, file.session.ref.etag);
      if (local) return local;
      // The NVMe tier's whole file of this version; evicted meanwhile: the block path serves it.
      const whole = this.#reader.wholeFile?.(file.session);
      return whole === undefined ? undefined : open(whole, 'r').catch(() => undefined);
    }
    return undefined;
  }

  /** See Filesystem.blockFiles. */
  blockFiles(handle: number): BlockFiles | undefined {
    const file = this.#files.get(handle);
    return file?.kind === 'read' ? this.#reader.locate?.(file.session) : undefined;
  }

  /** See Filesystem.getattrOpen. */
  getattrOpen(handle: number): FileStat | undefined {
    const file = this.#files.get(handle);
    if (!file) return undefined;
    const size = file.kind === 'write' ? (this.#writes.sizeOf(file.writer) ?? 0) : file.kind === 'read' ? file.session.ref.size : 0;
    return this.#attrs.statOf(this.#attrs.fileMode, size, new Date(), 0);
  }

  async #openWriter(path: string, route: LinkRoute, truncate: boolean, meta?: ObjectMeta): Promise<number> {
    const writer = await this.#newWriter(path, route, truncate, meta);
    return this.#files.add({ kind: 'write', path, route, writer });
  }

  /**
   * A new version of `path` on the write path: empty (`truncate`), else holding the current
   * bytes (the write path finds them itself, in order with uploads of the key).
   */
  async #newWriter(path: string, route: LinkRoute, truncate: boolean, createMeta?: ObjectMeta): Promise<WriteHandle> {
    const { storeId } = this.#paths.writable(path);
    const key = keyOfPath(route.innerPath);
    let meta = createMeta;
    if (!createMeta && !this.#paths.staged(route)) {
      const entry = await route.link.namespace.lookup(route.innerPath).catch((err: unknown) => {
        if (isStrataError(err, 'FS_NOT_FOUND')) return undefined;
        throw err;
      });
      if (entry?.kind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
      // A rewrite keeps the file's attributes (its mode, owner), as a local file system does.
      if (entry?.kind === 'file' && entry.meta) meta = entry.meta;
    }
    const closeMode = route.link.closeMode;
    const writer = await this.#writes.open({ storeId, key }, { truncate, ...(closeMode ? { closeMode } : {}), ...(meta ? { meta } : {}) });
    route.link.namespace.invalidate(route.innerPath);
    return writer;
  }

  /**
   * The writer of `handle`; a handle finalised by a FLUSH is reopened first (once, however
   * many writes arrive meanwhile), as a new version of the same path with the bytes so far.
   */
  async #liveWriter(handle: number): Promise<WriterFile> {
    const file = this.#files.get(handle);
    if (file?.kind === 'flushed') {
      file.reopening ??= this.#newWriter(file.path, file.route, false).then(async (writer) => {
        if (this.#files.get(handle) === file) this.#files.set(handle, { kind: 'write', path: file.path, route: file.route, writer });
        else await this.#writes.release(writer); // released meanwhile: the new version is clean and uploads nothing
      });
      await file.reopening;
    }
    return this.#files.writerOf(handle);
  }
}
