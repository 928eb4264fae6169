import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Tier } from '../cache/tier.js';

/** Bytes per test block: small so the suite is fast, a multiple of 4 KiB so pmem slots stay page-aligned. */
export const CONFORMANCE_BLOCK = 64 * 1024;

/**
 * How the shared suite drives one tier implementation. `open` gives an empty tier that
 * holds exactly four full blocks (what "full" means, headers or not, is the tier's).
 */
export interface TierHarness {
  open(): Promise<Tier>;
  /** Closes nothing; opens the same storage again (persistent tiers only). */
  reopen?: () => Promise<Tier>;
  /** Changes one byte of the stored bytes of `id`, behind the tier's back. */
  corrupt(tier: Tier, id: string): Promise<void>;
  /** Makes reading `id` fail with an I/O error (tiers where that can be provoked). */
  breakIo?: (tier: Tier, id: string) => Promise<void>;
  cleanup(): Promise<void>;
}

function block(seed: number, length = CONFORMANCE_BLOCK): Buffer {
  const bytes = randomBytes(length);
  bytes[0] = seed & 0xff;
  return bytes;
}

/**
 * The behaviour every tier shares (see the `Tier` contract in cache/tier.ts). The
 * persistence and I/O-error cases are registered only for harnesses that provide
 * `reopen` / `breakIo` (say so in `capabilities`), so nothing is skipped at run time.
 */
export function describeTierConformance(
  name: string,
  makeHarness: () => TierHarness,
  capabilities: { persistent: boolean; ioErrors: boolean },
): void {
  describe(`${name} tier conformance`, () => {
    let harness: TierHarness;
    let tier: Tier;

    beforeEach(async () => {
      harness = makeHarness();
      tier = await harness.open();
    });

    afterEach(async () => {
      await tier.close();
      await harness.cleanup();
    });

    it('answers what was put, counts hits and misses', async () => {
      const bytes = block(1);
      expect(await tier.get('a')).toBeUndefined();
      expect(await tier.put('a', bytes)).toBe(true);
      expect(tier.has('a')).toBe(true);
      expect(tier.has('b')).toBe(false);
      const got = await tier.get('a');
      expect(got?.equals(bytes)).toBe(true);
      expect(tier.usedBytes).toBeGreaterThanOrEqual(bytes.length);
      const stats = tier.stats();
      expect(stats.name).toBe(tier.name);
      expect(stats.hits).toBe(1);
      expect(stats.misses).toBe(1);
      expect(stats.blocks).toBe(1);
      expect(stats.capacityBytes).toBe(tier.capacityBytes);
    });

    it('keeps short blocks and many ids apart', async () => {
      const short = block(2, 1000);
      const full = block(3);
      await tier.put('short', short);
      await tier.put('full', full);
      expect((await tier.get('short'))?.equals(short)).toBe(true);
      expect((await tier.get('full'))?.equals(full)).toBe(true);
    });

    it('deletes idempotently, without counting an eviction', async () => {
      await tier.put('a', block(4));
      await tier.delete('a');
      await tier.delete('a');
      await tier.delete('never-there');
      expect(tier.has('a')).toBe(false);
      expect(await tier.get('a')).toBeUndefined();
      expect(tier.usedBytes).toBe(0);
      expect(tier.stats().evictions).toBe(0);
    });

    it('evicts the least recently used block when full, staying within capacity', async () => {
      const blocks = [0, 1, 2, 3, 4].map((i) => block(10 + i));
      for (let i = 0; i < 4; i += 1) expect(await tier.put(`b${i}`, blocks[i])).toBe(true);
      expect(await tier.get('b0')).toBeDefined(); // b1 is now the least recently used
      expect(await tier.put('b4', blocks[4])).toBe(true);
      expect(tier.has('b1')).toBe(false);
      expect(tier.has('b0')).toBe(true);
      expect((await tier.get('b4'))?.equals(blocks[4])).toBe(true);
      expect(tier.usedBytes).toBeLessThanOrEqual(tier.capacityBytes);
      expect(tier.stats().evictions).toBe(1);
    });

    it('refuses a block larger than the whole tier', async () => {
      expect(await tier.put('huge', Buffer.alloc(tier.capacityBytes + 1))).toBe(false);
      expect(tier.has('huge')).toBe(false);
    });

    it('treats a put of a present id as a touch', async () => {
      const bytes = block(5);
      await tier.put('a', bytes);
      expect(await tier.put('a', bytes)).toBe(true);
      expect(tier.stats().blocks).toBe(1);
    });

    it('drops a block whose bytes fail the checksum and counts it', async () => {
      const bytes = block(6);
      await tier.put('a', bytes);
      await harness.corrupt(tier, 'a');
      expect(await tier.get('a')).toBeUndefined();
      expect(tier.has('a')).toBe(false);
      const stats = tier.stats();
      expect(stats.checksumMismatches).toBe(1);
      expect(stats.misses).toBe(1);
    });

    if (capabilities.persistent) it('keeps its blocks across close and reopen', async () => {
      const bytes = block(7);
      await tier.put('kept', bytes);
      await tier.close();
      tier = await harness.reopen!();
      expect(tier.has('kept')).toBe(true);
      expect((await tier.get('kept'))?.equals(bytes)).toBe(true);
    });

    if (capabilities.ioErrors) it('answers an I/O error as a counted miss, not a failure', async () => {
      await tier.put('a', block(8));
      await harness.breakIo!(tier, 'a');
      await expect(tier.get('a')).resolves.toBeUndefined();
      expect(tier.stats().ioErrors).toBe(1);
    });
  });
}
