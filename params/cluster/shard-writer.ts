import { Worker } from 'node:worker_threads';
import { ERROR_CATALOGUE, StrataError, type ErrorCode } from '../../errors/index.js';
import { ClusterError } from './cluster-error.js';
import type { ShardLoadReport } from './shard-loader.js';
import type { ShardWriteJob, ShardWriteResult } from './shard-writer-worker.js';

/**
 * Writes a shard table (writeShardTable) on a thread of its own. Sorting a million rows
 * and building their index is seconds of CPU on a loaded machine; on the event loop that
 * starved the member's lease keepalives until etcd expired it mid-prepare
 * (bench/params-cluster), and stalled its lookups. The error of a failed write keeps its code.
 */
export function writeShardTableOffThread(job: ShardWriteJob): Promise<ShardLoadReport> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./shard-writer-boot.mjs', import.meta.url), { workerData: job });
    let settled = false;
    worker.once('message', (result: ShardWriteResult) => {
      settled = true;
      if (result.ok) resolve(result.report);
      else if (result.code !== undefined && result.code in ERROR_CATALOGUE) reject(new StrataError(result.code as ErrorCode, result.message));
      else reject(new ClusterError('CLUSTER_SWITCH_ABORTED', result.message));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new ClusterError('CLUSTER_SWITCH_ABORTED', `the shard-writer thread exited with ${code} before answering`));
    });
  });
}
