import { keyOfPath } from '../namespace/index.js';
import { FsError } from './fs-error.js';
import type { FsPaths } from './fs-paths.js';

/**
 * Names in a link: unlink, rename, mkdir and rmdir, as the POSIX calls behave (the errno
 * table of docs/SEMANTICS.md), delegating the bytes and versions of files to the write path.
 *
 * Who owns rename. This module owns the rename(2) decision: what the source and the target
 * are (file, folder, nothing; files still being uploaded count), which combinations are
 * refused and with which error (EXDEV, ENOENT, ENOTDIR, EISDIR, EINVAL, ENOTEMPTY), and
 * whether it is a file move or a folder move. Those are questions about paths, and only
 * this layer sees paths, links and both kinds of entry. The write path
 * (`WritePath.rename`, `WritePath.renameTree`) owns the move itself: under the lock of both
 * keys it interrupts commits, copies and deletes the committed object, re-keys pending
 * versions and restarts their uploads; it decides nothing about file types. Its one answer
 * back, `false` when no file is at the source once it holds the lock, is the race-safe form
 * of the ENOENT checked here beforehand (the file may have been unlinked in between), so
 * both map to the same `FS_NOT_FOUND`.
 */
export class NameOps {
  readonly #paths: FsPaths;

  constructor(paths: FsPaths) {
    this.#paths = paths;
  }

  /** See Filesystem.unlink. */
  async unlink(path: string): Promise<void> {
    const { route, link, storeId } = this.#paths.writable(path);
    const kind = await this.#paths.kindOf(route);
    if (kind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `is a folder: ${path}`);
    if (!kind) throw new FsError('FS_NOT_FOUND', `no such file: ${path}`);
    try {
      await this.#paths.writes!.unlink(storeId, keyOfPath(route.innerPath));
    } finally {
      link.namespace.invalidate(route.innerPath);
    }
  }

  /** See Filesystem.rename (and the comment at the top of this file). */
  async rename(from: string, to: string): Promise<void> {
    const source = this.#paths.writable(from);
    const target = this.#paths.writable(to);
    if (source.link !== target.link) throw new FsError('FS_CROSS_DEVICE', `cannot move ${from} to another link (${to}); copy it instead`);
    const { link, storeId } = source;
    const fromKey = keyOfPath(source.route.innerPath);
    const toKey = keyOfPath(target.route.innerPath);
    if (fromKey === toKey) return;
    const [sourceKind, targetKind] = await Promise.all([this.#paths.kindOf(source.route), this.#paths.kindOf(target.route)]);
    if (!sourceKind) throw new FsError('FS_NOT_FOUND', `no such file or folder: ${from}`);
    const writes = this.#paths.writes!;
    try {
      if (sourceKind === 'dir') {
        if (targetKind === 'file') throw new FsError('FS_NOT_A_DIRECTORY', `${to} is a file; a folder cannot replace it`);
        if (toKey.startsWith(`${fromKey}/`)) throw new FsError('FS_INVALID_ARGUMENT', `cannot move ${from} into itself (${to})`);
        if (targetKind === 'dir' && !(await this.#paths.isEmptyFolder(target.route))) throw new FsError('FS_NOT_EMPTY', `folder ${to} is not empty`);
        await writes.renameTree(storeId, `${fromKey}/`, `${toKey}/`);
      } else {
        if (targetKind === 'dir') throw new FsError('FS_IS_A_DIRECTORY', `${to} is a folder; a file cannot replace it`);
        if (!(await writes.rename(storeId, fromKey, toKey))) throw new FsError('FS_NOT_FOUND', `no such file: ${from}`);
      }
    } finally {
      // A folder rename changes every path below it: forget them all.
      if (sourceKind === 'dir') link.namespace.invalidateAll();
      link.namespace.invalidate(source.route.innerPath);
      link.namespace.invalidate(target.route.innerPath);
    }
  }

  /** See Filesystem.mkdir. */
  async mkdir(path: string): Promise<void> {
    const { route, link, store } = this.#paths.writable(path);
    const existing = await link.namespace.lookup(route.innerPath).catch(() => undefined);
    if (existing) throw new FsError('FS_EXISTS', `${path} already exists`);
    await store.put(`${keyOfPath(route.innerPath)}/`, Buffer.alloc(0));
    link.namespace.invalidate(route.innerPath);
  }

  /** See Filesystem.rmdir. */
  async rmdir(path: string): Promise<void> {
    const { route, link, store } = this.#paths.writable(path);
    const entry = await link.namespace.lookup(route.innerPath);
    if (entry.kind !== 'dir') throw new FsError('FS_NOT_A_DIRECTORY', `not a folder: ${path}`);
    if (!(await this.#paths.isEmptyFolder(route))) throw new FsError('FS_NOT_EMPTY', `folder ${path} is not empty`);
    await store.delete(`${keyOfPath(route.innerPath)}/`);
    link.namespace.invalidate(route.innerPath);
  }
}
