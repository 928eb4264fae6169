import { rm } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { ParamsError, type ParamsErrorCode } from './params-error.js';

/** What a compaction thread is asked to write (see compaction-worker.ts). */
export interface CompactionJob {
  readonly basePath: string;
  /** The overlay whose first `records` records are folded in; none for a table without one. */
  readonly overlayPath?: string;
  readonly records: number;
  /** CRC-32C of those records, as the overlay's commit record holds it: the log is checked as it is read. */
  readonly logCrc: number;
  /** A delta body applied on top (a delta too large for the overlay). */
  readonly extra?: Uint8Array;
  /** The new table file, written whole and fsynced; the caller renames it. */
  readonly temp: string;
}

export type CompactionResult = { readonly keys: number; readonly bytes: number; readonly error?: undefined } | { readonly error: string; readonly code?: string };

/** A compaction in progress: `done` settles with the new file's keys and size; `cancel` stops the thread and removes the temp file. */
export interface RunningCompaction {
  readonly done: Promise<{ keys: number; bytes: number }>;
  cancel(): Promise<void>;
}

/**
 * Folds a table's overlay into a new table file on a thread of its own, so lookups (on the
 * event loop or lookup threads) and in-place deltas go on meanwhile; it costs a rewrite of
 * the table, like a copy-on-write delta, but off the paths that answer requests.
 */
export function startCompaction(job: CompactionJob): RunningCompaction {
  const worker = new Worker(new URL('./compaction-worker-boot.mjs', import.meta.url), { workerData: job });
  let cancelled = false;
  const done = new Promise<{ keys: number; bytes: number }>((resolve, reject) => {
    worker.once('message', (reply: CompactionResult) => {
      if (reply.error === undefined) return resolve({ keys: reply.keys, bytes: reply.bytes });
      const code = reply.code === 'ENOSPC' || reply.code === 'EDQUOT' ? 'PARAMS_NO_SPACE' : ((reply.code?.startsWith('PARAMS_') ? reply.code : 'INTERNAL') as ParamsErrorCode);
      reject(new ParamsError(code, `compaction of ${job.basePath}: ${reply.error}`));
    });
    worker.once('error', (err) => reject(new ParamsError('INTERNAL', `compaction of ${job.basePath} failed: ${err.message}`, { cause: err })));
    worker.once('exit', (code) => reject(new ParamsError('INTERNAL', cancelled ? 'compaction cancelled' : `compaction thread exited (${code}) without an answer`)));
  }).catch(async (err: unknown) => {
    await rm(job.temp, { force: true });
    throw err;
  });
  return {
    done,
    cancel: async () => {
      cancelled = true;
      await worker.terminate();
      await done.catch(() => undefined);
    },
  };
}
