import type { Logger } from '../telemetry/index.js';
import type { BlockCacheConfig } from './block-cache-config.js';
import type { DramTier } from './dram-tier.js';
import type { MemoryBudget } from './memory-budget.js';
import type { Tier } from './tier.js';
import type { TierGuard } from './tier-guard.js';
import type { WriteThrough } from './write-through.js';

/**
 * What the block cache's parts share (block-cache.ts builds it once): the tiers, the I/O pool
 * every block buffer outside DRAM is reserved from, and the writes behind the reader. The loader
 * (block-loader.ts), readahead (readahead.ts) and warming (block-warming.ts) each take this
 * instead of reaching into the cache.
 */
export interface CacheScope {
  readonly config: BlockCacheConfig;
  readonly logger: Logger;
  readonly dram: DramTier | undefined;
  /** Persistent tiers, fastest first. */
  readonly lower: readonly Tier[];
  readonly pool: MemoryBudget;
  readonly tiers: TierGuard;
  readonly writes: WriteThrough;
  /** Aborted when the cache closes: every fetch and every wait for pool memory listens on it. */
  readonly signal: AbortSignal;
  closed(): boolean;
  /** Puts a block into DRAM (when there is a DRAM tier) and notes the memory peak. */
  promote(id: string, bytes: Buffer): void;
  /** Notes the memory peak after a pool reservation. */
  notePeak(): void;
}
