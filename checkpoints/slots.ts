import { Semaphore } from '../async/index.js';

/**
 * Pooled buffers not used for this long are freed: a checkpoint writer uploads parts back to
 * back (a 16 MiB part leaves the pool every few hundred ms while a file streams), so 5 s idle
 * means the writing is over, and the up to 128 MiB of buffers (8 parts of 16 MiB) should go back
 * to the process's memory budget rather than stay allocated until the next checkpoint.
 */
const IDLE_RELEASE_MS = 5_000;

/** What the slots need of a clock; tests pass fake timers. */
export interface SlotTimers {
  readonly set: (callback: () => void, ms: number) => unknown;
  readonly clear: (timer: unknown) => void;
}

const realTimers: SlotTimers = {
  set: (callback, ms) => setTimeout(callback, ms).unref(),
  clear: (timer) => clearTimeout(timer as NodeJS.Timeout),
};

/**
 * Upload buffers and the right to use them: `count` buffers of `bufferBytes` each, so that at
 * most `count` parts are in flight and their memory is allocated once per burst of uploads (a
 * fresh 16 MiB buffer per part would cost page faults and zeroing for every byte uploaded), in
 * SharedArrayBuffers so a worker thread can hash a part in place (store/payload-hasher.ts). A
 * body larger than one buffer (parts grow for huge files, see part-layout.ts) takes as many
 * slots as its size needs, and gets a buffer of its own. Waiters are served first come, first
 * served.
 *
 * The buffers count against the daemon's `--memory`: `heldBytes` is what they hold now (pooled
 * ones, in use or free, and the own buffers of large bodies in flight), which the daemon's memory
 * watchdog takes from the DRAM tier; pooled buffers idle for IDLE_RELEASE_MS are freed.
 */
export class UploadSlots {
  readonly #count: number;
  readonly #bufferBytes: number;
  readonly #free: Buffer[] = [];
  readonly #slots: Semaphore;
  readonly #timers: SlotTimers;
  #pooledBytes = 0;
  #ownBytes = 0;
  #idleTimer: unknown;

  constructor(count: number, bufferBytes: number, timers: SlotTimers = realTimers) {
    this.#count = count;
    this.#bufferBytes = bufferBytes;
    this.#slots = new Semaphore(count);
    this.#timers = timers;
  }

  /** Bytes of upload buffers allocated now (see the class comment). */
  get heldBytes(): number {
    return this.#pooledBytes + this.#ownBytes;
  }

  /** Runs `body` with a buffer of exactly `bytes` bytes (valid until `body` settles). */
  async run<T>(bytes: number, body: (buffer: Buffer) => Promise<T>): Promise<T> {
    const need = Math.min(this.#count, Math.max(1, Math.ceil(bytes / this.#bufferBytes)));
    await this.#slots.acquire(need);
    this.#cancelIdleRelease();
    const pooled = bytes <= this.#bufferBytes ? this.#take() : undefined;
    if (!pooled) this.#ownBytes += bytes;
    try {
      return await body(pooled ? pooled.subarray(0, bytes) : Buffer.allocUnsafe(bytes));
    } finally {
      if (pooled) this.#free.push(pooled);
      else this.#ownBytes -= bytes;
      this.#slots.release(need);
      if (this.#slots.used === 0) this.#scheduleIdleRelease();
    }
  }

  #take(): Buffer {
    const buffer = this.#free.pop();
    if (buffer) return buffer;
    this.#pooledBytes += this.#bufferBytes;
    // Shared memory: the store hashes a part on a worker thread, which reads it without a copy.
    return Buffer.from(new SharedArrayBuffer(this.#bufferBytes));
  }

  #scheduleIdleRelease(): void {
    if (this.#free.length === 0 || this.#idleTimer !== undefined) return;
    this.#idleTimer = this.#timers.set(() => {
      this.#idleTimer = undefined;
      if (this.#slots.used > 0) return;
      // Garbage from here on; the next collection returns the memory.
      this.#pooledBytes -= this.#free.length * this.#bufferBytes;
      this.#free.length = 0;
    }, IDLE_RELEASE_MS);
  }

  #cancelIdleRelease(): void {
    if (this.#idleTimer === undefined) return;
    this.#timers.clear(this.#idleTimer);
    this.#idleTimer = undefined;
  }
}
