import { Worker } from 'node:worker_threads';
import { ERROR_CATALOGUE, StrataError, type ErrorCode } from '../../errors/index.js';
import { ClusterError } from './cluster-error.js';
import type { ShardLoadReport } from './shard-loader.js';
import type { ShardWriteJob, ShardWriteResult } from './shard-writer-worker.js';

/**
 * Writes shard tables (writeShardTable) on a thread of its own. Sorting a million rows and
 * building their index is seconds of CPU on a loaded machine; on the event loop that
 * starved the member's lease keepalives until etcd expired it mid-prepare
 * (bench/params-cluster), and stalled its lookups. The thread starts at the first job and
 * stays (starting one per prepare, with its TypeScript loader, took seconds under load);
 * it does not keep the process alive. A failed write's error keeps its code.
 */
export class ShardWriter {
  #worker: Worker | undefined;
  #nextId = 0;
  readonly #pending = new Map<number, { resolve: (r: ShardLoadReport) => void; reject: (e: Error) => void }>();

  write(job: ShardWriteJob): Promise<ShardLoadReport> {
    const worker = this.#start();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, job });
    });
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL('./shard-writer-boot.mjs', import.meta.url));
    worker.unref();
    worker.on('message', (result: ShardWriteResult) => {
      const waiter = this.#pending.get(result.id);
      this.#pending.delete(result.id);
      if (this.#pending.size === 0) worker.unref();
      if (!waiter) return;
      if (result.ok) waiter.resolve(result.report);
      else if (result.code !== undefined && result.code in ERROR_CATALOGUE) waiter.reject(new StrataError(result.code as ErrorCode, result.message));
      else waiter.reject(new ClusterError('CLUSTER_SWITCH_ABORTED', result.message));
    });
    const fail = (err: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const waiter of this.#pending.values()) waiter.reject(err);
      this.#pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new ClusterError('CLUSTER_SWITCH_ABORTED', `the shard-writer thread exited with ${code}`)));
    this.#worker = worker;
    return worker;
  }
}
