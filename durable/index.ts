import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** Prefix of files being written; a crash can leave them behind, and their owners delete them at start. */
export const TEMP_PREFIX = '.tmp-';

/** fsyncs a folder, making the creation, rename or removal of names in it durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface DurableWriteOptions {
  /**
   * Name of the temporary file in `path`'s folder. Default `.tmp-<name>-<random>`; a caller
   * whose folder is listed names it with a prefix its listings and start-up cleanup skip.
   */
  readonly tempName?: string | undefined;
  /**
   * `false` leaves the folder unsynced: the file's bytes are durable, but a crash may lose
   * the rename (for a caller that syncs the folder later or can do without). Default `true`.
   */
  readonly syncFolder?: boolean | undefined;
}

/**
 * The durable write protocol: `fill` writes a new temporary file in `path`'s folder (created
 * exclusively), which is fsync'd, closed and renamed over `path`, then the folder is fsync'd.
 * After a crash `path` holds the old or the new contents, never a mix. On failure the
 * temporary file is removed and the error rethrown; `path` is unchanged.
 */
export async function writeDurably(path: string, fill: (handle: FileHandle, temp: string) => Promise<void>, options: DurableWriteOptions = {}): Promise<void> {
  const folder = dirname(path);
  const temp = join(folder, options.tempName ?? `${TEMP_PREFIX}${basename(path)}-${randomBytes(4).toString('hex')}`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await fill(handle, temp);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  if (options.syncFolder !== false) await syncDir(folder);
}

/**
 * Renames `from` over `to` (both in one folder) and fsyncs the folder: for a temporary made
 * some other way than by writing bytes (a symbolic link).
 */
export async function renameDurably(from: string, to: string): Promise<void> {
  await rename(from, to);
  await syncDir(dirname(to));
}

/**
 * Replaces `path` with `body` so that after a crash the file holds the old or the new
 * contents, never a mix (see `writeDurably`).
 */
export async function writeFileDurably(path: string, body: string): Promise<void> {
  await writeDurably(path, (handle) => handle.writeFile(body));
}

/** Removes `path` (missing is fine) and makes the removal durable. */
export async function removeFileDurably(path: string): Promise<void> {
  await rm(path, { force: true });
  await syncDir(dirname(path));
}

/**
 * Creates the folder `path` and the missing folders above it (`mkdir -p`); a folder that exists
 * already is fine, a file in its place fails with EEXIST. Not Node's recursive mkdir, which
 * loops forever where mkdir answers ENOENT for a missing folder inside an existing one (under
 * /proc or /sys: `--state-dir /proc/x` hung the daemon). Here that ENOENT is the answer.
 */
export async function makeFolders(path: string, mode?: number): Promise<void> {
  await makeFolder(resolve(path), mode, false);
}

/** mkdir of `folder`; its parent made first when missing, unless `parentMade` says it was just made. */
async function makeFolder(folder: string, mode: number | undefined, parentMade: boolean): Promise<void> {
  try {
    await mkdir(folder, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(folder).then((s) => s.isDirectory(), () => false))) return;
    if (code !== 'ENOENT' || parentMade || dirname(folder) === folder) throw err;
    await makeFolder(dirname(folder), mode, false);
    await makeFolder(folder, mode, true);
  }
}

/** `makeFolders`, synchronously: for a command's set-up before anything runs (its log file). */
export function makeFoldersSync(path: string, mode?: number): void {
  makeFolderSync(resolve(path), mode, false);
}

function makeFolderSync(folder: string, mode: number | undefined, parentMade: boolean): void {
  try {
    mkdirSync(folder, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && isFolderSync(folder)) return;
    if (code !== 'ENOENT' || parentMade || dirname(folder) === folder) throw err;
    makeFolderSync(dirname(folder), mode, false);
    makeFolderSync(folder, mode, true);
  }
}

function isFolderSync(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
