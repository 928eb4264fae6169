import type { ObjectRef } from '../store/index.js';
import { blockCount, blockId, blockKeyOf, blockLength } from './block-key.js';
import type { BlockLoader } from './block-loader.js';
import type { CacheScope } from './cache-scope.js';
import type { CacheSession } from './cache-session.js';
import type { FetchPriority } from './fetch-request.js';

/**
 * Readahead for sequential sessions: after each read, the session's detector says how many
 * blocks past the read to load, and those not cached or loading yet start loading in the
 * background with the session's priority. Readahead loads take spare pool memory only
 * (block-loader.ts), so they never hold back a demand read.
 */
export class Readahead {
  readonly #s: CacheScope;
  readonly #loader: BlockLoader;

  constructor(scope: CacheScope, loader: BlockLoader) {
    this.#s = scope;
    this.#loader = loader;
  }

  /** The session read [offset, end), whose last block is `lastBlock`: start what readahead wants. */
  afterRead(session: CacheSession, offset: number, end: number, lastBlock: number): void {
    const s = this.#s;
    const window = session.detector.observe(offset, end);
    if (window === 0 || s.closed() || (s.dram === undefined && s.lower.length === 0)) return;
    if (session.readaheadSeen.lastBlock === lastBlock && session.readaheadSeen.window === window) return;
    session.readaheadSeen = { lastBlock, window };
    const { ref } = session;
    const count = blockCount(ref.size, s.config.blockSize);
    for (let index = lastBlock + 1; index <= Math.min(lastBlock + window, count - 1); index += 1) {
      const id = blockId(blockKeyOf(ref, index));
      if (this.#loader.loading(id) || this.#cached(id)) continue;
      void this.#start(ref, index, id, session.intent.priority);
    }
  }

  /**
   * Starts loading the first block of `ref` unless it is cached or loading: for a file just
   * opened (its first READ then joins the load) or one a reader is expected to open next.
   * Answers the load, or undefined when none was started.
   */
  first(ref: ObjectRef): Promise<unknown> | undefined {
    const s = this.#s;
    if (ref.size === 0 || s.closed() || (s.dram === undefined && s.lower.length === 0)) return undefined;
    const id = blockId(blockKeyOf(ref, 0));
    if (this.#loader.loading(id) || this.#cached(id)) return undefined;
    return this.#start(ref, 0, id, 'foreground');
  }

  #cached(id: string): boolean {
    const s = this.#s;
    return s.dram !== undefined ? s.dram.has(id) : s.lower.some((tier) => s.tiers.has(tier, id));
  }

  /** Starts a readahead load of block `index`; answers it settled, its failure logged (a read that needs the block loads it again). */
  #start(ref: ObjectRef, index: number, id: string, priority: FetchPriority): Promise<unknown> {
    const length = blockLength(ref.size, this.#s.config.blockSize, index);
    const load = this.#loader.start(ref, index, id, length, { priority, origin: 'readahead' });
    return load.catch((err: unknown) => this.#s.logger.debug({ err, key: ref.key, index }, 'readahead fetch failed'));
  }
}
