import { createHash } from 'node:crypto';
import type { NamespaceEntry } from '../cache/namespace.js';
import type { ObjectReader, ReadSession } from '../cache/object-reader.js';
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

interface OpenFile {
  readonly path: string;
  readonly route: Extract<Route, { kind: 'link' }>;
  readonly session: ReadSession;
}

/**
 * The file system as the kernel sees it, without FUSE: every method takes plain
 * arguments and resolves or throws a StrataError. The FUSE adapter is a thin layer
 * over it, and tests drive it directly.
 *
 * Read path only: calls that would change the store throw `FS_READ_ONLY` (EROFS).
 */
export class Filesystem {
  #routes: MountRoutes;
  readonly #reader: ObjectReader;
  readonly #logger: Logger;
  readonly #uid: number;
  readonly #gid: number;
  readonly #handles = new Map<number, OpenFile>();
  readonly #mountedAt = new Date();
  #nextHandle = 1;

  constructor(config: FilesystemConfig) {
    this.#routes = config.routes;
    this.#reader = config.reader;
    this.#logger = config.logger;
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
    return this.#stat(await route.link.namespace.lookup(route.innerPath));
  }

  /** Names in the folder, without `.` and `..` (libfuse adds those). */
  async readdir(path: string): Promise<string[]> {
    const route = this.#route(path);
    if (route.kind === 'virtual') return [...route.children];
    const entries = await route.link.namespace.list(route.innerPath);
    return entries.map((e) => e.name);
  }

  /** Opens a file for reading and answers its handle number. */
  async open(path: string, flags: number): Promise<number> {
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) {
      throw new FsError('FS_READ_ONLY', `cannot open ${path} for writing: the mount is read-only`);
    }
    const route = this.#route(path);
    if (route.kind === 'virtual') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    const entry = await route.link.namespace.lookup(route.innerPath);
    if (entry.kind !== 'file') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    const handle = this.#nextHandle++;
    this.#handles.set(handle, { path, route, session: this.#reader.openSession(entry.ref) });
    return handle;
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

  release(handle: number): void {
    const file = this.#handles.get(handle);
    if (!file) return;
    this.#handles.delete(handle);
    this.#reader.closeSession(file.session);
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

  /** Every call that would change the store, until the write path exists. */
  refuseWrite(operation: string, path: string): never {
    throw new FsError('FS_READ_ONLY', `${operation} ${path}: the mount is read-only`);
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
