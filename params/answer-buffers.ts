/**
 * Reused mget answer buffers. A fresh buffer of an mget answer's size (1.3 MB for 20,000
 * keys at dim 16) comes from mmap, so its first write faults every page and its release
 * unmaps them again: reusing buffers measured 24-26 against 20 Mkeys/s for the lookup.
 * Buffers come in power-of-two size classes; a few per class are kept, so the memory held
 * is bounded by about `KEEP_PER_CLASS` answers of each size in use.
 */
export interface AnswerLease {
  /** The answer: `bytes` long, over a pooled slab. Contents are whatever was there before. */
  readonly bytes: Buffer;
  /** Gives the slab back; the lease's Buffer must not be used after this. Idempotent. */
  release(): void;
}

/** Requests in flight at once are few (bench/params-lookup runs 4 clients); more just allocate. */
const KEEP_PER_CLASS = 8;
/** Answers below this are cheap to allocate (Node's own pool or malloc serves them). */
const MIN_POOLED_BYTES = 64 * 1024;

export class AnswerBuffers<T extends ArrayBuffer | SharedArrayBuffer> {
  readonly #make: (bytes: number) => T;
  readonly #free = new Map<number, T[]>();

  constructor(make: (bytes: number) => T) {
    this.#make = make;
  }

  /** A buffer of `bytes` (from byte 0 of a slab, whose length is a power of two at least that). */
  acquire(bytes: number): { slab: T; release: () => void } {
    if (bytes < MIN_POOLED_BYTES) return { slab: this.#make(bytes), release: () => {} };
    const size = 2 ** Math.ceil(Math.log2(bytes));
    const slab = this.#free.get(size)?.pop() ?? this.#make(size);
    let released = false;
    return {
      slab,
      release: () => {
        if (released) return;
        released = true;
        const list = this.#free.get(size) ?? [];
        if (list.length < KEEP_PER_CLASS) list.push(slab);
        this.#free.set(size, list);
      },
    };
  }
}
