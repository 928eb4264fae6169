import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { NamespaceEntry } from '../cache/namespace.js';
import type { ObjectReader, ReadSession } from '../cache/object-reader.js';
import type { WriteHandle, WritePath } from '../checkpoints/index.js';
import { isStrataError } from '../errors/index.js';
import type { Logger } from '../telemetry/index.js';
import { FsError } from './fs-error.js';
import type { MountRoutes, Route } from './mount-routes.js';

/** What `stat` shows for a path; the FUSE adapter passes it through unchanged. */
export interface FileStat {
  readonly mode: number;
  readonly size: number;
  readonly mtime: Date;
  readonly atime: Date;
  readonly ctime: Date;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly blocks: number;
  readonly blksize: number;
}

export interface FsStatistics {
  readonly bsize: number;
  readonly frsize: number;
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
  readonly favail: number;
  readonly namemax: number;
}

export interface FilesystemConfig {
  /** Which link serves which path; `setRoutes` replaces it when links change. */
  readonly routes: MountRoutes;
  readonly reader: ObjectReader;
  readonly logger: Logger;
  /** The write path; without it the mount is read-only (EROFS). */
  readonly writes?: WritePath | undefined;
  /** Owner shown for every file: the daemon's user unless configured. */
  readonly uid?: number;
  readonly gid?: number;
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const FILE_MODE = S_IFREG | 0o644;
const DIR_MODE = S_IFDIR | 0o755;
/** `st_blocks` counts 512-byte units whatever the block size. */
const STAT_BLOCK_UNIT = 512;
/** Preferred I/O size reported to programs such as `cp` and `dd`: FUSE's 128 KiB request size (FACTS.md). */
const PREFERRED_IO_SIZE = 128 * 1024;
const O_ACCMODE = 0o3;
const O_RDONLY = 0o0;
const O_TRUNC = 0o1000;
/** statfs figures: an object store has no fixed size, so report plenty of room (fits FUSE's 32-bit fields). */
const STATFS_BLOCKS = 0x7fff_ffff;
/** NAME_MAX of Linux; S3 allows longer keys but no Linux program can open a longer name. */
const NAME_MAX = 255;

type LinkRoute = Extract<Route, { kind: 'link' }>;

/** An open handle: it reads (from the cache, or a file still staged) or it writes, never both. */
type OpenFile =
  | { readonly kind: 'read'; readonly path: string; readonly route: LinkRoute; readonly session: ReadSession }
  | { readonly kind: 'staged'; readonly path: string; readonly route: LinkRoute; readonly storeId: string; readonly key: string }
  | { readonly kind: 'write'; readonly path: string; readonly route: LinkRoute; readonly writer: WriteHandle }
  /**
   * A writer whose file was finalised by a FLUSH (close() of one of its descriptors); RELEASE
   * is still to come. A write through another (dup()ed) descriptor reopens it as a new version.
   */
  | { readonly kind: 'flushed'; readonly path: string; readonly route: LinkRoute; reopening?: Promise<void> };

type WriterFile = Extract<OpenFile, { kind: 'write' }>;

/**
 * The file system as the kernel sees it, without FUSE: every method takes plain
 * arguments and resolves or throws a StrataError. The FUSE adapter is a thin layer
 * over it, and tests drive it directly.
 *
 * Writes go through the write path (staged locally, uploaded in the background); a link
 * without one, or marked read-only, answers `FS_READ_ONLY` (EROFS). Files not yet in the
 * store are listed and read from their staged bytes (read-your-writes).
 */
export class Filesystem {
  #routes: MountRoutes;
  readonly #reader: ObjectReader;
  readonly #logger: Logger;
  readonly #writes: WritePath | undefined;
  readonly #uid: number;
  readonly #gid: number;
  readonly #handles = new Map<number, OpenFile>();
  /** Writers that have written or truncated since they were opened. */
  readonly #dirty = new Set<number>();
  readonly #mountedAt = new Date();
  #nextHandle = 1;

  constructor(config: FilesystemConfig) {
    this.#routes = config.routes;
    this.#reader = config.reader;
    this.#logger = config.logger;
    this.#writes = config.writes;
    this.#uid = config.uid ?? process.getuid?.() ?? 0;
    this.#gid = config.gid ?? process.getgid?.() ?? 0;
  }

  /** Swaps the link table at once; open handles keep reading what they opened. */
  setRoutes(routes: MountRoutes): void {
    this.#routes = routes;
  }

  async getattr(path: string): Promise<FileStat> {
    const route = this.#route(path);
    if (route.kind === 'virtual') return this.#stat({ kind: 'dir' });
    const staged = this.#staged(route);
    if (staged) return this.#statOf(FILE_MODE, staged.size, staged.mtime, 1);
    try {
      return this.#stat(await route.link.namespace.lookup(route.innerPath));
    } catch (err) {
      // A folder that exists only through files still being uploaded.
      if (isStrataError(err, 'FS_NOT_FOUND') && this.#stagedUnder(route).length > 0) return this.#stat({ kind: 'dir' });
      throw err;
    }
  }

  /** Names in the folder, without `.` and `..` (libfuse adds those). */
  async readdir(path: string): Promise<string[]> {
    const route = this.#route(path);
    if (route.kind === 'virtual') return [...route.children];
    const pending = this.#stagedUnder(route);
    let names: string[] = [];
    try {
      names = (await route.link.namespace.list(route.innerPath)).map((e) => e.name);
    } catch (err) {
      if (!isStrataError(err, 'FS_NOT_FOUND') || pending.length === 0) throw err;
    }
    if (pending.length === 0) return names;
    const prefix = innerKey(route.innerPath, true);
    const all = new Set(names);
    for (const file of pending) all.add(file.key.slice(prefix.length).split('/')[0]!);
    return [...all].sort();
  }

  /** Opens a file for reading, or for writing (a writer only writes), and answers its handle number. */
  async open(path: string, flags: number): Promise<number> {
    const route = this.#route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) return this.#openWriter(path, route, (flags & O_TRUNC) !== 0);
    const staged = this.#staged(route);
    if (staged) return this.#add({ kind: 'staged', path, route, storeId: route.link.storeId!, key: innerKey(route.innerPath) });
    const entry = await route.link.namespace.lookup(route.innerPath);
    if (entry.kind !== 'file') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    return this.#add({ kind: 'read', path, route, session: this.#reader.openSession(entry.ref) });
  }

  /** Creates (or empties) a file and opens it for writing. */
  async create(path: string): Promise<number> {
    const route = this.#route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    return this.#openWriter(path, route, true);
  }

  /** Writes `data` (the kernel's buffer: not kept once the promise settles) and answers the bytes written. */
  async write(handle: number, offset: number, data: Buffer): Promise<number> {
    const file = await this.#liveWriter(handle);
    if (offset < 0) throw new FsError('FS_INVALID_ARGUMENT', `negative offset for ${file.path}`);
    this.#dirty.add(handle);
    return this.#writes!.write(file.writer, offset, data);
  }

  /** Truncates an open writer (`ftruncate`), or a path (`truncate`): then through a short-lived writer. */
  async truncate(path: string, size: number, handle?: number): Promise<void> {
    if (size < 0) throw new FsError('FS_INVALID_ARGUMENT', `negative size for ${path}`);
    const open = handle !== undefined ? await this.#liveWriter(handle) : [...this.#handles.values()].find((f): f is WriterFile => f.kind === 'write' && f.path === path);
    if (open) {
      for (const [h, f] of this.#handles) if (f === open) this.#dirty.add(h);
      return this.#writes!.truncate(open.writer, size);
    }
    const route = this.#route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    const temporary = await this.#openWriter(path, route, size === 0);
    try {
      await this.#writes!.truncate(this.#writerOf(temporary).writer, size);
    } finally {
      await this.release(temporary);
    }
  }

  /**
   * Waits until the store has what was written through `handle` (readers: nothing to do). A
   * handle finalised by a FLUSH waits for the upload that FLUSH started.
   */
  async fsync(handle: number): Promise<void> {
    const file = this.#handles.get(handle);
    if (!file) throw new FsError('FS_BAD_HANDLE', `file handle ${handle} is not open`);
    if (file.kind === 'write') await this.#writes!.fsync(file.writer);
    if (file.kind === 'flushed' && file.route.link.storeId) await this.#writes!.flush({ storeId: file.route.link.storeId, key: innerKey(file.route.innerPath) });
  }

  async unlink(path: string): Promise<void> {
    const { route, link, store, storeId } = this.#writable(path);
    const key = innerKey(route.innerPath);
    const entry = await link.namespace.lookup(route.innerPath).catch(() => undefined);
    if (entry?.kind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    const staged = this.#staged(route);
    if (!entry && !staged) throw new FsError('FS_NOT_FOUND', `no such file: ${path}`);
    await this.#writes!.unlink(storeId, key);
    if (entry) await store.delete(key);
    link.namespace.invalidate(route.innerPath);
  }

  /** Renames a file, or a folder by copying its objects (the store has no rename). */
  async rename(from: string, to: string): Promise<void> {
    const source = this.#writable(from);
    const target = this.#writable(to);
    if (source.link !== target.link) throw new FsError('FS_NOT_SUPPORTED', `cannot move ${from} to another link (${to}); copy it instead`);
    const { link, store, storeId } = source;
    const fromKey = innerKey(source.route.innerPath);
    const toKey = innerKey(target.route.innerPath);
    const entry = await link.namespace.lookup(source.route.innerPath).catch(() => undefined);
    const staged = this.#staged(source.route);
    if (!entry && !staged) throw new FsError('FS_NOT_FOUND', `no such file or folder: ${from}`);
    if (entry?.kind === 'dir') {
      for await (const file of link.namespace.walkFiles(source.route.innerPath)) {
        const rest = file.ref.key.slice(fromKey.length);
        await store.copy(file.ref.key, `${toKey}${rest}`);
        await store.delete(file.ref.key);
      }
      for (const pending of this.#writes!.pendingUnder(storeId, `${fromKey}/`)) await this.#writes!.rename(storeId, pending.key, `${toKey}${pending.key.slice(fromKey.length)}`);
      await store.delete(`${fromKey}/`);
    } else {
      if (staged) await this.#writes!.rename(storeId, fromKey, toKey);
      else await this.#writes!.unlink(storeId, toKey);
      if (entry) {
        if (!staged) await store.copy(fromKey, toKey);
        await store.delete(fromKey);
      }
    }
    link.namespace.invalidate(source.route.innerPath);
    link.namespace.invalidate(target.route.innerPath);
  }

  /** A folder is a marker object `key/` in the store (what S3 consoles and tools create). */
  async mkdir(path: string): Promise<void> {
    const { route, link, store } = this.#writable(path);
    const existing = await link.namespace.lookup(route.innerPath).catch(() => undefined);
    if (existing) throw new FsError('FS_EXISTS', `${path} already exists`);
    await store.put(`${innerKey(route.innerPath)}/`, Buffer.alloc(0));
    link.namespace.invalidate(route.innerPath);
  }

  async rmdir(path: string): Promise<void> {
    const { route, link, store } = this.#writable(path);
    const entry = await link.namespace.lookup(route.innerPath);
    if (entry.kind !== 'dir') throw new FsError('FS_NOT_A_DIRECTORY', `not a folder: ${path}`);
    if (this.#stagedUnder(route).length > 0 || (await link.namespace.list(route.innerPath)).length > 0) {
      throw new FsError('FS_NOT_EMPTY', `folder ${path} is not empty`);
    }
    await store.delete(`${innerKey(route.innerPath)}/`);
    link.namespace.invalidate(route.innerPath);
  }

  /**
   * Up to `length` bytes at `offset` of an open file; fewer only at the end of the file.
   * If the object changed in the store since the open, throws `FS_STALE` (ESTALE) and
   * forgets the path's metadata, so the next open sees the new version.
   */
  async read(handle: number, offset: number, length: number): Promise<Buffer> {
    const file = this.#handles.get(handle);
    if (!file) throw new FsError('FS_BAD_HANDLE', `file handle ${handle} is not open`);
    if (offset < 0 || length < 0) throw new FsError('FS_INVALID_ARGUMENT', `negative offset or length for ${file.path}`);
    if (file.kind === 'write' || file.kind === 'flushed') throw new FsError('FS_BAD_HANDLE', `${file.path} is open for writing only; open it again to read`);
    if (file.kind === 'staged') {
      const bytes = await this.#writes?.readPending(file.storeId, file.key, offset, length);
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

  /**
   * `close()` of a file descriptor. FUSE sends RELEASE only after close() has returned, so a
   * writer is made durable (async mode) or committed (sync mode) here, on FLUSH. Shells and
   * dd open a file, dup() it and close the original before writing: a FLUSH of a writer that
   * has not written yet is therefore ignored. A descriptor duplicated before a FLUSH that
   * finalised the file still writes: its next write or ftruncate opens a new version holding
   * the bytes so far (a copy of the staged file), finalised by the next FLUSH or RELEASE.
   */
  async flush(handle: number): Promise<void> {
    const file = this.#handles.get(handle);
    if (file?.kind !== 'write' || !this.#dirty.has(handle)) return;
    this.#dirty.delete(handle);
    this.#handles.set(handle, { kind: 'flushed', path: file.path, route: file.route });
    try {
      await this.#writes!.release(file.writer);
    } finally {
      file.route.link.namespace.invalidate(file.route.innerPath);
    }
  }

  /** Closes a handle. A writer's close returns per the close mode (async: once staged durably). */
  async release(handle: number): Promise<void> {
    const file = this.#handles.get(handle);
    if (!file) return;
    this.#handles.delete(handle);
    this.#dirty.delete(handle);
    if (file.kind === 'read') this.#reader.closeSession(file.session);
    if (file.kind === 'write') {
      try {
        await this.#writes!.release(file.writer);
      } finally {
        file.route.link.namespace.invalidate(file.route.innerPath);
      }
    }
  }

  /**
   * A plain local file holding exactly the bytes `handle` reads, at the same offsets, that
   * stays as it is while the handle is open, opened for reading (the caller closes it); or
   * undefined. The FUSE adapter may then tie the open to that file (kernel passthrough), and
   * reads of the handle never reach the daemon. Today: a closed staged file (read-your-
   * writes before the upload is done), and the object's own file in a local-directory
   * store. Optional for adapters: without passthrough they keep calling `read`.
   */
  async backingFile(handle: number): Promise<FileHandle | undefined> {
    const file = this.#handles.get(handle);
    if (file?.kind === 'staged') {
      const path = this.#writes?.closedStagedFile(file.storeId, file.key);
      // Committed and deleted meanwhile: the handle reads the stored object through the daemon.
      return path === undefined ? undefined : open(path, 'r').catch(() => undefined);
    }
    if (file?.kind === 'read') {
      const { store } = file.route.link;
      return store?.openVersion?.(file.session.ref.key, file.session.ref.etag);
    }
    return undefined;
  }

  /** Number of open handles, for status and tests. */
  get openHandles(): number {
    return this.#handles.size;
  }

  statfs(): FsStatistics {
    return {
      bsize: PREFERRED_IO_SIZE,
      frsize: PREFERRED_IO_SIZE,
      blocks: STATFS_BLOCKS,
      bfree: STATFS_BLOCKS,
      bavail: STATFS_BLOCKS,
      files: STATFS_BLOCKS,
      ffree: STATFS_BLOCKS,
      favail: STATFS_BLOCKS,
      namemax: NAME_MAX,
    };
  }

  /** Calls the store cannot express (links, symlinks). */
  refuseWrite(operation: string, path: string): never {
    throw new FsError('FS_NOT_SUPPORTED', `${operation} ${path}: object stores have no links`);
  }

  #add(file: OpenFile): number {
    const handle = this.#nextHandle++;
    this.#handles.set(handle, file);
    return handle;
  }

  async #openWriter(path: string, route: LinkRoute, truncate: boolean): Promise<number> {
    const writer = await this.#newWriter(path, route, truncate);
    return this.#add({ kind: 'write', path, route, writer });
  }

  /** A new version of `path` on the write path: empty (`truncate`), else holding the current bytes. */
  async #newWriter(path: string, route: LinkRoute, truncate: boolean): Promise<WriteHandle> {
    const { storeId } = this.#writable(path);
    const key = innerKey(route.innerPath);
    let existing;
    if (!truncate && !this.#staged(route)) {
      const entry = await route.link.namespace.lookup(route.innerPath).catch((err: unknown) => {
        if (isStrataError(err, 'FS_NOT_FOUND')) return undefined;
        throw err;
      });
      if (entry?.kind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
      existing = entry?.ref;
    }
    const closeMode = route.link.closeMode;
    const writer = await this.#writes!.open({ storeId, key }, { truncate, ...(existing ? { existing } : {}), ...(closeMode ? { closeMode } : {}) });
    route.link.namespace.invalidate(route.innerPath);
    return writer;
  }

  /**
   * The writer of `handle`; a handle finalised by a FLUSH is reopened first (once, however
   * many writes arrive meanwhile), as a new version of the same path with the bytes so far.
   */
  async #liveWriter(handle: number): Promise<WriterFile> {
    const file = this.#handles.get(handle);
    if (file?.kind === 'flushed') {
      file.reopening ??= this.#newWriter(file.path, file.route, false).then(async (writer) => {
        if (this.#handles.get(handle) === file) this.#handles.set(handle, { kind: 'write', path: file.path, route: file.route, writer });
        else await this.#writes!.release(writer); // released meanwhile: the new version is clean and uploads nothing
      });
      await file.reopening;
    }
    return this.#writerOf(handle);
  }

  #writerOf(handle: number): WriterFile {
    const file = this.#handles.get(handle);
    if (!file) throw new FsError('FS_BAD_HANDLE', `file handle ${handle} is not open`);
    if (file.kind === 'flushed') throw new FsError('FS_BAD_HANDLE', `${file.path} was closed; it takes no more writes`);
    if (file.kind !== 'write') throw new FsError('FS_BAD_HANDLE', `${file.path} is open for reading only`);
    return file;
  }

  /** The link of `path` if it takes writes; else FS_READ_ONLY. */
  #writable(path: string): { route: LinkRoute; link: LinkRoute['link']; store: NonNullable<LinkRoute['link']['store']>; storeId: string } {
    const route = this.#route(path);
    if (route.kind === 'virtual') throw new FsError('FS_READ_ONLY', `${path} is above the links; create files inside a link`);
    const { link } = route;
    if (!this.#writes || !link.store || !link.storeId || link.readOnly) throw new FsError('FS_READ_ONLY', `${path}: the mount is read-only`);
    if (route.innerPath === '/') throw new FsError('FS_READ_ONLY', `${path} is the root of a link`);
    return { route, link, store: link.store, storeId: link.storeId };
  }

  /** A file of this path still staged (written, not yet in the store). */
  #staged(route: LinkRoute): { size: number; mtime: Date } | undefined {
    if (!this.#writes || !route.link.storeId || route.innerPath === '/') return undefined;
    return this.#writes.pending(route.link.storeId, innerKey(route.innerPath));
  }

  #stagedUnder(route: LinkRoute): Array<{ key: string }> {
    if (!this.#writes || !route.link.storeId) return [];
    return this.#writes.pendingUnder(route.link.storeId, innerKey(route.innerPath, true));
  }

  #route(path: string): Route {
    const route = this.#routes.route(path);
    if (!route) throw new FsError('FS_NOT_FOUND', `no such file or folder: ${path}`);
    return route;
  }

  #stat(entry: NamespaceEntry): FileStat {
    if (entry.kind === 'dir') {
      return this.#statOf(DIR_MODE, 0, this.#mountedAt, 2);
    }
    return this.#statOf(FILE_MODE, entry.ref.size, versionedMtime(entry.lastModified, entry.ref.etag), 1);
  }

  #statOf(mode: number, size: number, mtime: Date, nlink: number): FileStat {
    return {
      mode,
      size,
      mtime,
      atime: mtime,
      ctime: mtime,
      nlink,
      uid: this.#uid,
      gid: this.#gid,
      blocks: Math.ceil(size / STAT_BLOCK_UNIT),
      blksize: PREFERRED_IO_SIZE,
    };
  }
}

/** The store key of a path inside a link; `asFolder` gives the prefix of its contents. */
function innerKey(innerPath: string, asFolder = false): string {
  const key = innerPath.replace(/^\/+/, '');
  return asFolder ? (key === '' ? '' : `${key}/`) : key;
}

/**
 * The object's modification time with its ETag folded into the milliseconds. S3 keeps
 * LastModified to the second, so the millisecond part is free; libfuse's `auto_cache`
 * keeps the kernel page cache across opens only while mtime and size are unchanged, so
 * a new version written within the same second still drops the cached pages (unless
 * the two ETags collide in 1,000, and the size is equal too).
 */
export function versionedMtime(lastModified: Date, etag: string): Date {
  const seconds = Math.floor(lastModified.getTime() / 1000) * 1000;
  const digest = createHash('sha1').update(etag).digest();
  return new Date(seconds + (digest.readUInt16BE(0) % 1000));
}
