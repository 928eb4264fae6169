import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { blockId, blockKeyOf } from './block-key.js';
import { locateBlockFiles } from './block-files.js';
import { blockChecksum } from './checksum.js';
import { DramTier } from './dram-tier.js';
import { NvmeTier } from './nvme-tier.js';
import type { BlockFile, BlockMemory } from './object-reader.js';
import { PmemTier } from './pmem-tier.js';

const logger = silentLogger();
const BLOCK = 64 * 1024;

describe('locateBlockFiles', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join('/dev/shm', 'strata-block-files-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('answers each block from the fastest file tier that holds it, counts the blocks read as its hits, and gives pmem slots back once', async () => {
    const pmem = await PmemTier.open({ path: join(dir, 'pool'), capacityBytes: 2 * BLOCK, blockSize: BLOCK }, logger);
    const nvme = await NvmeTier.open({ dir: join(dir, 'nvme'), capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    const ref = { storeId: 'file:///data', key: 'model.bin', etag: '"e1"', size: 3 * BLOCK - 10 };
    const id = (index: number) => blockId(blockKeyOf(ref, index));
    const bytes = [randomBytes(BLOCK), randomBytes(BLOCK), randomBytes(BLOCK - 10)];
    await pmem.put(id(0), bytes[0]!);
    await nvme.put(id(0), bytes[0]!);
    await nvme.put(id(2), bytes[2]!);

    const files = locateBlockFiles(ref, BLOCK, [pmem, nvme])!;
    expect(files.blocks[0]).toEqual({ path: join(dir, 'pool'), offset: expect.any(Number), checksum: blockChecksum(bytes[0]!) });
    expect(files.blocks[1]).toBeUndefined();
    const third = files.blocks[2] as BlockFile;
    expect(third.path.startsWith(join(dir, 'nvme'))).toBe(true);
    expect(third.checksum).toBe(blockChecksum(bytes[2]!));

    // While lent, the pool's slot of block 0 (now its oldest) is not reused: the other slot is.
    for (const other of ['x', 'y', 'w']) expect(await pmem.put(other, randomBytes(BLOCK))).toBe(true);
    expect(pmem.has(id(0))).toBe(true);
    files.read([0, 2]);
    files.read([0, 2]);
    expect(pmem.stats().hits).toBe(1);
    expect(nvme.stats().hits).toBe(1);
    // Given back: block 0 is the least recently used and can be evicted now.
    expect(await pmem.put('z', randomBytes(BLOCK))).toBe(true);
    expect(pmem.has(id(0))).toBe(false);
    await pmem.close();
    await nvme.close();
  });

  it('answers undefined when no file tier holds a block', async () => {
    const nvme = await NvmeTier.open({ dir: join(dir, 'nvme'), capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    expect(locateBlockFiles({ storeId: 's', key: 'k', etag: 'e', size: BLOCK }, BLOCK, [nvme])).toBeUndefined();
    await nvme.close();
  });

  it('lends DRAM buffers first, keeps them alive past eviction until given back, and stops lending past a quarter of the capacity', async () => {
    const dram = new DramTier({ capacityBytes: 4 * BLOCK }, logger);
    const ref = { storeId: 'file:///data', key: 'weights.bin', etag: '"e2"', size: 2 * BLOCK };
    const id = (index: number) => blockId(blockKeyOf(ref, index));
    const bytes = [randomBytes(BLOCK), randomBytes(BLOCK)];
    dram.putNow(id(0), bytes[0]!);
    dram.putNow(id(1), bytes[1]!);
    const files = locateBlockFiles(ref, BLOCK, [dram])!;
    expect((files.blocks[0] as BlockMemory).memory).toBe(dram.peekNow(id(0)));
    expect((files.blocks[1] as BlockMemory).memory.equals(bytes[1]!)).toBe(true);
    // Both lent blocks are evicted: 2 blocks (half the capacity) now live outside the tier.
    for (let i = 0; i < 4; i++) dram.putNow(`other${i}`, randomBytes(BLOCK));
    expect(dram.has(id(0))).toBe(false);
    dram.putNow(id(0), bytes[0]!);
    expect(locateBlockFiles(ref, BLOCK, [dram])).toBeUndefined();
    files.read([1]);
    expect(dram.stats().hits).toBe(1);
    // Given back: lending resumes.
    expect((locateBlockFiles(ref, BLOCK, [dram])!.blocks[0] as BlockMemory).memory.equals(bytes[0]!)).toBe(true);
    await dram.close();
  });
});
