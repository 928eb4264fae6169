import type { ObjectReader, ReadSession, ReadSessionOptions } from '../cache/index.js';
import type { ObjectRef } from '../store/index.js';
import { prefetchJob, type JobBody, type JobProgress, type PrefetchSource } from '../jobs/index.js';

/** Whether this daemon fetches block `index` of `ref` from the store itself. */
export type OwnsBlock = (ref: ObjectRef, index: number) => boolean;

/**
 * Reads through `inner` only the blocks `wanted` selects and answers an empty buffer for
 * the others. The prefetch job reads one block per request at block-aligned offsets, so a
 * request is one block.
 */
class SelectedBlocksReader implements ObjectReader {
  readonly #inner: ObjectReader;
  readonly #blockSize: number;
  readonly #wanted: OwnsBlock;

  constructor(inner: ObjectReader, blockSize: number, wanted: OwnsBlock) {
    this.#inner = inner;
    this.#blockSize = blockSize;
    this.#wanted = wanted;
  }

  openSession(ref: ObjectRef, options?: ReadSessionOptions): ReadSession {
    return this.#inner.openSession(ref, options);
  }

  async read(session: ReadSession, offset: number, length: number): Promise<Buffer> {
    if (!this.#wanted(session.ref, Math.floor(offset / this.#blockSize))) return Buffer.alloc(0);
    return this.#inner.read(session, offset, length);
  }

  closeSession(session: ReadSession): void {
    this.#inner.closeSession(session);
  }
}

/**
 * This daemon's share of a distribution, in two passes over the same files: first the
 * blocks it owns, from the store (every peer does this at the same time, so the store
 * serves each block about once); then every other block, through the cache, which asks
 * each block's owner. Progress: files and bytes are counted once; the first pass counts
 * the owned bytes, the second the rest and the files.
 */
export function distributeJob(source: PrefetchSource, owns: OwnsBlock, paths: readonly string[]): JobBody {
  const ownedPass = prefetchJob({ ...source, reader: new SelectedBlocksReader(source.reader, source.blockSize, owns) }, { paths });
  const restPass = prefetchJob({ ...source, reader: new SelectedBlocksReader(source.reader, source.blockSize, (ref, index) => !owns(ref, index)) }, { paths });
  return async (progress) => {
    await ownedPass({ signal: progress.signal, addTotal: (files, bytes) => progress.addTotal(files, bytes), addDone: (_files, bytes) => progress.addDone(0, bytes) } satisfies JobProgress);
    if (progress.signal.aborted) return;
    await restPass({ signal: progress.signal, addTotal: () => undefined, addDone: (files, bytes) => progress.addDone(files, bytes) } satisfies JobProgress);
  };
}
