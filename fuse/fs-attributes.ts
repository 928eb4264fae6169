import { createHash } from 'node:crypto';
import type { NamespaceEntry } from '../namespace/index.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, isSymlinkMeta, type ObjectMeta } from '../store/index.js';

/**
 * Attributes as the kernel sees them: what `stat` and `statfs` show for an entry of the
 * namespace, a staged file or an open handle, from the object's metadata and the mount's
 * defaults (owner, `--file-mode`, `--dir-mode`).
 */

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

/** Permission bits shown for objects that carry none, unless `--file-mode`/`--dir-mode` say otherwise. */
export const DEFAULT_FILE_MODE = 0o644;
export const DEFAULT_DIR_MODE = 0o755;
/** `st_blocks` counts 512-byte units whatever the block size. */
const STAT_BLOCK_UNIT = 512;
/** Preferred I/O size reported to programs such as `cp` and `dd`: FUSE's 128 KiB request size. */
const PREFERRED_IO_SIZE = 128 * 1024;
/** statfs figures: an object store has no fixed size, so report plenty of room (fits FUSE's 32-bit fields). */
const STATFS_BLOCKS = 0x7fff_ffff;
/** NAME_MAX of Linux; S3 allows longer keys but no Linux program can open a longer name. */
const NAME_MAX = 255;

export interface AttributeDefaults {
  readonly uid?: number | undefined;
  readonly gid?: number | undefined;
  readonly fileMode?: number | undefined;
  readonly dirMode?: number | undefined;
}

/** Builds the `FileStat` of files and folders with the mount's defaults for what an object does not carry. */
export class FsAttributes {
  readonly #uid: number;
  readonly #gid: number;
  /** The mode of a file whose object carries none (S_IFREG and the permission bits). */
  readonly fileMode: number;
  readonly #dirMode: number;
  readonly #mountedAt = new Date();

  constructor(defaults: AttributeDefaults) {
    this.#uid = defaults.uid ?? process.getuid?.() ?? 0;
    this.#gid = defaults.gid ?? process.getgid?.() ?? 0;
    this.fileMode = S_IFREG | (defaults.fileMode ?? DEFAULT_FILE_MODE);
    this.#dirMode = S_IFDIR | (defaults.dirMode ?? DEFAULT_DIR_MODE);
  }

  /** The stat of a namespace entry: a folder shows the mount's owner, mode and mount time. */
  stat(entry: NamespaceEntry): FileStat {
    if (entry.kind === 'dir') {
      return this.statOf(this.#dirMode, 0, this.#mountedAt, 2);
    }
    const { meta } = entry;
    const mtime = meta?.mtime !== undefined ? new Date(meta.mtime * 1000) : versionedMtime(entry.lastModified, entry.ref.etag);
    return this.statOf(this.modeOf(meta), entry.ref.size, mtime, 1, meta);
  }

  /** The type bits (`S_IFMT`) of what `stat(entry)` shows, without building the stat (a listing asks this per name). */
  typeOf(entry: NamespaceEntry): number {
    return entry.kind === 'dir' ? S_IFDIR : this.modeOf(entry.meta) & S_IFMT;
  }

  /** The file's mode: its object's (a regular file unless it says a link), else the mount's default. */
  modeOf(meta: ObjectMeta | undefined): number {
    if (meta?.mode === undefined) return this.fileMode;
    if (isSymlinkMeta(meta)) return S_IFLNK | 0o777;
    return S_IFREG | (meta.mode & 0o7777);
  }

  statOf(mode: number, size: number, mtime: Date, nlink: number, meta?: ObjectMeta): FileStat {
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
