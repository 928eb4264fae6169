import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { trimFuseRequestBuffers } from '../fuse/index.js';
import { loadAddon } from '../native/index.js';
import { trimBlockMemory } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';

/** The calls of native/src/strata_memory.c (see its header comment for the contracts). */
interface MemoryBinding {
  tune(mmapThresholdBytes: number, arenaMax: number): boolean;
  trim(): boolean;
}

/** The process's memory as Node sees it, in bytes (process.memoryUsage). */
export interface ProcessMemory {
  /**
   * The resident size less the shared memory it maps from tmpfs (`RssShmem`: a pmem pool or
   * parameter tables on /dev/shm). Those pages belong to their tier, which has its own
   * capacity, not to `--memory`; counted here, a pool filled by a read would push the daemon
   * "over its limit" and shrink its DRAM tier and stop readahead for no memory it can give back.
   */
  readonly rssBytes: number;
  /** V8's heap (JavaScript objects), reserved and used. */
  readonly heapTotalBytes: number;
  readonly heapUsedBytes: number;
  /** Memory outside V8's heap that JavaScript objects own: Buffers (block buffers among them) and native objects. */
  readonly externalBytes: number;
  /** The part of `externalBytes` that is ArrayBuffers and Buffers. */
  readonly arrayBuffersBytes: number;
}

/**
 * Allocations this size or larger are mapped on their own and unmapped when freed: a FUSE
 * write request (1 MiB plus its header), a block buffer (1-16 MiB) and an upload part
 * (16 MiB) then leave no hole in a heap once freed. 1 MiB keeps everything smaller in the
 * heaps, where reuse is cheap (a mapping costs page faults on first touch).
 */
const MMAP_THRESHOLD_BYTES = 1024 * 1024;
/**
 * Heaps for all threads: the event loop, libuv's 16 pool threads, the FUSE reader threads
 * and the hashing workers. glibc's default (8 per core) lets each thread keep its own freed
 * memory; two heaps keep contention low for the few small allocations pool threads make.
 */
const ARENA_MAX = 2;

/**
 * What the daemon needs besides `--memory`, whatever the load: Node and V8 themselves with the
 * loaded code (85 MiB resident for an idle mount of the built package), the V8 heap of the API,
 * the store clients and the namespace (65-70 MiB under load), the native threads' stacks and
 * request buffers, and the garbage a busy process carries between collections (evicted blocks,
 * answered FUSE requests: V8 collects external memory only after tens of MiB of it). Under
 * bench/memory-load the built daemon's resident size went up to 170-176 MiB over `--memory`
 * (median 87-95 MiB over); 192 MiB is that with 16 MiB (four blocks) to spare, so that the
 * watchdog, which aims 10% under the bound, squeezes the DRAM tier only in bursts.
 * docs/CONFIGURATION.md gives the figures.
 */
export const FIXED_OVERHEAD_BYTES = 192 * 1024 * 1024;

/** The resident size the daemon holds itself under: `--memory` plus the fixed overhead. */
export function processMemoryLimit(memoryBudgetBytes: number): number {
  return memoryBudgetBytes + FIXED_OVERHEAD_BYTES;
}

let binding: MemoryBinding | null | undefined;

function memoryBinding(): MemoryBinding | null {
  if (binding === undefined) {
    try {
      binding = loadAddon<MemoryBinding>('strata_memory');
    } catch {
      binding = null;
    }
  }
  return binding;
}

/**
 * Tunes the C library's allocator for a process whose big buffers come and go (see
 * MMAP_THRESHOLD_BYTES and ARENA_MAX). Called once at daemon start, before the FUSE threads
 * and the I/O pool allocate. Answers whether the allocator took the settings (false without
 * the native addon or on a C library other than glibc; the watchdog still bounds the process).
 */
export function tuneAllocator(logger: Logger): boolean {
  const native = memoryBinding();
  const tuned = native?.tune(MMAP_THRESHOLD_BYTES, ARENA_MAX) ?? false;
  if (!tuned) logger.info('allocator not tuned (no glibc or no native memory addon); memory is bounded by the watchdog alone');
  return tuned;
}

let collect: (() => void) | undefined;

/**
 * Runs a full garbage collection, then returns the FUSE threads' pooled request buffers, the
 * heaps' free pages and the block arena's free slots to the system. Evicted blocks and answered
 * requests are garbage until V8 collects them, and V8 collects external memory late (after tens
 * of MiB of it); the watchdog calls this when the process is over its limit, at most every few
 * seconds, since a full collection pauses the event loop (20-80 ms measured with a 200 MiB heap
 * of buffers).
 */
export function reclaimMemory(): void {
  collector()();
  trimFuseRequestBuffers();
  memoryBinding()?.trim();
  // Arena slots return when their ArrayBuffers' finalizers run, a task after the collection:
  // the free slots now, and those once the finalizers have run.
  trimBlockMemory();
  setTimeout(trimBlockMemory, 0).unref();
}

function collector(): () => void {
  if (collect === undefined) {
    // `gc` is only exposed by a flag; setting it at run time makes new contexts carry it.
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  return collect;
}

/** At most one collection for the block arena in this many milliseconds. */
const ARENA_COLLECT_EVERY_MS = 100;
let arenaCollectDue = 0;
let arenaCollectQueued = false;

/**
 * The block arena found no free slot (store/block-memory.ts): slots of evicted blocks are garbage
 * V8 has not collected, since it no longer counts them. A full collection of the daemon's heap
 * (8-20 ms measured at 25 MiB) gives them all back, where the alternative is fresh memory for
 * every block meanwhile, whose first touch the kernel pays for by zeroing it (65% of the
 * daemon's CPU in a cold read's profile). Runs after the current task, at most every 100 ms.
 */
export function collectForBlockArena(): void {
  if (arenaCollectQueued || Date.now() < arenaCollectDue) return;
  arenaCollectQueued = true;
  setImmediate(() => {
    arenaCollectQueued = false;
    arenaCollectDue = Date.now() + ARENA_COLLECT_EVERY_MS;
    collector()();
  });
}

export function processMemory(): ProcessMemory {
  const usage = process.memoryUsage();
  return {
    rssBytes: Math.max(0, usage.rss - sharedResidentBytes()),
    heapTotalBytes: usage.heapTotal,
    heapUsedBytes: usage.heapUsed,
    externalBytes: usage.external,
    arrayBuffersBytes: usage.arrayBuffers,
  };
}

/** `RssShmem` of /proc/self/status in bytes; 0 where the file or the line is missing. */
function sharedResidentBytes(): number {
  let status: string;
  try {
    status = readFileSync('/proc/self/status', 'latin1');
  } catch {
    return 0;
  }
  const match = /^RssShmem:\s+(\d+) kB$/m.exec(status);
  return match === null ? 0 : Number(match[1]) * 1024;
}
