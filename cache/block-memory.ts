import { loadMmapBinding, type MmapBinding } from './mmap-binding.js';

/**
 * Blocks at least this large get memory of their own on 2 MiB boundaries, advised for huge
 * pages (native/src/strata_mmap.c `blockMemory`). In the daemon's profile of a cold 1 GiB read
 * into DRAM, the copy into freshly allocated 4 MiB buffers took 3.2 s of CPU, almost all of it
 * page faults (4 KiB at a time); smaller bodies (a 256 KiB file) stay on Node's allocator.
 */
const HUGE_PAGE_MIN_BYTES = 2 * 1024 * 1024;

let binding: MmapBinding | null | undefined;

/**
 * Memory for one block's bytes, which the cache keeps (the store reads a fetched block straight
 * into it): huge-page memory for large blocks when the mmap addon is built, else `Buffer.allocUnsafe`.
 * Either way the garbage collector frees it once no Buffer refers to it.
 */
export function blockMemory(bytes: number): Buffer {
  if (bytes < HUGE_PAGE_MIN_BYTES) return Buffer.allocUnsafe(bytes);
  if (binding === undefined) {
    try {
      binding = loadMmapBinding();
      if (typeof binding.blockMemory !== 'function') binding = null;
    } catch {
      binding = null;
    }
  }
  return binding ? binding.blockMemory(bytes) : Buffer.allocUnsafe(bytes);
}
