/**
 * Block memory carved from a few large mappings (native/src/strata_arena.cc) and reused once
 * JavaScript has let go of it.
 *
 * Each block handed out is a Buffer over an ArrayBuffer that V8 does not count as external
 * memory, so filling the DRAM tier no longer sets off V8's full collections: a cold 1 GiB read
 * caused 41-49 of them with a fresh Buffer per GET (each marking the whole heap, on two threads,
 * for nothing: the old blocks were still in the tier) and 3 with the arena; the daemon's CPU for
 * that read went from 3.8-6.0 to 1.7-2.2 s (docs/ARCHITECTURE.md, "Block memory"). A slot whose
 * ArrayBuffer was collected (no view of it is left anywhere: the DRAM tier, a FUSE reply, a
 * write to another tier, a loan to the native readers all hold a view) goes back to a free
 * list, and the next block of its size class reuses it without a page fault or the kernel
 * zeroing it again.
 *
 * Slots are powers of two from 64 KiB (smaller bodies are cheaper in the ordinary allocator),
 * aligned to their size up to 2 MiB, on base pages (huge pages cost far more to touch first on
 * a VM, native/src/strata_arena.cc). A slot keeps its class
 * for good; when no slot of the class is free and no region has room, `take` answers undefined
 * and the caller allocates as before (counted by V8) and asks for a collection, which returns
 * dead slots here. `trim` gives the pages of free slots back to the system: the memory watchdog
 * calls it when the process is over its limit, and `releaseFreed` while it holds the DRAM tier
 * under its capacity.
 */

/** The calls of native/src/strata_arena.cc. */
export interface ArenaBinding {
  reserve(bytes: number): number;
  view(region: number, offset: number, length: number): ArrayBuffer;
  release(region: number, offset: number, length: number): void;
}

/** Bodies below this come from the ordinary allocator: a slot's rounding would waste more than they hold. */
export const MIN_SLOT_BYTES = 64 * 1024;
/** The size of a huge page (x86-64, arm64 with 4 KiB pages): regions are reserved in multiples of this. */
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;
/** The addon's largest region (native/src/strata_arena.cc); a larger budget takes several. */
export const MAX_REGION_BYTES = 64 * 1024 ** 3;

interface Region {
  readonly index: number;
  readonly bytes: number;
  /** Bytes carved into slots so far (slots are carved from the start, never given back). */
  carved: number;
}

interface Slot {
  readonly region: number;
  readonly offset: number;
  readonly bytes: number;
  /** Its pages may be resident (false once released to the system, until it is handed out again). */
  resident: boolean;
}

export interface BlockArenaStats {
  /** Address space reserved in all regions. */
  readonly reservedBytes: number;
  /** Slots handed out and not yet collected. */
  readonly inUseBytes: number;
  /** Slots free for reuse (their pages resident or not). */
  readonly freeBytes: number;
  /** Free slots whose pages are still resident. */
  readonly residentFreeBytes: number;
}

/** The slot size for a body of `length` bytes: the next power of two, at least MIN_SLOT_BYTES. */
export function slotBytes(length: number): number {
  return Math.max(MIN_SLOT_BYTES, 2 ** Math.ceil(Math.log2(length)));
}

export class BlockArena {
  readonly #binding: ArenaBinding;
  readonly #regions: Region[] = [];
  /** Free slots by size. */
  readonly #free = new Map<number, Slot[]>();
  readonly #collected = new FinalizationRegistry<Slot>((slot) => this.#give(slot, true));
  #reserved = 0;
  #releasing = false;
  #inUse = 0;
  #freeBytes = 0;
  #residentFree = 0;

  readonly #maxRegionBytes: number;

  /** @param maxRegionBytes the largest region to ask the addon for (a multiple of 2 MiB; tests use less) */
  constructor(binding: ArenaBinding, maxRegionBytes = MAX_REGION_BYTES) {
    this.#binding = binding;
    this.#maxRegionBytes = maxRegionBytes;
  }

  /** Reserves address space until the arena holds at least `bytes` (rounded up to 2 MiB); never shrinks. */
  reserve(bytes: number): void {
    let missing = Math.ceil((bytes - this.#reserved) / HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
    while (missing > 0) {
      const region = Math.min(missing, this.#maxRegionBytes);
      const index = this.#binding.reserve(region);
      this.#regions.push({ index, bytes: region, carved: 0 });
      this.#reserved += region;
      missing -= region;
    }
  }

  /**
   * A Buffer of exactly `length` bytes (contents undefined: a reused slot holds an older block's
   * bytes) in a slot of the arena, or undefined when the body is too small for a slot or no slot
   * of its size is free or can be carved.
   */
  take(length: number): Buffer | undefined {
    if (!Number.isSafeInteger(length) || length < MIN_SLOT_BYTES) return undefined;
    const bytes = slotBytes(length);
    let slot = this.#free.get(bytes)?.pop();
    if (slot !== undefined) {
      this.#freeBytes -= slot.bytes;
      if (slot.resident) this.#residentFree -= slot.bytes;
    } else {
      slot = this.#carve(bytes);
      if (slot === undefined) return undefined;
    }
    let memory: ArrayBuffer;
    try {
      memory = this.#binding.view(slot.region, slot.offset, length);
    } catch {
      // The native side refused the range (it cannot, for a slot carved here): the caller allocates.
      this.#give(slot, false);
      return undefined;
    }
    slot.resident = true;
    this.#inUse += slot.bytes;
    this.#collected.register(memory, slot);
    return Buffer.from(memory, 0, length);
  }

  /** Gives the pages of every free slot back to the system; answers how many bytes. */
  trim(): number {
    let released = 0;
    for (const slots of this.#free.values()) {
      for (const slot of slots) {
        if (slot.resident && this.#release(slot)) released += slot.bytes;
      }
    }
    this.#residentFree -= released;
    return released;
  }

  /**
   * While on, a slot's pages go back to the system as soon as it is free (and those of every
   * free slot at once): the memory watchdog has capped the DRAM tier, and what it evicts must
   * leave the process's resident size, not wait in a free list.
   */
  releaseFreed(on: boolean): void {
    this.#releasing = on;
    if (on) this.trim();
  }

  stats(): BlockArenaStats {
    return { reservedBytes: this.#reserved, inUseBytes: this.#inUse, freeBytes: this.#freeBytes, residentFreeBytes: this.#residentFree };
  }

  #carve(bytes: number): Slot | undefined {
    const align = Math.min(bytes, HUGE_PAGE_BYTES);
    for (const region of this.#regions) {
      const offset = Math.ceil(region.carved / align) * align;
      if (offset + bytes > region.bytes) continue;
      region.carved = offset + bytes;
      return { region: region.index, offset, bytes, resident: false };
    }
    return undefined;
  }

  /** Gives a slot's pages back to the system; false (it stays resident) if the addon refused, which it cannot for a slot carved here. */
  #release(slot: Slot): boolean {
    try {
      this.#binding.release(slot.region, slot.offset, slot.bytes);
    } catch {
      return false;
    }
    slot.resident = false;
    return true;
  }

  /** A slot whose ArrayBuffer was collected: free for the next body of its size. */
  #give(slot: Slot, wasInUse: boolean): void {
    if (wasInUse) this.#inUse -= slot.bytes;
    if (this.#releasing && slot.resident) this.#release(slot);
    this.#freeBytes += slot.bytes;
    if (slot.resident) this.#residentFree += slot.bytes;
    let slots = this.#free.get(slot.bytes);
    if (slots === undefined) this.#free.set(slot.bytes, (slots = []));
    slots.push(slot);
  }
}
