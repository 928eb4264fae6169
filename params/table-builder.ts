import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { makeFolders, syncDir, TEMP_PREFIX } from '../durable/index.js';
import type { OpenStoreOptions } from '../store/index.js';
import { ParamsError } from './params-error.js';
import { parseTableLocation } from './table-destination.js';
import { TableWriter } from './table-writer.js';

export interface BuildOptions {
  readonly dim: number;
  readonly shards?: number;
  readonly strict?: boolean;
  readonly seed?: number;
  /** Called after every read batch with input bytes done and total. */
  readonly onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** For an s3:// destination. */
  readonly store?: OpenStoreOptions;
}

export interface BuildReport {
  readonly records: number;
  readonly keys: number;
  readonly duplicates: number;
  /** Size of the table file written. */
  readonly bytes: number;
  readonly dest: string;
}

/** Input is read in batches of about this many bytes (rounded down to whole records). */
const READ_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Turns a file of `(uint64 key, dim x float32)` little-endian records into the served
 * format at `dest` (a local path, `file://` or `s3://` URL). Reads the input once, in
 * order. The table appears at `dest` complete or not at all (temp file, fsync, rename;
 * for a store, one put of the finished file).
 */
export async function buildTable(input: string, dest: string, options: BuildOptions): Promise<BuildReport> {
  const { dim } = options;
  if (!Number.isInteger(dim) || dim < 1) throw new ParamsError('PARAMS_BAD_INPUT', `--dim must be a positive integer, got ${dim}`);
  const recordBytes = 8 + 4 * dim;
  const size = await stat(input).then(
    (s) => {
      if (s.isDirectory()) throw new ParamsError('PARAMS_BAD_INPUT', `input ${input} is a folder; give the records file`);
      return s.size;
    },
    (err: NodeJS.ErrnoException) => {
      throw new ParamsError('PARAMS_BAD_INPUT', `cannot read input ${input}: ${err.code === 'ENOENT' ? 'it does not exist' : (err.code ?? err.message)}`, { cause: err });
    },
  );
  if (size % recordBytes !== 0) {
    throw new ParamsError('PARAMS_BAD_INPUT', `input ${input} is ${size} bytes, not a multiple of the ${recordBytes}-byte record (8-byte key + ${dim} x float32); is --dim right?`);
  }
  const records = size / recordBytes;
  const location = parseTableLocation(dest);
  // Found before the input is read, not by the final rename (EISDIR) after the whole build.
  if (location.kind === 'local' && (await stat(location.path).then((s) => s.isDirectory(), () => false))) {
    throw new ParamsError('PARAMS_BAD_INPUT', `DEST ${location.path} is a folder; give the table's file name, such as ${join(location.path, 'table.params')}`);
  }
  const tempDir = location.kind === 'local' ? dirname(location.path) : tmpdir();
  await makeFolders(tempDir);
  const temp = join(tempDir, `${TEMP_PREFIX}${location.kind === 'local' ? basename(location.path) : 'params'}-${randomBytes(4).toString('hex')}`);
  const writer = new TableWriter(temp, { dim, shards: options.shards ?? 1, maxRecords: records, strict: options.strict, seed: options.seed });
  try {
    const handle = await open(input, 'r');
    try {
      const batch = Buffer.allocUnsafeSlow(Math.max(1, Math.floor(READ_BATCH_BYTES / recordBytes)) * recordBytes);
      // Records are 8 + 4*dim bytes, so every key starts on a 4-byte boundary of the batch.
      const words = new Uint32Array(batch.buffer, batch.byteOffset, batch.length / 4);
      const recordWords = recordBytes / 4;
      let done = 0;
      while (done < size) {
        const n = await readFully(handle, batch, Math.min(batch.length, size - done), done);
        if (n === 0) throw new ParamsError('PARAMS_BAD_INPUT', `input ${input} shrank while it was read`);
        if (n % recordBytes !== 0) throw new ParamsError('PARAMS_BAD_INPUT', `input ${input} changed size while it was read`);
        const count = n / recordBytes;
        for (let i = 0, w = 0; i < count; i++, w += recordWords) writer.add(words[w]!, words[w + 1]!, batch, w * 4 + 8);
        done += n;
        options.onProgress?.(done, size);
      }
    } finally {
      await handle.close();
    }
    const result = writer.finish();
    if (location.kind === 'local') {
      await rename(temp, location.path);
      await syncDir(dirname(location.path));
    } else {
      const { openStore } = await import('../store/index.js'); // loaded only for a table built into a store
      await openStore(location.storeUrl, options.store ?? {}).put(location.key, createReadStream(temp));
      await rm(temp, { force: true });
    }
    return { records, keys: result.keys, duplicates: result.duplicates, bytes: result.bytes, dest };
  } catch (err) {
    writer.abort();
    await rm(temp, { force: true });
    throw err;
  }
}

/** Reads `length` bytes at `position` (fewer only at end of file). */
async function readFully(handle: import('node:fs/promises').FileHandle, into: Buffer, length: number, position: number): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await handle.read(into, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}
