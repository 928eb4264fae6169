import { StrataError } from '../errors/index.js';
import { loadAddon } from './addons.js';

/** The calls of native/src/strata_mmap.c (see its header comment for the contracts). */
export interface MmapBinding {
  map(fd: number, offset: number, length: number): Buffer;
  sync(buffer: Buffer, offset: number, length: number): void;
  /** Reserves [offset, offset + length) of the file (offset 0 when absent). */
  allocate(fd: number, length: number, offset?: number): void;
  /** Gives back the memory or disk blocks of [offset, offset + length): the range reads as zeros. */
  punch(fd: number, offset: number, length: number): void;
  pageSize(): number;
  /** Bytes of the buffer's pages resident in memory now (mincore). */
  resident(buffer: Buffer): number;
}

let binding: MmapBinding | undefined;

/**
 * Loads the project's mmap addon, built by `npm install` / `npm ci` (the root package's
 * `install` script runs node-gyp on native/). Throws CACHE_TIER_INVALID when it is missing
 * (a tier, or a table on one, cannot be mapped without it).
 */
export function loadMmapBinding(): MmapBinding {
  if (binding !== undefined) return binding;
  try {
    binding = loadAddon<MmapBinding>('strata_mmap');
  } catch (err) {
    throw new StrataError(
      'CACHE_TIER_INVALID',
      'the pmem tier and mapped parameter tables need the native mmap addon; run `npm install` (or `npm run install`) to build native/',
      { cause: err },
    );
  }
  return binding;
}
