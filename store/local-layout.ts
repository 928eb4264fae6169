import type { BigIntStats } from 'node:fs';
import { chmod, chown, stat, utimes, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFolders, writeDurably } from '../durable/index.js';
import { StoreError } from './errors.js';
import type { ObjectInfo } from './object-store.js';
import { S_IFLNK, S_IFMT, type ObjectMeta } from './object-meta.js';

/** Folder of multipart uploads in progress, at the top of the store directory; never listed. */
export const MULTIPART_DIR = '.strata-multipart';
/** Names of temporary files of writes in progress; renamed into place when complete, never listed. */
export const TEMP_PREFIX = '.strata-tmp-';
/** ETag of a folder marker: a directory has no bytes whose change it could track. */
export const FOLDER_ETAG = 'folder';

/**
 * Where the objects of a local store live: keys to paths under the store directory (keys that
 * cannot be paths do not exist), and the file facts an object is described by.
 */
export class LocalLayout {
  readonly root: string;
  readonly url: string;

  constructor(root: string) {
    this.root = root;
    this.url = `file://${root}`;
  }

  /** The path of a key, or undefined when no object can have that key here. */
  readPath(key: string): string | undefined {
    return keyProblem(key) === undefined ? join(this.root, key) : undefined;
  }

  /** The path of a key to write, or STORE_ACCESS_DENIED naming what is wrong with it. */
  writePath(key: string): string {
    const problem = keyProblem(key);
    if (problem !== undefined) throw new StoreError('STORE_ACCESS_DENIED', `key "${key}" cannot be stored in ${this.url}: ${problem}`);
    return join(this.root, key);
  }

  notFound(key: string): StoreError {
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

export function isReservedName(name: string, topLevel: boolean): boolean {
  return name.startsWith(TEMP_PREFIX) || (topLevel && name === MULTIPART_DIR);
}

export function objectInfo(key: string, info: BigIntStats): ObjectInfo {
  const meta: ObjectMeta = { mode: Number(info.mode), uid: Number(info.uid), gid: Number(info.gid) };
  return { key, size: Number(info.size), etag: etagOf(info), lastModified: mtimeOf(info), meta };
}

/** Sets a file's mode bits, owner and modification time from `meta` (what it leaves out stays). */
export async function applyMeta(path: string, meta: ObjectMeta | undefined): Promise<void> {
  if (!meta) return;
  if (meta.mode !== undefined && (meta.mode & S_IFMT) !== S_IFLNK) await chmod(path, meta.mode & 0o7777);
  if (meta.uid !== undefined || meta.gid !== undefined) await chown(path, meta.uid ?? -1, meta.gid ?? -1);
  if (meta.mtime !== undefined) await utimes(path, meta.mtime, meta.mtime);
}

export function etagOf(info: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${info.ino.toString(16)}-${info.size.toString(16)}-${info.mtimeNs.toString(16)}`;
}

export function mtimeOf(info: BigIntStats): Date {
  return new Date(Number(info.mtimeNs / 1_000_000n));
}

export function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export function ioError(err: unknown, key: string): StoreError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return new StoreError('STORE_ACCESS_DENIED', `permission denied for ${key}: ${(err as Error).message}`, { cause: err });
  return new StoreError('STORE_IO', `local store I/O error on ${key}: ${(err as Error).message}`, { cause: err });
}

/** Writes the object file `path` through `fill` with the durable write protocol (durable/index.ts), creating its folder. */
export async function writeAtomically(path: string, key: string, fill: (handle: FileHandle, temp: string) => Promise<void>): Promise<{ etag: string }> {
  try {
    await makeFolders(dirname(path));
    await writeDurably(path, fill, { tempName: `${TEMP_PREFIX}${randomBytes(6).toString('hex')}` });
    return { etag: etagOf(await stat(path, { bigint: true })) };
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw ioError(err, key);
  }
}
