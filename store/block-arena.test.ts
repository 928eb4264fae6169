import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../native/index.js';
import { BlockArena, MIN_SLOT_BYTES, slotBytes, type ArenaBinding } from './block-arena.js';

const MiB = 1024 * 1024;

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/** Collects until the arena's free bytes reach `freeBytes` (finalizers run as a task after a collection). */
async function collectUntilFree(arena: BlockArena, freeBytes: number): Promise<void> {
  for (let round = 0; round < 50 && arena.stats().freeBytes < freeBytes; round++) {
    collect();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function binding(): ArenaBinding {
  return loadAddon<ArenaBinding>('strata_arena');
}

/** Fills a body in its own function, so no reference to it is left on the caller's stack. */
function fillAndDrop(arena: BlockArena, length: number, value: number): void {
  const body = arena.take(length)!;
  body.fill(value);
}

describe('BlockArena', () => {
  it('hands out separate slots of exactly the length asked, sized in powers of two from 64 KiB', () => {
    const arena = new BlockArena(binding());
    arena.reserve(16 * MiB);
    expect(arena.stats().reservedBytes).toBe(16 * MiB);
    const a = arena.take(4 * MiB)!;
    const b = arena.take(3 * MiB)!;
    const c = arena.take(256 * 1024)!;
    expect([a.length, b.length, c.length]).toEqual([4 * MiB, 3 * MiB, 256 * 1024]);
    a.fill(1);
    b.fill(2);
    c.fill(3);
    expect(a.every((x) => x === 1) && b.every((x) => x === 2) && c.every((x) => x === 3)).toBe(true);
    expect(arena.stats().inUseBytes).toBe(4 * MiB + 4 * MiB + 256 * 1024);
    expect(slotBytes(MIN_SLOT_BYTES + 1)).toBe(2 * MIN_SLOT_BYTES);
    expect(slotBytes(4 * MiB)).toBe(4 * MiB);
    // Too small for a slot, or no room left: the caller allocates as before.
    expect(arena.take(MIN_SLOT_BYTES - 1)).toBeUndefined();
    expect(arena.take(8 * MiB)).toBeUndefined();
  });

  it('reuses a slot once no view of it is left, and not while a subarray of it lives', async () => {
    const arena = new BlockArena(binding());
    arena.reserve(8 * MiB);
    fillAndDrop(arena, 4 * MiB, 7);
    let kept: Buffer | undefined = arena.take(4 * MiB)!.subarray(MiB, 2 * MiB);
    kept.fill(9);
    // Both slots are carved; only the dropped one may come back.
    expect(arena.take(4 * MiB)).toBeUndefined();
    await collectUntilFree(arena, 4 * MiB);
    expect(arena.stats()).toMatchObject({ inUseBytes: 4 * MiB, freeBytes: 4 * MiB, residentFreeBytes: 4 * MiB });
    const reused = arena.take(4 * MiB)!;
    expect(reused).toBeDefined();
    // A reused slot is not zeroed: it holds the last block's bytes until the socket overwrites them.
    expect(reused[0]).toBe(7);
    expect(kept.every((x) => x === 9)).toBe(true);
    expect(arena.take(4 * MiB)).toBeUndefined();
    kept = undefined;
    await collectUntilFree(arena, 4 * MiB);
    expect(arena.take(4 * MiB)).toBeDefined();
  });

  it('gives free slots back to the system on trim; they read as zeros when reused', async () => {
    const arena = new BlockArena(binding());
    arena.reserve(4 * MiB);
    fillAndDrop(arena, 2 * MiB, 5);
    await collectUntilFree(arena, 2 * MiB);
    expect(arena.stats().residentFreeBytes).toBe(2 * MiB);
    expect(arena.trim()).toBe(2 * MiB);
    expect(arena.trim()).toBe(0);
    expect(arena.stats()).toMatchObject({ freeBytes: 2 * MiB, residentFreeBytes: 0 });
    const again = arena.take(2 * MiB)!;
    expect(again.every((x) => x === 0)).toBe(true);
    expect(arena.stats()).toMatchObject({ inUseBytes: 2 * MiB, freeBytes: 0 });
  });

  it('while releasing freed slots, gives their pages back as they come free', async () => {
    const arena = new BlockArena(binding());
    arena.reserve(8 * MiB);
    fillAndDrop(arena, 2 * MiB, 5);
    await collectUntilFree(arena, 2 * MiB);
    arena.releaseFreed(true);
    expect(arena.stats()).toMatchObject({ freeBytes: 2 * MiB, residentFreeBytes: 0 });
    fillAndDrop(arena, 4 * MiB, 6);
    await collectUntilFree(arena, 6 * MiB);
    expect(arena.stats()).toMatchObject({ freeBytes: 6 * MiB, residentFreeBytes: 0 });
    arena.releaseFreed(false);
    fillAndDrop(arena, 4 * MiB, 6);
    await collectUntilFree(arena, 6 * MiB);
    expect(arena.stats()).toMatchObject({ freeBytes: 6 * MiB, residentFreeBytes: 4 * MiB });
  });

  it('grows by whole regions and refuses what the addon cannot map', () => {
    const arena = new BlockArena(binding());
    arena.reserve(3 * MiB);
    expect(arena.stats().reservedBytes).toBe(4 * MiB);
    arena.reserve(2 * MiB);
    expect(arena.stats().reservedBytes).toBe(4 * MiB);
    arena.reserve(10 * MiB);
    expect(arena.stats().reservedBytes).toBe(10 * MiB);
    // The second region serves a slot the first has no room for.
    expect(arena.take(4 * MiB)).toBeDefined();
    expect(arena.take(4 * MiB)).toBeDefined();
    // A budget past the largest region (64 GiB in the daemon) takes several.
    const split = new BlockArena(binding(), 4 * MiB);
    split.reserve(10 * MiB);
    expect(split.stats().reservedBytes).toBe(10 * MiB);
    expect([split.take(4 * MiB), split.take(4 * MiB), split.take(2 * MiB)].every((b) => b !== undefined)).toBe(true);
    expect(split.take(2 * MiB)).toBeUndefined();
    const native = binding();
    expect(() => native.reserve(3 * MiB)).toThrow(/multiple of 2 MiB/);
    expect(() => native.view(0, 0, 0)).toThrow(/length > 0/);
    expect(() => native.view(1_000_000, 0, MiB)).toThrow(/outside the arena/);
    expect(() => native.release(0, 1, MiB)).toThrow();
  });
});
