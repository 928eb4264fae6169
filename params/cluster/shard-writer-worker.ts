import { parentPort, workerData } from 'node:worker_threads';
import type { OpenStoreOptions } from '../../store/index.js';
import { openRangedTable, writeShardTable, type ShardLoadReport } from './shard-loader.js';

/** What the shard-writer thread is asked to do: one shard table from one source. */
export interface ShardWriteJob {
  readonly source: string;
  readonly etag: string | undefined;
  readonly store: OpenStoreOptions;
  readonly shards: readonly number[];
  readonly dest: string;
}

export type ShardWriteResult = { ok: true; report: ShardLoadReport } | { ok: false; message: string; code: string | undefined };

const job = workerData as ShardWriteJob;
let result: ShardWriteResult;
try {
  const table = await openRangedTable(job.source, job.store, job.etag);
  try {
    result = { ok: true, report: await writeShardTable(table, job.shards, job.dest) };
  } finally {
    await table.close();
  }
} catch (err) {
  result = { ok: false, message: (err as Error).message, code: (err as { code?: string }).code };
}
parentPort!.postMessage(result);
