import { keyOfPath } from '../namespace/index.js';
import type { ObjectReader } from '../cache/index.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, isSymlinkMeta, type ObjectMeta } from '../store/index.js';
import type { FileStat } from './fs-attributes.js';
import { FsError } from './fs-error.js';
import type { FsPaths } from './fs-paths.js';

/**
 * Attributes kept with the object (chmod, chown, utimens, as `x-amz-meta-*`) and symbolic
 * links (an object holding the target, with a link mode). Folders accept attribute changes
 * and keep none: they show the mount's owner and `--dir-mode`.
 */

/** PATH_MAX of Linux: the longest target a symbolic link may hold. */
const PATH_MAX = 4096;
/** chown's "leave unchanged" (-1 as an unsigned 32-bit id). */
const ID_UNCHANGED = 0xffff_ffff;

export class MetadataOps {
  readonly #paths: FsPaths;
  readonly #reader: ObjectReader;
  readonly #getattr: (path: string) => Promise<FileStat>;

  constructor(paths: FsPaths, reader: ObjectReader, getattr: (path: string) => Promise<FileStat>) {
    this.#paths = paths;
    this.#reader = reader;
    this.#getattr = getattr;
  }

  /** See Filesystem.chmod. */
  async chmod(path: string, mode: number): Promise<void> {
    const current = await this.#getattr(path);
    if ((current.mode & S_IFMT) === S_IFDIR) return this.#folderAttributes(path);
    await this.#setMeta(path, { mode: S_IFREG | (mode & 0o7777) });
  }

  /** See Filesystem.chown. */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    const current = await this.#getattr(path);
    if ((current.mode & S_IFMT) === S_IFDIR) return this.#folderAttributes(path);
    const patch: { uid?: number; gid?: number } = {};
    if (uid !== ID_UNCHANGED && uid >= 0) patch.uid = uid;
    if (gid !== ID_UNCHANGED && gid >= 0) patch.gid = gid;
    if (patch.uid !== undefined || patch.gid !== undefined) await this.#setMeta(path, patch);
  }

  /** See Filesystem.utimens. */
  async utimens(path: string, mtime: Date): Promise<void> {
    const current = await this.#getattr(path);
    if ((current.mode & S_IFMT) === S_IFDIR) return this.#folderAttributes(path);
    await this.#setMeta(path, { mtime: Math.floor(mtime.getTime() / 1000) });
  }

  /** See Filesystem.symlink. */
  async symlink(target: string, path: string): Promise<void> {
    const { route, link, storeId } = this.#paths.writable(path);
    const body = Buffer.from(target, 'utf8');
    if (body.length === 0 || body.length >= PATH_MAX) throw new FsError('FS_INVALID_ARGUMENT', `a link target must be 1 to ${PATH_MAX - 1} bytes (${path})`);
    if (await this.#paths.kindOf(route)) throw new FsError('FS_EXISTS', `${path} already exists`);
    try {
      const key = keyOfPath(route.innerPath);
      const meta = { mode: S_IFLNK | 0o777 };
      const etag = await this.#paths.writes!.writeObject(storeId, key, body, meta);
      // Listings carry no attributes: remember that this version is a link.
      link.namespace.learn({ storeId: link.namespace.storeId, key, etag, size: body.length }, meta);
    } finally {
      link.namespace.invalidate(route.innerPath);
    }
  }

  /** See Filesystem.readlink. */
  async readlink(path: string): Promise<string> {
    const route = this.#paths.route(path);
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

  async #setMeta(path: string, patch: ObjectMeta): Promise<void> {
    const { route, link, storeId } = this.#paths.writable(path);
    try {
      if (!(await this.#paths.writes!.setMeta(storeId, keyOfPath(route.innerPath), patch))) throw new FsError('FS_NOT_FOUND', `no such file: ${path}`);
    } finally {
      link.namespace.invalidate(route.innerPath);
    }
  }

  /** Folders show the mount's owner and `--dir-mode`: their attributes are accepted and not kept. */
  async #folderAttributes(path: string): Promise<void> {
    this.#paths.writable(path);
  }
}
