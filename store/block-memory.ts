import { loadAddon } from '../native/index.js';
import { counter, gauge } from '../telemetry/index.js';
import { BlockArena, MIN_SLOT_BYTES, type ArenaBinding } from './block-arena.js';

/** The one call of native/src/strata_mmap.c this module uses. */
interface HugeBlockBinding {
  hugeBlock(length: number): Buffer;
}

/** Transparent huge pages are 2 MiB (x86-64, arm64 with 4 KiB pages): lengths that are whole multiples get them. */
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

let binding: HugeBlockBinding | null | undefined;

function hugeBlocks(): HugeBlockBinding | null {
  if (binding === undefined) {
    try {
      binding = loadAddon<HugeBlockBinding>('strata_mmap');
      if (typeof binding.hugeBlock !== 'function') binding = null;
    } catch {
      // No addon built: plain Buffers, with a page fault per 4 KiB on first touch.
      binding = null;
    }
  }
  return binding;
}

/** The process's arena, once the daemon reserved one (`reserveBlockMemory`); absent in tools and most tests. */
let arena: BlockArena | undefined;

gauge('strata_block_arena_bytes', 'Block memory arena: address space reserved, slots holding blocks, slots free for reuse', ['state'], (g) => {
  const stats = arena?.stats();
  g.set({ state: 'reserved' }, stats?.reservedBytes ?? 0);
  g.set({ state: 'in_use' }, stats?.inUseBytes ?? 0);
  g.set({ state: 'free' }, stats?.freeBytes ?? 0);
});
const fallbackCounter = counter('strata_block_arena_fallbacks_total', 'GET bodies of slot size the arena had no free slot for (allocated outside it, counted by V8)');

/** Called (at most once per body) when a body of slot size found no free slot; see reserveBlockMemory. */
let whenDry: (() => void) | undefined;

/**
 * Reserves `bytes` of address space for block memory (store/block-arena.ts): GET bodies of 64 KiB
 * and more are carved from it and reused once collected, outside V8's external memory count.
 * The daemon reserves its memory budget (the DRAM tier and its I/O buffers). Answers false where
 * the addon is missing or the reservation is refused; bodies then come from the allocator.
 *
 * `onDry` runs when a body found no free slot: the slots of evicted blocks come back only when
 * V8 collects them, and V8 no longer collects for their sake, so the daemon asks for a
 * collection there (rate-limited) rather than let every later body take fresh memory.
 */
export function reserveBlockMemory(bytes: number, onDry?: () => void): boolean {
  try {
    arena ??= new BlockArena(arenaBinding());
    arena.reserve(bytes);
    whenDry = onDry;
    return true;
  } catch {
    return false;
  }
}

/** Gives the pages of free arena slots back to the system (the memory watchdog, over its limit); answers the bytes. */
export function trimBlockMemory(): number {
  return arena?.trim() ?? 0;
}

/** While on (the DRAM tier is capped), freed arena slots go back to the system at once instead of waiting for reuse. */
export function releaseFreedBlockMemory(on: boolean): void {
  arena?.releaseFreed(on);
}

function arenaBinding(): ArenaBinding {
  const native = loadAddon<ArenaBinding>('strata_arena');
  if (typeof native.reserve !== 'function' || typeof native.view !== 'function' || typeof native.release !== 'function') {
    throw new Error('the strata_arena addon lacks a call');
  }
  return native;
}

/**
 * Memory for one block about to be filled (contents undefined): a GET body the socket writes
 * into, or a block read from a tier. A slot of the arena where the daemon reserved one and a
 * slot is free, else ordinary memory: a length that is a multiple of 2 MiB (every full block at
 * the default 4 MiB) gets 2 MiB-aligned memory advised for transparent huge pages, so the first
 * write into it faults once per 2 MiB instead of once per 4 KiB page. Measured allocating and
 * touching 512 MiB in 4 MiB buffers, three runs on a loaded 2-core machine: 1.1-2.1 s of CPU
 * with `Buffer.allocUnsafe`, 0.5-1.1 s this way (the kernel zeroes the same bytes either way;
 * the saving is the 127,000 faults' overhead). Other lengths, or a machine without the addon,
 * get `Buffer.allocUnsafe`. Both count in V8's external memory and are freed when the Buffer
 * is collected.
 */
export function blockMemory(length: number): Buffer {
  if (arena !== undefined) {
    const slot = arena.take(length);
    if (slot !== undefined) return slot;
    if (length >= MIN_SLOT_BYTES) {
      fallbackCounter.inc();
      whenDry?.();
    }
  }
  if (length > 0 && length % HUGE_PAGE_BYTES === 0) {
    const native = hugeBlocks();
    if (native !== null) {
      try {
        return native.hugeBlock(length);
      } catch {
        // mmap refused (address space, a limit): the ordinary allocator may still succeed.
      }
    }
  }
  return Buffer.allocUnsafe(length);
}
