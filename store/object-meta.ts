/**
 * POSIX attributes kept with an object as user metadata, under the names s3fs writes
 * (`x-amz-meta-mode`, `-uid`, `-gid`, `-mtime`), so a bucket written by s3fs shows its modes
 * through Strata and the other way round. Every field is optional: an object written by a
 * tool that sets none has none, and the mount shows its defaults.
 */
export interface ObjectMeta {
  /** The whole `st_mode`, file type bits included (s3fs writes `33188` for a 0644 file, `41471` for a symlink). */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  /** Modification time in whole seconds since the epoch, when one was set explicitly (touch -d, cp -p). */
  readonly mtime?: number;
}

/** `S_IFMT` and the file types Strata stores. */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

/** Largest value a 32-bit uid, gid or mode can take; larger ones are not metadata we wrote. */
const MAX_U32 = 0xffff_ffff;

/** The metadata as S3 user-metadata entries (the SDK adds the `x-amz-meta-` prefix). */
export function metaToHeaders(meta: ObjectMeta | undefined): Record<string, string> | undefined {
  if (!meta) return undefined;
  const out: Record<string, string> = {};
  if (meta.mode !== undefined) out.mode = String(meta.mode);
  if (meta.uid !== undefined) out.uid = String(meta.uid);
  if (meta.gid !== undefined) out.gid = String(meta.gid);
  if (meta.mtime !== undefined) out.mtime = String(meta.mtime);
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * Reads the entries back; a value that is not a whole number in range is ignored (another
 * tool's metadata under the same name must not break a stat). s3fs may write a fractional mtime.
 */
export function metaFromHeaders(headers: Record<string, string> | undefined): ObjectMeta | undefined {
  if (!headers) return undefined;
  const whole = (name: string): number | undefined => {
    const text = headers[name];
    if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
    const value = Number(text.trim());
    return value <= MAX_U32 ? value : undefined;
  };
  const mtimeText = headers.mtime?.trim();
  const mtime = mtimeText !== undefined && /^\d+(\.\d+)?$/.test(mtimeText) ? Math.floor(Number(mtimeText)) : undefined;
  const meta: { mode?: number; uid?: number; gid?: number; mtime?: number } = {};
  const mode = whole('mode');
  if (mode !== undefined) meta.mode = mode;
  const uid = whole('uid');
  if (uid !== undefined) meta.uid = uid;
  const gid = whole('gid');
  if (gid !== undefined) meta.gid = gid;
  if (mtime !== undefined) meta.mtime = mtime;
  return Object.keys(meta).length > 0 ? meta : undefined;
}

/** Whether the metadata says the object is a symbolic link (its bytes are the target). */
export function isSymlinkMeta(meta: ObjectMeta | undefined): boolean {
  return meta?.mode !== undefined && (meta.mode & S_IFMT) === S_IFLNK;
}
