import { parentPort } from 'node:worker_threads';
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

export type ShardWriteResult = { id: number } & ({ ok: true; report: ShardLoadReport } | { ok: false; message: string; code: string | undefined });

// Jobs come one at a time per message and may overlap (a publish and a repair of two tables).
parentPort!.on('message', async ({ id, job }: { id: number; job: ShardWriteJob }) => {
  let result: ShardWriteResult;
  try {
    const table = await openRangedTable(job.source, job.store, job.etag);
    try {
      result = { id, ok: true, report: await writeShardTable(table, job.shards, job.dest) };
    } finally {
      await table.close();
    }
  } catch (err) {
    result = { id, ok: false, message: (err as Error).message, code: (err as { code?: string }).code };
  }
  parentPort!.postMessage(result);
});
