export { BlockCache, type FetchStats, type MemoryStats, type PersistentTiers } from './block-cache.js';
export type { FetchIntent, FetchOrigin, FetchPriority, FetchRange, FetchRequest } from './fetch-request.js';
export {
  resolveBlockCacheConfig,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_MEMORY_BUDGET,
  DEFAULT_SCRUB_BYTES_PER_SECOND,
  type BlockCacheConfig,
  type BlockCacheOptions,
} from './block-cache-config.js';
export { blockId, type BlockKey } from './block-key.js';
export { CacheError, type CacheErrorCode } from './cache-error.js';
export { DramTier, type DramTierConfig } from './dram-tier.js';
export { NvmeTier, type NvmeTierConfig } from './nvme-tier.js';
export { PmemTier, type PmemTierConfig } from './pmem-tier.js';
export type { Tier, TierName, TierStats } from './tier.js';
export type { BlockFile, BlockFiles, ObjectReader, ReadSession, ReadSessionOptions } from './object-reader.js';
export { PinSet } from './pins.js';
export { blockChecksum } from './checksum.js';
export { blockKeyOf } from './block-key.js';
