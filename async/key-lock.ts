/**
 * Mutual exclusion per key: at most one holder of a key at a time, waiters served in arrival
 * order. Several keys are taken in sorted order, so two callers asking for overlapping sets
 * never deadlock. A wait can be given up through an AbortSignal.
 *
 * Memory: a key with no holder and no waiter takes no space.
 */
export class KeyLock {
  /** Per held key: the tail of its queue (resolves when the last taker so far releases). */
  readonly #tails = new Map<string, Promise<void>>();

  /**
   * Runs `work` while holding every key of `keys` (duplicates are taken once). Resolves or
   * rejects as `work` does. With `signal`: if it aborts before all keys are held, the keys
   * already taken are released and `undefined` is answered without running `work`.
   */
  async with<T>(keys: readonly string[], work: () => Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
    const sorted = [...new Set(keys)].sort();
    const releases: Array<() => void> = [];
    try {
      for (const key of sorted) {
        const release = await this.#take(key, signal);
        if (!release) return undefined;
        releases.push(release);
      }
      return await work();
    } finally {
      for (const release of releases.reverse()) release();
    }
  }

  /** Waits for `key`; answers its release, or `undefined` if `signal` aborted first. */
  async #take(key: string, signal?: AbortSignal): Promise<(() => void) | undefined> {
    if (signal?.aborted) return undefined;
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    // The next taker waits for this one; an aborted waiter still passes the turn on in order.
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    const done = (): void => {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
    if (!signal) {
      await previous;
      return done;
    }
    const turn = await new Promise<boolean>((resolve) => {
      const onAbort = (): void => resolve(false);
      signal.addEventListener('abort', onAbort, { once: true });
      void previous.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      });
    });
    if (turn && !signal.aborted) return done;
    // Gave up: release our place once our turn comes, so later takers are not stuck behind us.
    void previous.then(done);
    return undefined;
  }
}
