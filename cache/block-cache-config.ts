import { CacheError } from './cache-error.js';

const MiB = 1024 * 1024;

/**
 * Default block size, 4 MiB. A block is the unit of a ranged GET, of every tier entry
 * and of readahead. Larger blocks amortise the per-request latency of S3 (a few ms on
 * RGW, tens of ms on a WAN) over more bytes: at 4 MiB the transfer dominates a GET on a
 * 1-10 Gb/s link. Smaller blocks waste less on random reads of large files and cost
 * less memory per in-flight fetch. 4 MiB is also the usual S3 client part size, and the
 * files smaller than a block (e.g. 256 KiB samples) are fetched whole either way.
 * bench/cold-read.ts (1 GiB cold, 3 rounds): 4 MiB blocks 134 MiB/s (129-150), 8 MiB blocks
 * 141 (136-153), the same within the noise, at the same CPU per GiB; 4 MiB stays.
 */
export const DEFAULT_BLOCK_SIZE = 4 * MiB;
/** Bounds of `blockSize`: below 1 MiB request overhead dominates; above 16 MiB one miss holds too much memory. */
export const MIN_BLOCK_SIZE = 1 * MiB;
export const MAX_BLOCK_SIZE = 16 * MiB;
/** Block sizes are multiples of 64 KiB so slots and mappings stay page-aligned on any page size up to 64 KiB. */
const BLOCK_ALIGN = 64 * 1024;
/** The default memory budget: 1 GiB, a small share of a training node's RAM that still holds a working set of models' hot blocks. */
export const DEFAULT_MEMORY_BUDGET = 1024 * MiB;
/**
 * Readahead grows 1, 2, 4, ... blocks up to 64 MiB ahead of a sequential reader (16 blocks of the
 * default 4 MiB, 8 of 8 MiB), bounded further by the I/O pool's spare room. bench/cold-read.ts's
 * cold GiB with the window varied (4 MiB blocks, 5 interleaved rounds over RGW on loopback): 8
 * blocks (32 MiB) read it at 0.91x the SDK's 8 parallel 8 MiB GETs for 2.66 daemon CPU-s/GiB; 16
 * blocks at 0.91x for 2.20; 32 blocks at 0.93x for 2.09 (the pool held them to 11-12 GETs in
 * flight). The rate was the machine's to give; more GETs in flight cost less CPU per byte, most
 * of it the kernel's (system time 2.0 -> 1.5 CPU-s/GiB).
 */
export const DEFAULT_READAHEAD_BYTES = 64 * MiB;
/** Parallel block fetches of one large read; 8 is where a single RGW or S3 prefix stops scaling per client. */
export const DEFAULT_PARALLEL_FETCHES = 8;

/**
 * The scrub re-reads whole files at 16 MiB/s by default: a pass over 500 GiB of whole files
 * every 9 hours, at under 2% of one NVMe drive's read rate and a few ms of CRC per second
 * (cache/checksum.ts: about 12 GB/s).
 */
export const DEFAULT_SCRUB_BYTES_PER_SECOND = 16 * MiB;

/** The nvme tier's options (see BlockCacheOptions.nvme). */
export interface NvmeOptions {
  readonly dir: string;
  readonly capacityBytes: number;
  readonly reserveBytes?: number;
  readonly wholeFiles?: boolean;
  readonly scrubBytesPerSecond?: number;
}

/** The pmem tier's options (see BlockCacheOptions.pmem). */
export interface PmemOptions {
  readonly path: string;
  readonly capacityBytes: number;
  readonly wholeFiles?: boolean;
  readonly scrubBytesPerSecond?: number;
}

/** What a caller may set; everything has a default. */
export interface BlockCacheOptions {
  /** Bytes per block (default 4 MiB; 1-16 MiB, a multiple of 64 KiB). */
  readonly blockSize?: number;
  /**
   * Total bytes of memory the cache may hold: the DRAM tier plus buffers of in-flight
   * fetches, tier reads and readahead (default 1 GiB). This is what `--dram SIZE` sets.
   */
  readonly memoryBudgetBytes?: number;
  /**
   * The part of the budget for in-flight and readahead buffers; the DRAM tier gets the rest.
   * Default: a quarter of the budget, at least 2 and at most 24 blocks (8 parallel demand
   * fetches plus 16 readahead blocks).
   */
  readonly ioPoolBytes?: number;
  /** Whether there is a DRAM tier (default true). Without it the whole budget is the I/O pool. */
  readonly dram?: boolean;
  /**
   * Pool file and data capacity of the pmem tier; absent = no pmem tier. `wholeFiles` (default
   * true) and `scrubBytesPerSecond` as for the nvme tier: whole files are kept beside the pool,
   * within its capacity (pmem-tier.ts).
   */
  readonly pmem?: PmemOptions;
  /**
   * Directory, capacity and free-space reserve of the nvme tier; absent = no nvme tier.
   * `wholeFiles` (default true): objects whose blocks are all in the tier are copied into one
   * whole-object file each, which the FUSE layer hands to the kernel (passthrough).
   * `scrubBytesPerSecond`: the rate of the background scrub of whole files (default
   * DEFAULT_SCRUB_BYTES_PER_SECOND; 0 turns it off).
   */
  readonly nvme?: NvmeOptions;
  /** Most blocks a sequential reader has prefetched ahead of it (default: 64 MiB of blocks, DEFAULT_READAHEAD_BYTES; 0 disables readahead). */
  readonly readaheadMaxBlocks?: number;
  /** Most blocks one read fetches at a time (default 8). */
  readonly maxParallelFetches?: number;
  /** Blocks the persistent tiers must not evict (see cache/pins.ts). */
  readonly isPinned?: (id: string) => boolean;
}

/** The validated, frozen configuration a BlockCache runs with. */
export interface BlockCacheConfig {
  readonly blockSize: number;
  readonly memoryBudgetBytes: number;
  readonly ioPoolBytes: number;
  /** Bytes of the DRAM tier (budget − I/O pool), 0 when there is none. */
  readonly dramBytes: number;
  readonly pmem: (PmemOptions & { readonly wholeFiles: boolean; readonly scrubBytesPerSecond: number }) | undefined;
  readonly nvme: (NvmeOptions & { readonly wholeFiles: boolean; readonly scrubBytesPerSecond: number }) | undefined;
  readonly readaheadMaxBlocks: number;
  readonly maxParallelFetches: number;
  readonly isPinned: ((id: string) => boolean) | undefined;
}

/** Fills in defaults and validates once; throws CONFIG_INVALID naming the option. */
export function resolveBlockCacheConfig(options: BlockCacheOptions = {}): BlockCacheConfig {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isSafeInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || blockSize % BLOCK_ALIGN !== 0) {
    invalid('blockSize', `must be 1-16 MiB and a multiple of 64 KiB, got ${blockSize}`);
  }
  const budget = options.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET;
  const withDram = options.dram ?? true;
  const ioPool = options.ioPoolBytes ?? (withDram ? clamp(Math.floor(budget / 4), 2 * blockSize, 24 * blockSize) : budget);
  if (!Number.isSafeInteger(budget) || budget < 2 * blockSize) invalid('memoryBudgetBytes', `must hold at least two blocks (${2 * blockSize} bytes), got ${budget}`);
  if (!Number.isSafeInteger(ioPool) || ioPool < 2 * blockSize || ioPool > budget) {
    invalid('ioPoolBytes', `must be at least two blocks and at most the memory budget, got ${ioPool}`);
  }
  const dramBytes = withDram ? budget - ioPool : 0;
  if (withDram && dramBytes < blockSize) invalid('memoryBudgetBytes', `leaves less than one block for the DRAM tier after the ${ioPool}-byte I/O pool`);
  const readaheadMaxBlocks = options.readaheadMaxBlocks ?? Math.max(1, Math.floor(DEFAULT_READAHEAD_BYTES / blockSize));
  if (!Number.isSafeInteger(readaheadMaxBlocks) || readaheadMaxBlocks < 0) invalid('readaheadMaxBlocks', `must be a non-negative integer, got ${readaheadMaxBlocks}`);
  const maxParallelFetches = options.maxParallelFetches ?? DEFAULT_PARALLEL_FETCHES;
  if (!Number.isSafeInteger(maxParallelFetches) || maxParallelFetches < 1) invalid('maxParallelFetches', `must be a positive integer, got ${maxParallelFetches}`);
  if (options.pmem !== undefined && !(options.pmem.capacityBytes >= blockSize)) invalid('pmem.capacityBytes', 'must hold at least one block');
  if (options.nvme !== undefined && !(options.nvme.capacityBytes >= blockSize)) invalid('nvme.capacityBytes', 'must hold at least one block');
  const scrub = options.nvme?.scrubBytesPerSecond ?? DEFAULT_SCRUB_BYTES_PER_SECOND;
  if (!Number.isSafeInteger(scrub) || scrub < 0) invalid('nvme.scrubBytesPerSecond', `must be a non-negative whole number of bytes per second, got ${scrub}`);
  const pmemScrub = options.pmem?.scrubBytesPerSecond ?? DEFAULT_SCRUB_BYTES_PER_SECOND;
  if (!Number.isSafeInteger(pmemScrub) || pmemScrub < 0) invalid('pmem.scrubBytesPerSecond', `must be a non-negative whole number of bytes per second, got ${pmemScrub}`);
  return Object.freeze({
    blockSize,
    memoryBudgetBytes: budget,
    ioPoolBytes: ioPool,
    dramBytes,
    pmem: options.pmem === undefined ? undefined : Object.freeze({ ...options.pmem, wholeFiles: options.pmem.wholeFiles ?? true, scrubBytesPerSecond: pmemScrub }),
    nvme: options.nvme === undefined ? undefined : Object.freeze({ ...options.nvme, wholeFiles: options.nvme.wholeFiles ?? true, scrubBytesPerSecond: scrub }),
    readaheadMaxBlocks,
    maxParallelFetches,
    isPinned: options.isPinned,
  });
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}

function invalid(option: string, problem: string): never {
  throw new CacheError('CONFIG_INVALID', `block cache option ${option} ${problem}`);
}
