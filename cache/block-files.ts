import type { ObjectRef } from '../store/index.js';
import { blockCount, blockId, blockKeyOf, blockLength } from './block-key.js';
import type { BlockFiles, BlockPlace } from './object-reader.js';
import type { Tier } from './tier.js';

/**
 * Where the blocks of `ref` lie now (the first of `tiers`, fastest first, that lends each:
 * DRAM buffers, pmem slots, NVMe block files), for native reads; undefined when no tier lends
 * any. Reads the native reader reports count as hits of the tiers that held those blocks.
 */
export function locateBlockFiles(ref: ObjectRef, blockSize: number, tiers: readonly Tier[]): BlockFiles | undefined {
  const fileTiers = tiers.filter((tier) => tier.locate !== undefined);
  if (fileTiers.length === 0) return undefined;
  const holders: Array<Tier | undefined> = [];
  const blocks = Array.from({ length: blockCount(ref.size, blockSize) }, (_, index): BlockPlace | undefined => {
    const id = blockId(blockKeyOf(ref, index));
    for (const tier of fileTiers) {
      const file = tier.locate!(id, blockLength(ref.size, blockSize, index));
      if (file === undefined) continue;
      holders[index] = tier;
      return file;
    }
    return undefined;
  });
  if (holders.length === 0) return undefined;
  let done = false;
  const read = (indexes: readonly number[]): void => {
    if (done) return;
    done = true;
    const counts = new Map<Tier, number>();
    for (const index of indexes) {
      const tier = holders[index];
      if (tier) counts.set(tier, (counts.get(tier) ?? 0) + 1);
    }
    for (const [tier, count] of counts) tier.countHits?.(count);
    blocks.forEach((file, index) => {
      if (file !== undefined) holders[index]!.unlocate?.(file);
    });
  };
  return { blockSize, size: ref.size, blocks, read };
}
