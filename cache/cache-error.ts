import { StrataError } from '../errors/index.js';

export type CacheErrorCode =
  | 'CONFIG_INVALID'
  | 'CACHE_TIER_INVALID'
  | 'CACHE_CHECKSUM_MISMATCH'
  | 'CACHE_TIER_IO'
  | 'CACHE_BUDGET_EXCEEDED';

/** Any failure the block cache or one of its tiers reports on purpose. */
export class CacheError extends StrataError<CacheErrorCode> {}
