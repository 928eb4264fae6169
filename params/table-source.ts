import { copyFile, open, stat } from 'node:fs/promises';
import { openStore, StoreError, type OpenStoreOptions } from '../store/index.js';
import { ParamsError } from './params-error.js';
import { parseTableLocation } from './table-destination.js';

/** Store reads are ranged GETs of this size: large enough for throughput, small enough to retry. */
const STORE_READ_BYTES = 64 * 1024 * 1024;

/** A table file found at its source: its size, and a way to copy exactly that file. */
export interface TableSource {
  readonly size: number;
  /**
   * Copies the file to `dest` and fsyncs it. A store object is read with ranged GETs pinned
   * to the ETag seen when it was found, so a table replaced in the store meanwhile fails
   * (STORE_PRECONDITION_FAILED) instead of mixing versions. Answers where the bytes came from.
   */
  copyTo(dest: string): Promise<'local' | 'store'>;
}

/**
 * Finds the table file `source` names (a local path, `file://` or `s3://` URL) with one
 * stat or HEAD, so a load can choose a tier with room before copying anything.
 * PARAMS_BAD_INPUT for an unreadable path, STORE_NOT_FOUND for a missing object.
 */
export async function openTableSource(source: string, storeOptions: OpenStoreOptions = {}): Promise<TableSource> {
  const location = parseTableLocation(source);
  const unreadable = (path: string, err: unknown) => new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  if (location.kind === 'local') {
    const { path } = location;
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      throw unreadable(path, err);
    }
    return {
      size,
      async copyTo(dest) {
        try {
          await copyFile(path, dest);
        } catch (err) {
          throw unreadable(path, err);
        }
        const handle = await open(dest, 'r+');
        await handle.sync().finally(() => handle.close());
        return 'local';
      },
    };
  }
  const store = openStore(location.storeUrl, storeOptions);
  const info = await store.head(location.key);
  if (!info) throw new StoreError('STORE_NOT_FOUND', `${source}: no such object`);
  return {
    size: info.size,
    async copyTo(dest) {
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
    },
  };
}
