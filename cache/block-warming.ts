import { open } from 'node:fs/promises';
import { StoreError, blockMemory } from '../store/index.js';
import type { ObjectRef } from '../store/index.js';
import { blockCount, blockId, blockKeyOf, blockLength, objectVersionId } from './block-key.js';
import type { BlockLoader } from './block-loader.js';
import type { CacheScope } from './cache-scope.js';
import { CacheError } from './cache-error.js';
import type { FetchIntent } from './fetch-request.js';
import type { Tier, TierName } from './tier.js';

/** What `BlockCache.warmBlock` did with one block. */
export interface WarmedBlock {
  /** The block's length in bytes. */
  readonly bytes: number;
  /** Whether the block is now in the target tier (false: that tier refused it, e.g. full of pinned blocks). */
  readonly placed: boolean;
}

/** A job warming one block (`warmBlock`): background work. */
const WARM: FetchIntent = Object.freeze({ priority: 'background', origin: 'warm' });

/**
 * Puts blocks into the cache without a reader: prefetch jobs warming a tier (`warm`) and the
 * write path handing over a freshly uploaded checkpoint (`adopt`).
 */
export class BlockWarming {
  readonly #s: CacheScope;
  readonly #loader: BlockLoader;

  constructor(scope: CacheScope, loader: BlockLoader) {
    this.#s = scope;
    this.#loader = loader;
  }

  /** See `BlockCache.warmBlock`. */
  async warm(ref: ObjectRef, index: number, tier?: TierName): Promise<WarmedBlock> {
    const s = this.#s;
    const length = blockLength(ref.size, s.config.blockSize, index);
    if (tier === undefined || tier === 'dram') {
      if (tier === 'dram' && s.dram === undefined) throw new CacheError('CACHE_TIER_INVALID', 'there is no dram tier to warm blocks into');
      await this.#loader.block(ref, index, WARM);
      return { bytes: length, placed: true };
    }
    const target = s.lower.find((t) => t.name === tier);
    if (target === undefined) throw new CacheError('CACHE_TIER_INVALID', `there is no ${tier} tier to warm blocks into`);
    if (s.closed()) throw new StoreError('STORE_IO', 'the block cache is closed');
    const id = blockId(blockKeyOf(ref, index));
    if (s.tiers.has(target, id)) return { bytes: length, placed: true };
    await s.pool.reserve(length, s.signal);
    s.notePeak();
    try {
      const known = s.dram?.peekNow(id) ?? s.writes.writing.get(id) ?? (await this.#loader.inProgress(id)) ?? (await this.#fromOtherTiers(id, length, target));
      if (known !== undefined && known.length === length) return { bytes: length, placed: await s.tiers.put(target, id, known) };
      // Reads of this block while it is fetched wait for these bytes instead of fetching again.
      const bytes = await this.#loader.track(id, this.#loader.fetch(ref, index, length, WARM));
      s.writes.writing.set(id, bytes);
      try {
        const placed = await Promise.all(s.lower.map((t) => s.tiers.put(t, id, bytes)));
        return { bytes: length, placed: placed[s.lower.indexOf(target)]! };
      } finally {
        if (s.writes.writing.get(id) === bytes) s.writes.writing.delete(id);
      }
    } finally {
      s.pool.release(length);
    }
  }

  /** See `BlockCache.adopt`. */
  async adopt(ref: ObjectRef, file: string): Promise<number> {
    const s = this.#s;
    // A tier that keeps whole files takes the file itself (a hard link): no byte is copied, and
    // the next open passes through to it; nothing goes to DRAM or the other tiers.
    const whole = s.config.nvme?.wholeFiles === true ? s.lower.find((tier) => tier.adoptWhole !== undefined) : undefined;
    if (whole && (await whole.adoptWhole!(objectVersionId(ref), file, ref.size, s.config.blockSize))) return blockCount(ref.size, s.config.blockSize);
    const handle = await open(file, 'r');
    let adopted = 0;
    try {
      for (let index = 0; index < blockCount(ref.size, s.config.blockSize); index += 1) {
        const length = blockLength(ref.size, s.config.blockSize, index);
        if (!s.pool.tryReserve(length)) break;
        const bytes = blockMemory(length);
        const { bytesRead } = await handle.read(bytes, 0, length, index * s.config.blockSize);
        if (bytesRead !== length) {
          s.pool.release(length);
          break;
        }
        const id = blockId(blockKeyOf(ref, index));
        s.promote(id, bytes);
        if (s.lower.length > 0) s.writes.write(id, bytes, s.lower);
        else s.pool.release(length);
        adopted += 1;
      }
    } finally {
      await handle.close();
    }
    return adopted;
  }

  /** The block from a persistent tier other than `except`, or undefined. */
  async #fromOtherTiers(id: string, length: number, except: Tier): Promise<Buffer | undefined> {
    const s = this.#s;
    for (const tier of s.lower) {
      if (tier === except || !s.tiers.has(tier, id)) continue;
      const bytes = await s.tiers.get(tier, id);
      if (bytes !== undefined && bytes.length === length) return bytes;
    }
    return undefined;
  }
}
