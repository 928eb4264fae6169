/** Mount paths and the object keys they name: the rules of what a file name may be. */

/** NAME_MAX of Linux: no program can pass a longer name to open(2) on another file system. */
export const NAME_MAX_BYTES = 255;
/** S3's limit on a key (the store URL's prefix included), in UTF-8 bytes. */
export const KEY_MAX_BYTES = 1024;

/** `/a//b/` → `/a/b`; the root is `/`. Paths from FUSE are already absolute and clean. */
export function normalisePath(path: string): string {
  // Most paths come normal already (from the kernel, from the namespace itself): kept as they are.
  if (path.charCodeAt(0) === 47 && (path.length === 1 || path.charCodeAt(path.length - 1) !== 47) && !path.includes('//')) return path;
  const parts = path.split('/').filter((p) => p.length > 0);
  return `/${parts.join('/')}`;
}

/**
 * The store key of a path inside a link (`/a/b.txt` → `a/b.txt`, relative to the link's
 * prefix); `asFolder` gives the prefix of its contents (`/a` → `a/`, `/` → ``). The one place a
 * mount path becomes a key: the namespace, the file system and jobs all call this.
 */
export function keyOfPath(path: string, asFolder = false): string {
  const key = normalisePath(path).slice(1);
  return asFolder && key !== '' ? `${key}/` : key;
}

/** The order of names in a listing: by UTF-16 code unit, as S3 lists keys of ASCII names. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Where `name` is in `sorted` (ordered by `compareNames` of `nameOf`): its index if there
 * (`found`), else the index it would take.
 */
export function searchName<T>(sorted: readonly T[], name: string, nameOf: (item: T) => string): { index: number; found: boolean } {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareNames(nameOf(sorted[middle]!), name) < 0) low = middle + 1;
    else high = middle;
  }
  return { index: low, found: low < sorted.length && nameOf(sorted[low]!) === name };
}

/** The folder holding `path` (`/` for a name at the root). */
export function parentOf(path: string): string {
  const cut = path.lastIndexOf('/');
  return cut <= 0 ? '/' : path.slice(0, cut);
}

/** A name a file can have: no `/` or NUL, not `.` or `..`, at most NAME_MAX bytes. */
export function isFileName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0') && Buffer.byteLength(name) <= NAME_MAX_BYTES;
}

/** The bytes a store URL's prefix adds to keys: `s3://bucket/a/b` stores `x` as `a/b/x`. A local store has none. */
export function keyPrefixBytes(storeUrl: string): number {
  const match = /^s3:\/\/[^/]+\/(.+?)\/?$/.exec(storeUrl);
  return match ? Buffer.byteLength(match[1]!) + 1 : 0;
}

/** A path short enough for an error message. */
export function abbreviate(path: string): string {
  return path.length > 120 ? `${path.slice(0, 100)}... (${Buffer.byteLength(path)} bytes)` : path;
}

/** A key every segment of which can be a file name (else the mount does not show it). */
export function isRepresentable(key: string): boolean {
  return key.split('/').every(isFileName);
}
