import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { blockId } from './block-key.js';
import { NvmeTier } from './nvme-tier.js';
import { PinSet } from './pins.js';

const ref = (key: string) => ({ storeId: 's3://b', key, etag: 'e1', size: 3 * 65536 });

describe('PinSet', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('pins');
  });
  afterEach(async () => {
    await cleanupDir(dir);
  });

  it('pins the blocks of covered object versions only, and persists paths', async () => {
    const pins = await PinSet.open(dir);
    await pins.add('/models');
    pins.cover('/models', ref('models/a.bin'));
    expect(pins.isPinned(blockId({ ...ref('models/a.bin'), index: 2 }))).toBe(true);
    expect(pins.isPinned(blockId({ ...ref('models/a.bin'), etag: 'e2', index: 2 }))).toBe(false);
    expect(pins.isPinned(blockId({ ...ref('other.bin'), index: 0 }))).toBe(false);
    expect((await PinSet.open(dir)).paths()).toEqual(['/models']);
    expect(await pins.remove('/models')).toBe(true);
    expect(pins.isPinned(blockId({ ...ref('models/a.bin'), index: 2 }))).toBe(false);
    expect((await PinSet.open(dir)).paths()).toEqual([]);
  });

  it('keeps pinned blocks in the NVMe tier while others are evicted, and refuses a put when all is pinned', async () => {
    const pins = await PinSet.open(dir);
    await pins.add('/p');
    pins.cover('/p', ref('pinned'));
    const block = Buffer.alloc(64 * 1024, 7);
    // Room for about three blocks (each file also has a small header).
    const tier = await NvmeTier.open({ dir: join(dir, 'nvme'), capacityBytes: 3 * block.length + 3 * 4096, reserveBytes: 0, isPinned: pins.isPinned }, silentLogger());
    try {
      const pinnedId = blockId({ ...ref('pinned'), index: 0 });
      expect(await tier.put(pinnedId, block)).toBe(true);
      for (let i = 0; i < 6; i++) expect(await tier.put(blockId({ ...ref(`other-${i}`), index: 0 }), block)).toBe(true);
      expect(tier.has(pinnedId)).toBe(true);
      expect(tier.stats().evictions).toBeGreaterThan(0);
      for (let i = 1; i < 3; i++) await tier.put(blockId({ ...ref('pinned'), index: i }), block);
      expect(await tier.put(blockId({ ...ref('late'), index: 0 }), block)).toBe(false);
    } finally {
      await tier.close();
    }
  });
});
