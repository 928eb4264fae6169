import { Semaphore } from '../async/index.js';

/**
 * Upload buffers and the right to use them: `count` buffers of `bufferBytes` each, so that at
 * most `count` parts are in flight and their memory is allocated once (a fresh 16 MiB buffer per
 * part would cost page faults and zeroing for every byte uploaded), in SharedArrayBuffers so a
 * worker thread can hash a part in place (store/payload-hasher.ts). A body larger than one
 * buffer (parts grow for huge files, see part-layout.ts) takes as many slots as its size needs,
 * and gets a buffer of its own. Waiters are served first come, first served.
 */
export class UploadSlots {
  readonly #count: number;
  readonly #bufferBytes: number;
  readonly #free: Buffer[] = [];
  #allocated = 0;
  readonly #slots: Semaphore;

  constructor(count: number, bufferBytes: number) {
    this.#count = count;
    this.#bufferBytes = bufferBytes;
    this.#slots = new Semaphore(count);
  }

  /** Runs `body` with a buffer of exactly `bytes` bytes (valid until `body` settles). */
  async run<T>(bytes: number, body: (buffer: Buffer) => Promise<T>): Promise<T> {
    const need = Math.min(this.#count, Math.max(1, Math.ceil(bytes / this.#bufferBytes)));
    await this.#slots.acquire(need);
    const pooled = bytes <= this.#bufferBytes ? this.#take() : undefined;
    try {
      return await body(pooled ? pooled.subarray(0, bytes) : Buffer.allocUnsafe(bytes));
    } finally {
      if (pooled) this.#free.push(pooled);
      this.#slots.release(need);
    }
  }

  #take(): Buffer {
    const buffer = this.#free.pop();
    if (buffer) return buffer;
    this.#allocated++;
    // Shared memory: the store hashes a part on a worker thread, which reads it without a copy.
    return Buffer.from(new SharedArrayBuffer(this.#bufferBytes));
  }
}
