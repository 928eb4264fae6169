import type { ObjectRef, ObjectReader, ReadSession } from '../cache/object-reader.js';
import type { ObjectStore } from '../store/index.js';

/**
 * Reads straight from the store with one ranged GET per call, ETag checked. Used when
 * the block cache is switched off; the daemon normally reads through the BlockCache.
 */
export class DirectReader implements ObjectReader {
  readonly #store: ObjectStore;

  constructor(store: ObjectStore) {
    this.#store = store;
  }

  openSession(ref: ObjectRef): ReadSession {
    return { ref };
  }

  async read(session: ReadSession, offset: number, length: number): Promise<Buffer> {
    const { ref } = session;
    if (offset >= ref.size || length === 0) return Buffer.alloc(0);
    const result = await this.#store.getRange(ref.key, offset, Math.min(length, ref.size - offset), { ifMatch: ref.etag });
    return result.body;
  }

  closeSession(): void {}
}
