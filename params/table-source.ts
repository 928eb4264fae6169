import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { OpenStoreOptions } from '../store/index.js';
import { ParamsError } from './params-error.js';
import { parseTableLocation } from './table-destination.js';

/** Local copies go in pieces of this size: a libuv thread is busy for one piece at a time. */
const LOCAL_COPY_BYTES = 8 * 1024 * 1024;
/**
 * A local table is copied at disk speed (hundreds of MB/s); one that has not arrived after
 * this long sits on a hung or very slow file system, and the load fails instead of holding
 * a thread and the table's name.
 */
const LOCAL_COPY_DEADLINE_MS = 10 * 60_000;

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
    const size = await regularFileSize(path, unreadable);
    return {
      size,
      async copyTo(dest) {
        await copyRegularFile(path, size, dest, unreadable);
        return 'local';
      },
    };
  }
  // The store's modules load here, not with the parameter tables: a recovery opens local
  // files only, and its first lookup does not wait for the S3 client and URL schema.
  const { openStore, StoreError } = await import('../store/index.js');
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

type Unreadable = (path: string, err: unknown) => ParamsError;

/**
 * Opens `path` without blocking (O_NONBLOCK: opening a FIFO for reading would otherwise wait
 * for a writer, holding a libuv thread for ever) and checks on the open file, not the name,
 * that it is a regular file: a FIFO, a device or a socket is refused with PARAMS_BAD_INPUT.
 */
async function openRegular(path: string, unreadable: Unreadable): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw unreadable(path, err);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${path}: not a regular file (a table is loaded from a file, a file:// or an s3:// URL)`);
    return { handle, size: info.size };
  } catch (err) {
    await handle.close();
    throw err instanceof ParamsError ? err : unreadable(path, err);
  }
}

async function regularFileSize(path: string, unreadable: Unreadable): Promise<number> {
  const { handle, size } = await openRegular(path, unreadable);
  await handle.close();
  return size;
}

/** Copies the `size` bytes of the regular file at `path` to `dest` in pieces, fsyncs it; bounded by LOCAL_COPY_DEADLINE_MS. */
async function copyRegularFile(path: string, size: number, dest: string, unreadable: Unreadable): Promise<void> {
  const { handle: source, size: now } = await openRegular(path, unreadable);
  const started = Date.now();
  try {
    if (now !== size) throw new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${path}: it changed size while loading (${size} then ${now} bytes)`);
    const target = await open(dest, 'w');
    try {
      const piece = Buffer.allocUnsafe(Math.min(LOCAL_COPY_BYTES, Math.max(1, size)));
      for (let at = 0; at < size; ) {
        if (Date.now() - started > LOCAL_COPY_DEADLINE_MS) throw new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${path}: copying took longer than ${LOCAL_COPY_DEADLINE_MS / 60_000} minutes`);
        let read: number;
        try {
          ({ bytesRead: read } = await source.read(piece, 0, Math.min(piece.length, size - at), at));
        } catch (err) {
          throw unreadable(path, err);
        }
        if (read === 0) throw new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${path}: it ended at ${at} of ${size} bytes`);
        await target.write(piece, 0, read, at);
        at += read;
      }
      await target.sync();
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}
