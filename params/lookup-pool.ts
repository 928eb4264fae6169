import { Worker } from 'node:worker_threads';
import { AnswerBuffers, type AnswerLease } from './answer-buffers.js';
import type { FromWorker, ToWorker } from './lookup-messages.js';
import { ParamsError } from './params-error.js';
import { mgetAnswerBytes } from './served-table.js';

/**
 * Batches of at least this many keys are split across the threads that are idle, so one
 * large batch alone is answered by every core; under load (no thread idle) each batch
 * goes whole to the least busy thread, as splitting then only adds messages.
 */
const SPLIT_KEYS = 4096;

interface Pending {
  remaining: number;
  error?: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Worker threads that answer mget batches over their own mappings of the same table
 * files (MAP_SHARED: no extra memory). Keys and answer travel in one SharedArrayBuffer,
 * so nothing is copied back. Each thread handles its messages in order, so a `close`
 * sent after a switch runs after every lookup queued before it.
 */
/**
 * The worker's entry: the compiled module in the built package; from the sources (run
 * through tsx, whose loader a worker does not inherit) a boot file that registers tsx first.
 */
const WORKER_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './lookup-worker-boot.mjs' : './lookup-worker.js', import.meta.url);

export class LookupPool {
  readonly #workers: Worker[];
  readonly #pending = new Map<number, Pending>();
  readonly #opening = new Map<string, { remaining: number; errors: string[]; resolve: () => void; reject: (err: Error) => void }>();
  /** Outstanding lookups per worker, to send a small batch to the least busy one. */
  readonly #busy: number[];
  /** Slabs for leased answers (keys then answer), reused across requests. */
  readonly #slabs = new AnswerBuffers((bytes) => new SharedArrayBuffer(bytes));
  #nextId = 1;
  /** Lookups and opens not yet answered: the threads keep the process alive only while there are some. */
  #inFlight = 0;
  #failed: Error | undefined;
  /** Set by terminate: the threads stay referenced until they have exited. */
  #terminating = false;

  constructor(threads: number) {
    this.#workers = Array.from({ length: threads }, () => new Worker(WORKER_ENTRY));
    this.#busy = this.#workers.map(() => 0);
    this.#workers.forEach((worker, w) => {
      worker.unref();
      worker.on('message', (message: FromWorker) => this.#onMessage(w, message));
      worker.on('error', (err) => this.#failAll(err));
    });
  }

  get threads(): number {
    return this.#workers.length;
  }

  /** False once a thread has died; the service then answers on its own thread. */
  get healthy(): boolean {
    return this.#failed === undefined;
  }

  #begin(): void {
    if (this.#inFlight++ === 0) for (const w of this.#workers) w.ref();
  }

  #end(): void {
    if (--this.#inFlight === 0 && !this.#terminating) for (const w of this.#workers) w.unref();
  }

  /** Opens of a path in flight: a second open of it (the file gained an overlay) waits for the first. */
  readonly #openingPromises = new Map<string, Promise<void>>();

  /** Maps `path` in every thread (again, if they have it: it may have gained an overlay); resolves when all have it. */
  open(path: string): Promise<void> {
    const earlier = this.#openingPromises.get(path);
    const next = (earlier ? earlier.catch(() => undefined) : Promise.resolve()).then(() => this.#openNow(path));
    this.#openingPromises.set(path, next);
    const forget = () => {
      if (this.#openingPromises.get(path) === next) this.#openingPromises.delete(path);
    };
    next.then(forget, forget);
    return next;
  }

  #openNow(path: string): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    this.#begin();
    return new Promise((resolve, reject) => {
      const settle = (err?: Error) => {
        this.#end();
        if (err) reject(err);
        else resolve();
      };
      this.#opening.set(path, { remaining: this.#workers.length, errors: [], resolve: () => settle(), reject: settle });
      for (const worker of this.#workers) worker.postMessage({ type: 'open', path } satisfies ToWorker);
    });
  }

  /** Drops `path` in every thread after the lookups already sent to it. */
  close(path: string): void {
    for (const worker of this.#workers) worker.postMessage({ type: 'close', path } satisfies ToWorker);
  }

  /**
   * The mget answer for `keys` (whole little-endian uint64s) from the table file `path` of
   * dimension `dim`, in a Buffer of the caller's own: answered into a reused buffer (as
   * mgetLease), then copied. A new SharedArrayBuffer per call (1.4 MB for 20,000 keys at
   * dim 16) had the kernel zero fresh pages whenever the allocator had returned memory: 4
   * callers on 2 threads swung between 5 and 13-23 Mkeys/s for seconds at a time; with the
   * copy they ran at a steady 13-17 (same table, runs alternating).
   */
  async mget(path: string, dim: number, keys: Uint8Array): Promise<Buffer> {
    const lease = await this.mgetLease(path, dim, keys);
    try {
      return Buffer.from(lease.bytes);
    } finally {
      lease.release();
    }
  }

  /** Like mget, into a reused buffer: release the lease once the answer is sent. */
  async mgetLease(path: string, dim: number, keys: Uint8Array): Promise<AnswerLease> {
    const n = keys.byteLength / 8;
    const { slab, release } = this.#slabs.acquire(n * 8 + mgetAnswerBytes(n, dim));
    try {
      await this.#run(path, dim, keys, slab);
    } catch (err) {
      release();
      throw err;
    }
    return { bytes: Buffer.from(slab, n * 8, mgetAnswerBytes(n, dim)), release };
  }

  async #run(path: string, dim: number, keys: Uint8Array, shared: SharedArrayBuffer): Promise<void> {
    const n = keys.byteLength / 8;
    new Uint8Array(shared, 0, n * 8).set(keys);
    const idle = this.#busy.flatMap((count, w) => (count === 0 ? [w] : []));
    const parts = n >= SPLIT_KEYS && idle.length > 1 ? idle.length : 1;
    // Ranges start on multiples of 32 so each thread writes whole bitmap words.
    const step = Math.ceil(n / parts / 32) * 32;
    if (this.#failed) throw this.#failed;
    const id = this.#nextId++;
    this.#begin();
    const done = new Promise<void>((resolve, reject) => this.#pending.set(id, { remaining: 0, resolve, reject })).finally(() => this.#end());
    const pending = this.#pending.get(id)!;
    for (let p = 0, from = 0; from < n || (n === 0 && p === 0); p++, from += step) {
      const w = parts === 1 ? this.#leastBusy() : idle[p]!;
      this.#busy[w]!++;
      pending.remaining++;
      this.#workers[w]!.postMessage({ type: 'mget', id, path, shared, n, from, to: Math.min(n, from + step) } satisfies ToWorker);
      if (n === 0) break;
    }
    await done;
  }

  async terminate(): Promise<void> {
    // Referenced while they stop: an idle pool's threads are unref'd, and the loop would
    // otherwise end before their exit events, leaving this promise unsettled.
    // An answer arriving now (an open that finished late) must not unref them again.
    this.#terminating = true;
    for (const w of this.#workers) w.ref();
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#failAll(new Error('the lookup threads were stopped'));
  }

  #leastBusy(): number {
    let best = 0;
    for (let w = 1; w < this.#busy.length; w++) if (this.#busy[w]! < this.#busy[best]!) best = w;
    return best;
  }

  #onMessage(w: number, message: FromWorker): void {
    if (message.type === 'opened') {
      const opening = this.#opening.get(message.path);
      if (!opening) return;
      if (message.error) opening.errors.push(message.error);
      if (--opening.remaining > 0) return;
      this.#opening.delete(message.path);
      if (opening.errors.length > 0) opening.reject(new ParamsError('PARAMS_BAD_TABLE', opening.errors[0]!));
      else opening.resolve();
      return;
    }
    this.#busy[w]!--;
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    if (message.error) pending.error = message.error;
    if (--pending.remaining > 0) return;
    this.#pending.delete(message.id);
    if (pending.error) pending.reject(new ParamsError('INTERNAL', pending.error));
    else pending.resolve();
  }

  #failAll(err: Error): void {
    this.#failed = new ParamsError('INTERNAL', `a lookup thread failed: ${err.message}`, { cause: err });
    for (const pending of this.#pending.values()) pending.reject(this.#failed);
    for (const opening of this.#opening.values()) opening.reject(this.#failed);
    this.#pending.clear();
    this.#opening.clear();
  }
}
