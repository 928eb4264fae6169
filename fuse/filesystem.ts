import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { NamespaceEntry } from '../namespace/index.js';
import type { BlockFiles, ObjectReader, ReadSession } from '../cache/index.js';
import type { WriteHandle, WritePath } from '../checkpoints/index.js';
import { isStrataError } from '../errors/index.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, isSymlinkMeta, type ObjectMeta } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import { FsError } from './fs-error.js';
import type { MountRoutes, Route } from '../namespace/index.js';

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
  /** Owner shown for files and folders whose object carries none: the daemon's user unless configured. */
  readonly uid?: number;
  readonly gid?: number;
  /** Permission bits (0-0o7777) shown for files and folders whose object carries none. */
  readonly fileMode?: number;
  readonly dirMode?: number;
}

/** Permission bits shown for objects that carry none, unless `--file-mode`/`--dir-mode` say otherwise. */
export const DEFAULT_FILE_MODE = 0o644;
export const DEFAULT_DIR_MODE = 0o755;
/** PATH_MAX of Linux: the longest target a symbolic link may hold. */
const PATH_MAX = 4096;
/** chown's "leave unchanged" (-1 as an unsigned 32-bit id). */
const ID_UNCHANGED = 0xffff_ffff;
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
  readonly #fileMode: number;
  readonly #dirMode: number;
  readonly #handles = new Map<number, OpenFile>();
  /** Writers that have written or truncated since they were opened. */
  readonly #dirty = new Set<number>();
  readonly #mountedAt = new Date();
  /** Hidden names of files unlinked while open (see `hide`), to the path they were opened as. */
  readonly #hidden = new Map<string, string>();
  #nextHandle = 1;

  constructor(config: FilesystemConfig) {
    this.#routes = config.routes;
    this.#reader = config.reader;
    this.#logger = config.logger;
    this.#writes = config.writes;
    this.#uid = config.uid ?? process.getuid?.() ?? 0;
    this.#gid = config.gid ?? process.getgid?.() ?? 0;
    this.#fileMode = S_IFREG | (config.fileMode ?? DEFAULT_FILE_MODE);
    this.#dirMode = S_IFDIR | (config.dirMode ?? DEFAULT_DIR_MODE);
    // A lookup answered "no such file" while the file was still being uploaded must not be
    // trusted once it is in the store (a reopen would start from nothing).
    this.#writes?.onLanded((storeId, key) => {
      for (const link of this.#routes.links) if (link.storeId === storeId) link.namespace.invalidate(`/${key}`);
    });
  }

  /** Swaps the link table at once; open handles keep reading what they opened. */
  setRoutes(routes: MountRoutes): void {
    this.#routes = routes;
  }

  async getattr(path: string): Promise<FileStat> {
    const hidden = this.#hidden.get(path);
    if (hidden !== undefined) {
      const handle = this.#handleOf(hidden);
      return (handle !== undefined ? this.getattrOpen(handle) : undefined) ?? this.#statOf(this.#fileMode, 0, new Date(), 0);
    }
    const route = this.#route(path);
    if (route.kind === 'virtual') return this.#stat({ kind: 'dir' });
    const staged = this.#staged(route);
    if (staged) return this.#statOf(this.#modeOf(staged.meta), staged.size, staged.meta?.mtime !== undefined ? new Date(staged.meta.mtime * 1000) : staged.mtime, 1, staged.meta);
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

  /** Creates (or empties) a file with permission bits `mode` and opens it for writing (and reading). */
  async create(path: string, mode?: number): Promise<number> {
    const route = this.#route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    return this.#openWriter(path, route, true, mode === undefined ? undefined : { mode: S_IFREG | (mode & 0o7777) });
  }

  /** chmod: the permission bits are kept with the object (`x-amz-meta-mode`). */
  async chmod(path: string, mode: number): Promise<void> {
    const current = await this.getattr(path);
    if ((current.mode & S_IFMT) === S_IFDIR) return this.#folderAttributes(path);
    await this.#setMeta(path, { mode: S_IFREG | (mode & 0o7777) });
  }

  /** chown: owner and group are kept with the object; -1 leaves one unchanged. */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    const current = await this.getattr(path);
    if ((current.mode & S_IFMT) === S_IFDIR) return this.#folderAttributes(path);
    const patch: { uid?: number; gid?: number } = {};
    if (uid !== ID_UNCHANGED && uid >= 0) patch.uid = uid;
    if (gid !== ID_UNCHANGED && gid >= 0) patch.gid = gid;
    if (patch.uid !== undefined || patch.gid !== undefined) await this.#setMeta(path, patch);
  }

  /** Sets the modification time (whole seconds are kept: `x-amz-meta-mtime`). */
  async utimens(path: string, mtime: Date): Promise<void> {
    const current = await this.getattr(path);
    if ((current.mode & S_IFMT) === S_IFDIR) return this.#folderAttributes(path);
    await this.#setMeta(path, { mtime: Math.floor(mtime.getTime() / 1000) });
  }

  /** Creates a symbolic link: an object holding `target`, with a link mode (as s3fs stores one). */
  async symlink(target: string, path: string): Promise<void> {
    const { route, link, storeId } = this.#writable(path);
    const body = Buffer.from(target, 'utf8');
    if (body.length === 0 || body.length >= PATH_MAX) throw new FsError('FS_INVALID_ARGUMENT', `a link target must be 1 to ${PATH_MAX - 1} bytes (${path})`);
    if (await this.#kindOf(route)) throw new FsError('FS_EXISTS', `${path} already exists`);
    try {
      const key = innerKey(route.innerPath);
      const meta = { mode: S_IFLNK | 0o777 };
      const etag = await this.#writes!.writeObject(storeId, key, body, meta);
      // Listings carry no attributes: remember that this version is a link.
      link.namespace.learn({ storeId: link.namespace.storeId, key, etag, size: body.length }, meta);
    } finally {
      link.namespace.invalidate(route.innerPath);
    }
  }

  /** The target of a symbolic link. */
  async readlink(path: string): Promise<string> {
    const route = this.#route(path);
    if (route.kind === 'virtual') throw new FsError('FS_INVALID_ARGUMENT', `not a link: ${path}`);
    const entry = await route.link.namespace.lookup(route.innerPath);
    if (entry.kind !== 'file' || !isSymlinkMeta(entry.meta)) throw new FsError('FS_INVALID_ARGUMENT', `not a link: ${path}`);
    const session = this.#reader.openSession(entry.ref);
    try {
      return (await this.#reader.read(session, 0, Math.min(entry.ref.size, PATH_MAX))).toString('utf8');
    } finally {
      this.#reader.closeSession(session);
    }
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

  /**
   * Removes a file: its pending versions are cancelled and the object deleted, after any upload
   * of it already sent has landed (the unlink always wins). Open handles keep their state.
   */
  async unlink(path: string): Promise<void> {
    if (this.#hidden.delete(path)) return;
    const { route, link, storeId } = this.#writable(path);
    const kind = await this.#kindOf(route);
    if (kind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    if (!kind) throw new FsError('FS_NOT_FOUND', `no such file: ${path}`);
    try {
      await this.#writes!.unlink(storeId, innerKey(route.innerPath));
    } finally {
      link.namespace.invalidate(route.innerPath);
    }
  }

  /**
   * libfuse 2 keeps a file that is unlinked while open by renaming it to a hidden name
   * (`.fuse_hidden…`) and unlinking that at the last close. Here the file is unlinked at once (it
   * leaves the store, its pending uploads are cancelled) and `alias` answers `stat` and `unlink`
   * until then; the open handles go on reading and writing what they opened.
   */
  async hide(path: string, alias: string): Promise<void> {
    await this.unlink(path);
    this.#hidden.set(alias, path);
  }

  /**
   * Renames a file or a folder, as rename(2) does: a file replaces a file, a folder replaces an
   * empty folder (ENOTEMPTY otherwise); a folder never replaces a file (ENOTDIR) nor the other
   * way round (EISDIR). The store has no rename: objects are copied and deleted, in the order
   * checkpoints/tree-rename.ts documents for folders.
   */
  async rename(from: string, to: string): Promise<void> {
    const source = this.#writable(from);
    const target = this.#writable(to);
    if (source.link !== target.link) throw new FsError('FS_CROSS_DEVICE', `cannot move ${from} to another link (${to}); copy it instead`);
    const { link, storeId } = source;
    const fromKey = innerKey(source.route.innerPath);
    const toKey = innerKey(target.route.innerPath);
    if (fromKey === toKey) return;
    const [sourceKind, targetKind] = await Promise.all([this.#kindOf(source.route), this.#kindOf(target.route)]);
    if (!sourceKind) throw new FsError('FS_NOT_FOUND', `no such file or folder: ${from}`);
    try {
      if (sourceKind === 'dir') {
        if (targetKind === 'file') throw new FsError('FS_NOT_A_DIRECTORY', `${to} is a file; a folder cannot replace it`);
        if (toKey.startsWith(`${fromKey}/`)) throw new FsError('FS_INVALID_ARGUMENT', `cannot move ${from} into itself (${to})`);
        if (targetKind === 'dir' && !(await this.#isEmptyFolder(target.route))) throw new FsError('FS_NOT_EMPTY', `folder ${to} is not empty`);
        await this.#writes!.renameTree(storeId, `${fromKey}/`, `${toKey}/`);
      } else {
        if (targetKind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `${to} is a folder; a file cannot replace it`);
        if (!(await this.#writes!.rename(storeId, fromKey, toKey))) throw new FsError('FS_NOT_FOUND', `no such file: ${from}`);
      }
    } finally {
      // A folder rename changes every path below it: forget them all.
      if (sourceKind === 'dir') link.namespace.invalidateAll();
      link.namespace.invalidate(source.route.innerPath);
      link.namespace.invalidate(target.route.innerPath);
    }
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
    if (!(await this.#isEmptyFolder(route))) throw new FsError('FS_NOT_EMPTY', `folder ${path} is not empty`);
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
    // The kernel sends reads only for descriptors opened for reading: a writer here is O_RDWR.
    if (file.kind === 'write') return this.#writes!.read(file.writer, offset, length);
    if (file.kind === 'staged' || file.kind === 'flushed') {
      const storeId = file.route.link.storeId!;
      const key = innerKey(file.route.innerPath);
      const bytes = await this.#writes?.readPending(storeId, key, offset, length);
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

  /** Where the blocks a reading handle reads lie in tier files (ObjectReader.locate), or undefined. */
  blockFiles(handle: number): BlockFiles | undefined {
    const file = this.#handles.get(handle);
    return file?.kind === 'read' ? this.#reader.locate?.(file.session) : undefined;
  }

  /**
   * What `fstat` shows for an open handle whose path is gone (unlinked while open): its size as
   * written or opened, `undefined` when the handle is not open.
   */
  getattrOpen(handle: number): FileStat | undefined {
    const file = this.#handles.get(handle);
    if (!file) return undefined;
    const size = file.kind === 'write' ? (this.#writes!.sizeOf(file.writer) ?? 0) : file.kind === 'read' ? file.session.ref.size : 0;
    return this.#statOf(this.#fileMode, size, new Date(), 0);
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

  /** Hard links: an object store cannot give one object two names. */
  link(_target: string, path: string): never {
    throw new FsError('FS_NOT_PERMITTED', `${path}: hard links are not supported; copy the file or make a symbolic link`);
  }

  #add(file: OpenFile): number {
    const handle = this.#nextHandle++;
    this.#handles.set(handle, file);
    return handle;
  }

  async #openWriter(path: string, route: LinkRoute, truncate: boolean, meta?: ObjectMeta): Promise<number> {
    const writer = await this.#newWriter(path, route, truncate, meta);
    return this.#add({ kind: 'write', path, route, writer });
  }

  /**
   * A new version of `path` on the write path: empty (`truncate`), else holding the current
   * bytes (the write path finds them itself, in order with uploads of the key).
   */
  async #newWriter(path: string, route: LinkRoute, truncate: boolean, createMeta?: ObjectMeta): Promise<WriteHandle> {
    const { storeId } = this.#writable(path);
    const key = innerKey(route.innerPath);
    let meta = createMeta;
    if (!createMeta && !this.#staged(route)) {
      const entry = await route.link.namespace.lookup(route.innerPath).catch((err: unknown) => {
        if (isStrataError(err, 'FS_NOT_FOUND')) return undefined;
        throw err;
      });
      if (entry?.kind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
      // A rewrite keeps the file's attributes (its mode, owner), as a local file system does.
      if (entry?.kind === 'file' && entry.meta) meta = entry.meta;
    }
    const closeMode = route.link.closeMode;
    const writer = await this.#writes!.open({ storeId, key }, { truncate, ...(closeMode ? { closeMode } : {}), ...(meta ? { meta } : {}) });
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

  async #setMeta(path: string, patch: ObjectMeta): Promise<void> {
    const { route, link, storeId } = this.#writable(path);
    try {
      if (!(await this.#writes!.setMeta(storeId, innerKey(route.innerPath), patch))) throw new FsError('FS_NOT_FOUND', `no such file: ${path}`);
    } finally {
      link.namespace.invalidate(route.innerPath);
    }
  }

  /** Folders show the mount's owner and `--dir-mode`: their attributes are accepted and not kept. */
  async #folderAttributes(path: string): Promise<void> {
    this.#writable(path);
  }

  /** A file, a folder, or nothing at `route` (files and folders still being uploaded count). */
  async #kindOf(route: LinkRoute): Promise<'file' | 'dir' | undefined> {
    if (this.#staged(route)) return 'file';
    try {
      return (await route.link.namespace.lookup(route.innerPath)).kind;
    } catch (err) {
      if (!isStrataError(err, 'FS_NOT_FOUND')) throw err;
      return this.#stagedUnder(route).length > 0 ? 'dir' : undefined;
    }
  }

  /** Asks the store itself (never a cached listing) whether anything is under the folder. */
  async #isEmptyFolder(route: LinkRoute): Promise<boolean> {
    if (this.#stagedUnder(route).length > 0) return false;
    const prefix = innerKey(route.innerPath, true);
    const page = await route.link.store!.list(prefix, { maxKeys: 2 });
    return page.objects.every((o) => o.key === prefix);
  }

  /** A handle open on `path`: a writer if there is one (it knows the size as written), else a reader. */
  #handleOf(path: string): number | undefined {
    let reader: number | undefined;
    for (const [handle, file] of this.#handles) {
      if (file.path !== path) continue;
      if (file.kind === 'write') return handle;
      if (file.kind === 'read') reader ??= handle;
    }
    return reader;
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
  #staged(route: LinkRoute): { size: number; mtime: Date; meta?: ObjectMeta | undefined } | undefined {
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
      return this.#statOf(this.#dirMode, 0, this.#mountedAt, 2);
    }
    const { meta } = entry;
    const mtime = meta?.mtime !== undefined ? new Date(meta.mtime * 1000) : versionedMtime(entry.lastModified, entry.ref.etag);
    return this.#statOf(this.#modeOf(meta), entry.ref.size, mtime, 1, meta);
  }

  /** The file's mode: its object's (a regular file unless it says a link), else the mount's default. */
  #modeOf(meta: ObjectMeta | undefined): number {
    if (meta?.mode === undefined) return this.#fileMode;
    if (isSymlinkMeta(meta)) return S_IFLNK | 0o777;
    return S_IFREG | (meta.mode & 0o7777);
  }

  #statOf(mode: number, size: number, mtime: Date, nlink: number, meta?: ObjectMeta): FileStat {
    return {
      mode,
      size,
      mtime,
      atime: mtime,
      ctime: mtime,
      nlink,
      uid: meta?.uid ?? this.#uid,
      gid: meta?.gid ?? this.#gid,
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
