import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { blockChecksum } from './checksum.js';
import { poolGeometry, readSlotRecord, recordOffset } from './pmem-pool-layout.js';
import { PmemTier, type PmemWriteStep } from './pmem-tier.js';

const BLOCK = 64 * 1024;
const SLOTS = 4;
const logger = silentLogger();

describe('PmemTier crash consistency', () => {
  let dir: string;
  let path: string;

  beforeEach(async () => {
    dir = await mkdtemp(join('/dev/shm', 'strata-pmem-crash-'));
    path = join(dir, 'strata.pool');
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const openPool = (faultHook?: (step: PmemWriteStep) => void) =>
    PmemTier.open({ path, capacityBytes: SLOTS * BLOCK, blockSize: BLOCK, ...(faultHook ? { faultHook } : {}) }, logger);

  /** A hook that "crashes" (throws) once the put reaches `step`. */
  const crashAt = (step: PmemWriteStep) => (reached: PmemWriteStep) => {
    if (reached === step) throw new Error(`simulated crash at ${step}`);
  };

  async function slotOf(id: string): Promise<number> {
    const file = await readFile(path);
    const hash = createHash('sha256').update(id).digest('hex');
    for (let slot = 0; slot < SLOTS; slot += 1) if (readSlotRecord(file, recordOffset(slot), BLOCK)?.idHash === hash) return slot;
    return -1;
  }

  for (const step of ['slot-cleared', 'data-copied', 'data-flushed'] as const) {
    it(`a crash after "${step}" leaves the block invisible and the others intact`, async () => {
      const kept = randomBytes(BLOCK);
      const first = await openPool();
      expect(await first.put('kept', kept)).toBe(true);
      await first.close();

      const crashing = await openPool(crashAt(step));
      expect(await crashing.put('torn', randomBytes(BLOCK))).toBe(false);
      // No close: the process "died". Reopen the same pool file.
      const after = await openPool();
      expect(after.has('torn')).toBe(false);
      expect(await after.get('torn')).toBeUndefined();
      expect((await after.get('kept'))?.equals(kept)).toBe(true);
      expect(after.stats().checksumMismatches).toBe(0);
      await after.close();
    });
  }

  it('a crash while reusing an evicted slot shows neither the old nor the new block', async () => {
    const full = await openPool();
    for (let i = 0; i < SLOTS; i += 1) await full.put(`old${i}`, randomBytes(BLOCK));
    await full.close();
    // The pool is full: the next put evicts old0 and reuses its slot, then crashes mid-copy.
    const crashing = await openPool(crashAt('data-copied'));
    expect(await crashing.put('new', randomBytes(BLOCK))).toBe(false);
    const after = await openPool();
    expect(after.has('old0')).toBe(false);
    expect(after.has('new')).toBe(false);
    expect(after.stats().blocks).toBe(SLOTS - 1);
    await after.close();
  });

  it('a torn slot record is free at open and no bytes of it are served', async () => {
    const tier = await openPool();
    await tier.put('victim', randomBytes(BLOCK));
    await tier.close();
    const slot = await slotOf('victim');
    expect(slot).toBeGreaterThanOrEqual(0);
    // Change the length field without fixing the record's CRC, as a torn write would.
    const handle = await open(path, 'r+');
    await handle.write(Buffer.from([0x07]), 0, 1, recordOffset(slot) + 4);
    await handle.close();
    const after = await openPool();
    expect(after.has('victim')).toBe(false);
    expect(after.stats().usedBytes).toBe(0);
    // The slot is usable again.
    for (let i = 0; i < SLOTS; i += 1) expect(await after.put(`n${i}`, randomBytes(BLOCK))).toBe(true);
    expect(after.stats().evictions).toBe(0);
    await after.close();
  });

  it('re-initialises a pool made with another block size', async () => {
    const tier = await openPool();
    await tier.put('a', randomBytes(BLOCK));
    await tier.close();
    const other = await PmemTier.open({ path, capacityBytes: SLOTS * BLOCK * 2, blockSize: BLOCK * 2 }, logger);
    expect(other.has('a')).toBe(false);
    expect(other.capacityBytes).toBe(SLOTS * BLOCK * 2);
    await other.close();
  });

  it('refuses an existing file that is not a pool, and leaves it as it was', async () => {
    const precious = 'root:x:0:0:root:/root:/bin/bash\n';
    await writeFile(path, precious);
    await expect(openPool()).rejects.toMatchObject({ code: 'CACHE_TIER_INVALID', message: `pmem pool ${path} is an existing file that is not a Strata pool; it is left untouched: give a new path (or remove the file yourself)` });
    expect(await readFile(path, 'utf8')).toBe(precious);
  });

  it('lays the pool out as documented and restores LRU order from sequence numbers', async () => {
    const tier = await openPool();
    for (let i = 0; i < SLOTS; i += 1) await tier.put(`b${i}`, randomBytes(BLOCK));
    await tier.close();
    expect((await readFile(path)).length).toBe(poolGeometry(BLOCK, SLOTS).fileBytes);
    const after = await openPool();
    await after.put('b4', randomBytes(BLOCK)); // evicts b0, the oldest write
    expect(after.has('b0')).toBe(false);
    expect(after.has('b1')).toBe(true);
    await after.close();
  });

  describe('slots lent to native readers (locate)', () => {
    /** The bytes a native reader finds at a located place of the pool file. */
    async function readPlace(place: { path: string; offset: number }, length: number): Promise<Buffer> {
      const handle = await open(place.path, 'r');
      try {
        const bytes = Buffer.alloc(length);
        await handle.read(bytes, 0, length, place.offset);
        return bytes;
      } finally {
        await handle.close();
      }
    }

    it('answers where the block lies in the pool file, with its CRC; not a block of another length', async () => {
      const tier = await openPool();
      const bytes = randomBytes(BLOCK - 100);
      await tier.put('a', bytes);
      const place = tier.locate('a', bytes.length)!;
      expect(place.path).toBe(path);
      expect(place.checksum).toBe(blockChecksum(bytes));
      expect((await readPlace(place, bytes.length)).equals(bytes)).toBe(true);
      expect(tier.locate('a', BLOCK)).toBeUndefined();
      expect(tier.locate('absent', BLOCK)).toBeUndefined();
      tier.unlocate(place);
      tier.countHits(3);
      expect(tier.stats().hits).toBe(3);
      await tier.close();
    });

    it('does not reuse a lent slot when its block is evicted or deleted, until the last loan ends', async () => {
      const tier = await openPool();
      const lent = randomBytes(BLOCK);
      await tier.put('lent', lent);
      const first = tier.locate('lent', BLOCK)!;
      const second = tier.locate('lent', BLOCK)!;
      // Fill the pool twice over: eviction passes the lent slot by.
      for (let i = 0; i < 2 * SLOTS; i += 1) expect(await tier.put(`other${i}`, randomBytes(BLOCK))).toBe(true);
      expect(tier.has('lent')).toBe(true);
      await tier.delete('lent');
      expect(tier.has('lent')).toBe(false);
      for (let i = 0; i < SLOTS; i += 1) await tier.put(`more${i}`, randomBytes(BLOCK));
      expect((await readPlace(first, BLOCK)).equals(lent)).toBe(true);
      tier.unlocate(first);
      for (let i = 0; i < SLOTS; i += 1) await tier.put(`again${i}`, randomBytes(BLOCK));
      expect((await readPlace(second, BLOCK)).equals(lent)).toBe(true);
      // The last loan ends: the slot is free again and the next puts reuse it.
      tier.unlocate(second);
      for (let i = 0; i < SLOTS; i += 1) await tier.put(`fresh${i}`, randomBytes(BLOCK));
      expect((await readPlace(second, BLOCK)).equals(lent)).toBe(false);
      expect(tier.stats().blocks).toBe(SLOTS);
      await tier.close();
    });

    it('fails a put rather than reuse a slot when every slot is lent', async () => {
      const tier = await openPool();
      const places = [];
      for (let i = 0; i < SLOTS; i += 1) {
        await tier.put(`b${i}`, randomBytes(BLOCK));
        places.push(tier.locate(`b${i}`, BLOCK)!);
      }
      expect(await tier.put('extra', randomBytes(BLOCK))).toBe(false);
      tier.unlocate(places[0]!);
      expect(await tier.put('extra', randomBytes(BLOCK))).toBe(true);
      expect(tier.has('b0')).toBe(false);
      await tier.close();
    });
  });
});
