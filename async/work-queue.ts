/**
 * A queue between producers that find work and workers that do it: `take` answers the oldest
 * item, waits while the queue is empty and still open, and answers undefined once it is closed
 * and drained (or the signal is aborted), so each worker is a plain loop. Items are handed to
 * waiting workers in the order the workers asked.
 */
export class WorkQueue<T> {
  readonly #items: T[] = [];
  readonly #takers: Array<(item: T | undefined) => void> = [];
  #closed = false;

  get size(): number {
    return this.#items.length;
  }

  /** Adds an item: a waiting worker gets it at once. Throws after `close`. */
  push(item: T): void {
    if (this.#closed) throw new Error('WorkQueue: push after close');
    const taker = this.#takers.shift();
    if (taker) taker(item);
    else this.#items.push(item);
  }

  /** No more items will come: workers finish what is queued, then `take` answers undefined. */
  close(): void {
    this.#closed = true;
    for (const taker of this.#takers.splice(0)) taker(undefined);
  }

  /** The next item; undefined once the queue is closed and empty, or when `signal` is aborted. */
  take(signal?: AbortSignal): Promise<T | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift());
    if (this.#closed) return Promise.resolve(undefined);
    return new Promise<T | undefined>((resolve) => {
      const onAbort = (): void => {
        const at = this.#takers.indexOf(taker);
        if (at >= 0) this.#takers.splice(at, 1);
        resolve(undefined);
      };
      const taker = (item: T | undefined): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(item);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#takers.push(taker);
    });
  }
}
