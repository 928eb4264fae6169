import { Worker } from 'node:worker_threads';

/**
 * SHA-256 of upload bodies (the SigV4 payload hash of UploadPart and PutObject) on worker
 * threads. WebCrypto's digest, used before, is not off the event loop on Node 20: during a
 * 1 GiB checkpoint written through the mount it took 23% of the daemon's main thread
 * (bench/checkpoint-mount.ts profile), and a 1 ms timer fired 3 times during eight 16 MiB
 * digests. A body in a SharedArrayBuffer (the write path's part buffers) reaches the worker
 * without a copy; any other body is copied once by postMessage.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, bytes }) => {
  parentPort.postMessage({ id, hex: createHash('sha256').update(bytes).digest('hex') });
});
`;

/** Two workers: a part hashes in about 10 ms, and the machine's other core is the store's or the writer's. */
const WORKERS = 2;

interface Job {
  resolve(hex: string): void;
  reject(err: unknown): void;
}

class HashWorker {
  readonly #worker: Worker;
  readonly #jobs = new Map<number, Job>();
  #failed = false;

  constructor() {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true });
    this.#worker.unref();
    this.#worker.on('message', ({ id, hex }: { id: number; hex: string }) => {
      const job = this.#jobs.get(id);
      this.#jobs.delete(id);
      job?.resolve(hex);
    });
    const fail = (err: unknown) => {
      this.#failed = true;
      for (const job of this.#jobs.values()) job.reject(err);
      this.#jobs.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`the hashing worker exited (${code})`)));
  }

  get usable(): boolean {
    return !this.#failed;
  }

  get load(): number {
    return this.#jobs.size;
  }

  hash(id: number, bytes: Uint8Array): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.#jobs.set(id, { resolve, reject });
      this.#worker.postMessage({ id, bytes });
    });
  }

  terminate(): void {
    void this.#worker.terminate();
  }
}

/** Hex SHA-256 of upload bodies, computed on a small pool of worker threads started on first use. */
export class PayloadHasher {
  #workers: HashWorker[] = [];
  #nextId = 0;

  hash(body: Uint8Array): Promise<string> {
    this.#workers = this.#workers.filter((w) => w.usable);
    while (this.#workers.length < WORKERS) this.#workers.push(new HashWorker());
    const idle = this.#workers.reduce((a, b) => (b.load < a.load ? b : a));
    return idle.hash(this.#nextId++, body);
  }

  close(): void {
    for (const worker of this.#workers.splice(0)) worker.terminate();
  }
}
