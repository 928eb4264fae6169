import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

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

/**
 * Replaces `path` with `body` so that after a crash the file holds the old or the new
 * contents, never a mix: temp file in the same folder, fsync, rename, fsync of the folder.
 */
export async function writeFileDurably(path: string, body: string): Promise<void> {
  const temp = join(dirname(path), `${TEMP_PREFIX}${basename(path)}-${randomBytes(4).toString('hex')}`);
  try {
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(body);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

/** Removes `path` (missing is fine) and makes the removal durable. */
export async function removeFileDurably(path: string): Promise<void> {
  await rm(path, { force: true });
  await syncDir(dirname(path));
}
