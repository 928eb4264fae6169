import type { FileHandle } from 'node:fs/promises';
import type { BlockFiles, ObjectReader } from '../cache/index.js';
import type { WritePath } from '../checkpoints/index.js';
import { isStrataError } from '../errors/index.js';
import { compareNames, keyOfPath, type MountRoutes } from '../namespace/index.js';
import type { Logger } from '../telemetry/index.js';
import { FileIo } from './file-io.js';
import { FsAttributes, type FileStat, type FsStatistics } from './fs-attributes.js';
import { FsError } from './fs-error.js';
import { FsPaths } from './fs-paths.js';
import { MetadataOps } from './metadata-ops.js';
import { NameOps } from './name-ops.js';
import { NextFiles, type NextFilesOptions } from './next-files.js';
import { OpenFiles } from './open-files.js';

/** A folder entry: its name and the type bits of its mode (0: not known). */
export interface DirectoryItem {
  readonly name: string;
  readonly mode: number;
}

export { DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, versionedMtime, type FileStat, type FsStatistics } from './fs-attributes.js';

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
  /** Readahead across the files of a folder read in name order (next-files.ts); default DEFAULT_NEXT_FILES. */
  readonly nextFiles?: NextFilesOptions;
}

/**
 * Four files ahead: with 256 KiB files the store answers in 15-20 ms a GET under load, about
 * what a reader spends on the kernel round trips of a file, so a few ahead keep it busy; 16
 * loads at once keep a gateway on few cores from queueing the readers' own GETs behind them.
 */
export const DEFAULT_NEXT_FILES: NextFilesOptions = Object.freeze({ depth: 4, maxLoads: 16 });

/**
 * The file system as the kernel sees it, without FUSE: every method takes plain
 * arguments and resolves or throws a StrataError. The FUSE adapter is a thin layer
 * over it, and tests drive it directly.
 *
 * Writes go through the write path (staged locally, uploaded in the background); a link
 * without one, or marked read-only, answers `FS_READ_ONLY` (EROFS). Files not yet in the
 * store are listed and read from their staged bytes (read-your-writes).
 *
 * This class is the facade: it answers `stat` and listings itself and hands the rest to its
 * parts: fs-paths.ts (path routing, what is at a path), fs-attributes.ts (what `stat` shows),
 * open-files.ts (the handle table), file-io.ts (open handles: reads, writes, close),
 * name-ops.ts (unlink, rename, mkdir, rmdir) and metadata-ops.ts (modes, owners, times, links).
 */
export class Filesystem {
  readonly #paths: FsPaths;
  readonly #attrs: FsAttributes;
  readonly #files = new OpenFiles();
  readonly #io: FileIo;
  readonly #names: NameOps;
  readonly #meta: MetadataOps;

  constructor(config: FilesystemConfig) {
    this.#paths = new FsPaths(config.routes, config.writes);
    this.#attrs = new FsAttributes(config);
    this.#io = new FileIo(this.#paths, this.#files, config.reader, config.logger, this.#attrs, new NextFiles(config.reader, config.nextFiles ?? DEFAULT_NEXT_FILES));
    this.#names = new NameOps(this.#paths);
    this.#meta = new MetadataOps(this.#paths, config.reader, (path) => this.getattr(path));
    // A lookup answered "no such file" while the file was still being uploaded must not be
    // trusted once it is in the store (a reopen would start from nothing).
    config.writes?.onLanded((storeId, key) => {
      for (const link of this.#paths.routes.links) if (link.storeId === storeId) link.namespace.invalidate(`/${key}`);
    });
  }

  /** Swaps the link table at once; open handles keep reading what they opened. */
  setRoutes(routes: MountRoutes): void {
    this.#paths.setRoutes(routes);
  }

  async getattr(path: string): Promise<FileStat> {
    const hidden = this.#files.hidden.get(path);
    if (hidden !== undefined) {
      const handle = this.#files.handleOf(hidden);
      return (handle !== undefined ? this.getattrOpen(handle) : undefined) ?? this.#attrs.statOf(this.#attrs.fileMode, 0, new Date(), 0);
    }
    const route = this.#paths.route(path);
    if (route.kind === 'virtual') return this.#attrs.stat({ kind: 'dir' });
    const staged = this.#paths.staged(route);
    if (staged) return this.#attrs.statOf(this.#attrs.modeOf(staged.meta), staged.size, staged.meta?.mtime !== undefined ? new Date(staged.meta.mtime * 1000) : staged.mtime, 1, staged.meta);
    try {
      return this.#attrs.stat(await route.link.namespace.lookup(route.innerPath));
    } catch (err) {
      // A folder that exists only through files still being uploaded.
      if (isStrataError(err, 'FS_NOT_FOUND') && this.#paths.stagedUnder(route).length > 0) return this.#attrs.stat({ kind: 'dir' });
      throw err;
    }
  }

  /** Names in the folder, without `.` and `..` (libfuse adds those). */
  async readdir(path: string): Promise<string[]> {
    return (await this.list(path)).map((item) => item.name);
  }

  /**
   * The folder's entries, sorted by name, each with the type bits (`S_IFMT`) its `getattr`
   * would show now, or 0 where that is not known without asking the store: a file whose
   * attributes come from a HEAD (`--object-metadata listed`) may be a symlink, a name only
   * staged may be a file or a folder. Listings that carry types spare `find -type f` and
   * `ls --color` a lookup per name.
   */
  async list(path: string): Promise<DirectoryItem[]> {
    const route = this.#paths.route(path);
    if (route.kind === 'virtual') return [...route.children].map((name) => ({ name, mode: 0 }));
    const pending = this.#paths.stagedUnder(route);
    const { namespace } = route.link;
    let items: DirectoryItem[] = [];
    try {
      items = (await namespace.list(route.innerPath)).map(({ name, entry }) => ({
        name,
        mode: entry.kind === 'file' && entry.meta === undefined && namespace.attributesFromHead ? 0 : this.#attrs.typeOf(entry),
      }));
    } catch (err) {
      if (!isStrataError(err, 'FS_NOT_FOUND') || pending.length === 0) throw err;
    }
    if (pending.length === 0) return items;
    const prefix = keyOfPath(route.innerPath, true);
    const all = new Map(items.map((item) => [item.name, item]));
    for (const file of pending) {
      const name = file.key.slice(prefix.length).split('/')[0]!;
      all.set(name, { name, mode: 0 });
    }
    return [...all.values()].sort((a, b) => compareNames(a.name, b.name));
  }

  /** Whether a `flush` of `handle` has work to do: only a writer's does (it finishes the file there). */
  flushes(handle: number): boolean {
    return this.#io.flushes(handle);
  }

  /**
   * Opens a file for reading, or for writing (a writer only writes), and answers its handle
   * number. An open for reading announces the read (`announceRead`) unless `announceRead` is
   * false: the native session announces it itself once it knows the daemon will serve the reads.
   */
  open(path: string, flags: number, options: { readonly announceRead?: boolean } = {}): Promise<number> {
    return this.#io.open(path, flags, options.announceRead ?? true);
  }

  /**
   * The reads of `handle` (an open for reading) will come to the daemon: its first block starts
   * loading now, while the open's answer and the first READ still travel through the kernel, and
   * the next files of its folder start loading when it was opened after the name before it.
   * Not for an open the kernel reads itself (passthrough), nor one whose first block the FUSE
   * threads read from a tier: those loads would be wasted.
   */
  announceRead(handle: number): void {
    this.#io.announceRead(handle);
  }

  /** Creates (or empties) a file with permission bits `mode` and opens it for writing (and reading). */
  create(path: string, mode?: number): Promise<number> {
    return this.#io.create(path, mode);
  }

  /** chmod: the permission bits are kept with the object (`x-amz-meta-mode`). */
  chmod(path: string, mode: number): Promise<void> {
    return this.#meta.chmod(path, mode);
  }

  /** chown: owner and group are kept with the object; -1 leaves one unchanged. */
  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.#meta.chown(path, uid, gid);
  }

  /** Sets the modification time (whole seconds are kept: `x-amz-meta-mtime`). */
  utimens(path: string, mtime: Date): Promise<void> {
    return this.#meta.utimens(path, mtime);
  }

  /** Creates a symbolic link: an object holding `target`, with a link mode (as s3fs stores one). */
  symlink(target: string, path: string): Promise<void> {
    return this.#meta.symlink(target, path);
  }

  /** The target of a symbolic link. */
  readlink(path: string): Promise<string> {
    return this.#meta.readlink(path);
  }

  /** Writes `data` (the kernel's buffer: not kept once the promise settles) and answers the bytes written. */
  write(handle: number, offset: number, data: Buffer): Promise<number> {
    return this.#io.write(handle, offset, data);
  }

  /** Truncates an open writer (`ftruncate`), or a path (`truncate`): then through a short-lived writer. */
  truncate(path: string, size: number, handle?: number): Promise<void> {
    return this.#io.truncate(path, size, handle);
  }

  /**
   * Waits until the store has what was written through `handle` (readers: nothing to do). A
   * handle finalised by a FLUSH waits for the upload that FLUSH started.
   */
  fsync(handle: number): Promise<void> {
    return this.#io.fsync(handle);
  }

  /**
   * Removes a file: its pending versions are cancelled and the object deleted, after any upload
   * of it already sent has landed (the unlink always wins). Open handles keep their state.
   */
  async unlink(path: string): Promise<void> {
    if (this.#files.hidden.delete(path)) return;
    await this.#names.unlink(path);
  }

  /**
   * libfuse 2 keeps a file that is unlinked while open by renaming it to a hidden name
   * (`.fuse_hidden…`) and unlinking that at the last close. Here the file is unlinked at once (it
   * leaves the store, its pending uploads are cancelled) and `alias` answers `stat` and `unlink`
   * until then; the open handles go on reading and writing what they opened.
   */
  async hide(path: string, alias: string): Promise<void> {
    await this.unlink(path);
    this.#files.hidden.set(alias, path);
  }

  /**
   * Renames a file or a folder, as rename(2) does: a file replaces a file, a folder replaces an
   * empty folder (ENOTEMPTY otherwise); a folder never replaces a file (ENOTDIR) nor the other
   * way round (EISDIR). The store has no rename: objects are copied and deleted, in the order
   * checkpoints/tree-rename.ts documents for folders. name-ops.ts says which layer decides what.
   */
  rename(from: string, to: string): Promise<void> {
    return this.#names.rename(from, to);
  }

  /** A folder is a marker object `key/` in the store (what S3 consoles and tools create). */
  mkdir(path: string): Promise<void> {
    return this.#names.mkdir(path);
  }

  rmdir(path: string): Promise<void> {
    return this.#names.rmdir(path);
  }

  /**
   * Up to `length` bytes at `offset` of an open file; fewer only at the end of the file.
   * If the object changed in the store since the open, throws `FS_STALE` (ESTALE) and
   * forgets the path's metadata, so the next open sees the new version.
   */
  read(handle: number, offset: number, length: number): Promise<Buffer> {
    return this.#io.read(handle, offset, length);
  }

  /**
   * `close()` of a file descriptor. FUSE sends RELEASE only after close() has returned, so a
   * writer is made durable (async mode) or committed (sync mode) here, on FLUSH. Shells and
   * dd open a file, dup() it and close the original before writing: a FLUSH of a writer that
   * has not written yet is therefore ignored. A descriptor duplicated before a FLUSH that
   * finalised the file still writes: its next write or ftruncate opens a new version holding
   * the bytes so far (a copy of the staged file), finalised by the next FLUSH or RELEASE.
   */
  flush(handle: number): Promise<void> {
    return this.#io.flush(handle);
  }

  /** Closes a handle. A writer's close returns per the close mode (async: once staged durably). */
  release(handle: number): Promise<void> {
    return this.#io.release(handle);
  }

  /**
   * A plain local file holding exactly the bytes `handle` reads, at the same offsets, that
   * stays as it is while the handle is open, opened for reading (the caller closes it); or
   * undefined. The FUSE adapter may then tie the open to that file (kernel passthrough), and
   * reads of the handle never reach the daemon. Today: a closed staged file (read-your-
   * writes before the upload is done), the object's own file in a local-directory store,
   * and the NVMe tier's whole-object file of the version the handle reads (ObjectReader.wholeFile).
   * For a writer (async close only), the staged file itself, opened for reading and writing:
   * the kernel then writes it directly, the write path watches it grow and streams its parts,
   * a FLUSH makes it durable and RELEASE commits it (WritePath.shareWithKernel).
   * Optional for adapters: without passthrough they keep calling `read` and `write`.
   */
  backingFile(handle: number): Promise<FileHandle | undefined> {
    return this.#io.backingFile(handle);
  }

  /** Where the blocks a reading handle reads lie in tier files (ObjectReader.locate), or undefined. */
  blockFiles(handle: number): BlockFiles | undefined {
    return this.#io.blockFiles(handle);
  }

  /**
   * What `fstat` shows for an open handle whose path is gone (unlinked while open): its size as
   * written or opened, `undefined` when the handle is not open.
   */
  getattrOpen(handle: number): FileStat | undefined {
    return this.#io.getattrOpen(handle);
  }

  /** Number of open handles, for status and tests. */
  get openHandles(): number {
    return this.#files.size;
  }

  statfs(): FsStatistics {
    return this.#attrs.statfs();
  }

  /** Hard links: an object store cannot give one object two names. */
  link(_target: string, path: string): never {
    throw new FsError('FS_NOT_PERMITTED', `${path}: hard links are not supported; copy the file or make a symbolic link`);
  }
}
