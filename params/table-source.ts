import { copyFile, open, stat } from 'node:fs/promises';
import { openStore, StoreError, type OpenStoreOptions } from '../store/index.js';
import { ParamsError } from './params-error.js';
import { parseTableLocation } from './table-destination.js';

/** Store reads are ranged GETs of this size: large enough for throughput, small enough to retry. */
const STORE_READ_BYTES = 64 * 1024 * 1024;

/**
 * The size in bytes of the table file `source` names (a stat, or a HEAD in its store),
 * so a load can choose a tier with room before copying anything.
 */
export async function tableSourceSize(source: string, storeOptions: OpenStoreOptions = {}): Promise<number> {
  const location = parseTableLocation(source);
  if (location.kind === 'local') {
    try {
      return (await stat(location.path)).size;
    } catch (err) {
      throw new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${location.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    }
  }
  const info = await openStore(location.storeUrl, storeOptions).head(location.key);
  if (!info) throw new StoreError('STORE_NOT_FOUND', `${source}: no such object`);
  return info.size;
}

/**
 * Copies the table file named by `source` (a local path, `file://` or `s3://` URL) to
 * `dest` and fsyncs it. A store object is read with ranged GETs pinned to its ETag, so a
 * table replaced in the store during the copy fails (STORE_PRECONDITION_FAILED) instead
 * of mixing versions. Answers where the bytes came from ('local' or 'store').
 */
export async function fetchTableFile(source: string, dest: string, storeOptions: OpenStoreOptions = {}): Promise<'local' | 'store'> {
  const location = parseTableLocation(source);
  if (location.kind === 'local') {
    try {
      await copyFile(location.path, dest);
    } catch (err) {
      throw new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${location.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    }
    const handle = await open(dest, 'r+');
    await handle.sync().finally(() => handle.close());
    return 'local';
  }
  const store = openStore(location.storeUrl, storeOptions);
  const info = await store.head(location.key);
  if (!info) throw new StoreError('STORE_NOT_FOUND', `${source}: no such object`);
  const handle = await open(dest, 'w');
  try {
    for (let at = 0; at < info.size; ) {
      const { body } = await store.getRange(location.key, at, Math.min(STORE_READ_BYTES, info.size - at), { ifMatch: info.etag });
      if (body.length === 0) throw new StoreError('STORE_IO', `${source}: the store returned no bytes at offset ${at} of ${info.size}`);
      await handle.write(body, 0, body.length, at);
      at += body.length;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return 'store';
}
