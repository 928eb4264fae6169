import type { BlockPlace } from './object-reader.js';

/** Which kind of storage a tier is; also the `tier` label of its metrics. */
export type TierName = 'dram' | 'pmem' | 'nvme';

/** Counters and sizes one tier reports (`strata status`, `GET /v1/cache`). */
export interface TierStats {
  readonly name: TierName;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly blocks: number;
  readonly hits: number;
  readonly misses: number;
  readonly evictions: number;
  readonly checksumMismatches: number;
  readonly ioErrors: number;
}

/**
 * Called with a block a tier evicts to make room (not for `delete`), while the bytes
 * are still valid, so the cache can move it to a lower tier. Must not throw.
 */
export type EvictionListener = (id: string, bytes: Buffer) => void;

/**
 * One level of the block cache. Blocks are named by `blockId` strings and are immutable:
 * putting an id that is present replaces it with (by construction) the same bytes.
 *
 * Failure contract: a tier never rejects for an I/O problem. A read that fails, a file
 * that vanished or bytes whose checksum does not match are a miss (`undefined`), counted
 * in `stats()` (`ioErrors`, `checksumMismatches`) and logged once per kind of failure;
 * a mismatching block is dropped. A write that fails or finds no room answers `false`.
 */
export interface Tier {
  readonly name: TierName;
  /** The block's bytes, checksum-verified, or `undefined` (miss). Counts a hit or a miss. */
  get(id: string): Promise<Buffer | undefined>;
  /**
   * Stores a copy of (or, for DRAM, a reference to) `bytes` under `id`, evicting
   * least-recently-used blocks if needed. `true` once the block is stored and visible
   * to `get`; `false` if it could not be (larger than the tier, no space, I/O error).
   * The caller must not modify `bytes` afterwards. `checksum` is `blockChecksum(bytes)` when the
   * caller has it already (it computes it once for every tier it writes); else the tier computes it.
   */
  put(id: string, bytes: Buffer, checksum?: number): Promise<boolean>;
  /** Removes the block if present; idempotent. Does not count as an eviction. */
  delete(id: string): Promise<void>;
  /**
   * Where a present block of `length` bytes lies, holding exactly those bytes until `unlocate`
   * of the answer (an NVMe block file is only ever replaced with the same bytes; a pmem slot is
   * not reused meanwhile; a DRAM buffer is never modified), counted as a use for recency;
   * undefined when absent or not lent now. Optional. Every answer is given back with
   * `unlocate` once its reader is done.
   */
  locate?(id: string, length: number): BlockPlace | undefined;
  /** The reader of a `locate` answer is done with it: its place may be reused now. */
  unlocate?(place: BlockPlace): void;
  /** Counts `blocks` hits served from files `locate` answered (read by someone else). */
  countHits?(blocks: number): void;
  /**
   * The whole-object file of object version `objectId` (block-key.ts `objectVersionId`): one
   * plain file with the object's bytes at their own offsets, unchanged while it exists;
   * counted as a use for recency unless `touch` is false. Optional: only tiers that make whole
   * files (NVMe) offer it and `assembleWhole`.
   */
  wholeFile?(objectId: string, options?: { readonly touch?: boolean }): { readonly path: string; readonly size: number } | undefined;
  /** Makes `objectId` (of `size` bytes, in blocks of `blockSize`) one whole file if all its blocks are present; answers whether it is whole. Never rejects. */
  assembleWhole?(objectId: string, size: number, blockSize: number): Promise<boolean>;
  /**
   * Takes a local file holding exactly `objectId`'s `size` bytes, durable and never changed
   * again, as its whole file without copying it (a hard link); false when it cannot (another
   * file system, one block, no room). Never rejects.
   */
  adoptWhole?(objectId: string, file: string, size: number, blockSize: number): Promise<boolean>;
  /** Whether the block is present, without touching recency or counters. */
  has(id: string): boolean;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  stats(): TierStats;
  /** Persists whatever the tier needs to reopen quickly; later calls are no-ops. */
  close(): Promise<void>;
}
