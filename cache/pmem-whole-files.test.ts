import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { blockIdInVersion } from './block-key.js';
import { readSlotRecord, recordOffset } from './pmem-pool-layout.js';
import { PmemTier } from './pmem-tier.js';

const BLOCK = 64 * 1024;
const SLOTS = 8;
const logger = silentLogger();
const OBJECT = JSON.stringify(['store', 'model.bin', '"etag-1"']);
const OTHER = JSON.stringify(['store', 'other.bin', '"etag-2"']);

describe('PmemTier whole files', () => {
  let dir: string;
  let path: string;
  let wholeDir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join('/dev/shm', 'strata-pmem-whole-'));
    path = join(dir, 'strata.pool');
    wholeDir = `${path}.whole`;
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const openPool = (options: { wholeFiles?: boolean; isPinned?: (id: string) => boolean } = {}) =>
    PmemTier.open({ path, capacityBytes: SLOTS * BLOCK, blockSize: BLOCK, wholeFiles: options.wholeFiles ?? true, ...(options.isPinned ? { isPinned: options.isPinned } : {}) }, logger);

  /** Puts the blocks of an object of `size` bytes into `tier`; answers the object's bytes. */
  async function putObject(tier: PmemTier, objectId: string, size: number): Promise<Buffer> {
    const body = randomBytes(size);
    for (let index = 0; index * BLOCK < size; index++) expect(await tier.put(blockIdInVersion(objectId, index), body.subarray(index * BLOCK, (index + 1) * BLOCK))).toBe(true);
    return body;
  }

  /** Bytes of memory the pool file holds now (tmpfs counts allocated pages in st_blocks). */
  async function poolMemory(): Promise<number> {
    return (await stat(path)).blocks * 512;
  }

  it('copies an object whose blocks are all in the pool into one file with its own offsets, giving back its slots\' memory', async () => {
    const tier = await openPool();
    const size = 3 * BLOCK + 100;
    const body = await putObject(tier, OBJECT, size);
    const before = await poolMemory();
    expect(await tier.assembleWhole(OBJECT, size, BLOCK)).toBe(true);
    const whole = tier.wholeFile(OBJECT);
    expect(whole?.size).toBe(size);
    expect((await readFile(whole!.path)).equals(body)).toBe(true);
    // The four slots' memory went back to the system; the file holds the bytes now.
    expect(before - (await poolMemory())).toBe(4 * BLOCK);
    // Blocks are still there for single-block reads, from the file, and count as the tier's.
    expect(tier.has(blockIdInVersion(OBJECT, 3))).toBe(true);
    expect((await tier.get(blockIdInVersion(OBJECT, 1)))?.equals(body.subarray(BLOCK, 2 * BLOCK))).toBe(true);
    expect((await tier.get(blockIdInVersion(OBJECT, 3)))?.equals(body.subarray(3 * BLOCK))).toBe(true);
    expect(tier.locate(blockIdInVersion(OBJECT, 2), BLOCK)).toMatchObject({ path: whole!.path, offset: 2 * BLOCK });
    expect(tier.stats()).toMatchObject({ blocks: 4, usedBytes: size });
    // The file stands in for four slots: four are left for blocks, the fifth put evicts.
    await putObject(tier, OTHER, 4 * BLOCK);
    expect(tier.wholeFile(OBJECT, { touch: false })).toBeDefined();
    expect(tier.stats().evictions).toBe(0);
    await tier.close();
  });

  it('keeps whole files across a restart, and evicts a file whole, making its slots usable again', async () => {
    const first = await openPool();
    const body = await putObject(first, OBJECT, 4 * BLOCK);
    expect(await first.assembleWhole(OBJECT, 4 * BLOCK, BLOCK)).toBe(true);
    // No close: the process "died" after the commit.
    const tier = await openPool();
    const whole = tier.wholeFile(OBJECT, { touch: false });
    expect((await readFile(whole!.path)).equals(body)).toBe(true);
    expect(tier.stats()).toMatchObject({ blocks: 4, usedBytes: 4 * BLOCK });
    // Eight slots, four held by the file: eight new blocks need the file's four.
    await putObject(tier, OTHER, 8 * BLOCK);
    expect(tier.wholeFile(OBJECT, { touch: false })).toBeUndefined();
    expect(tier.has(blockIdInVersion(OBJECT, 0))).toBe(false);
    expect(tier.stats()).toMatchObject({ blocks: 8, usedBytes: 8 * BLOCK });
    expect((await readdir(wholeDir)).sort()).toEqual([]);
    expect(await poolMemory()).toBeGreaterThanOrEqual(SLOTS * BLOCK);
    for (let index = 0; index < 8; index++) expect(await tier.get(blockIdInVersion(OTHER, index))).toBeDefined();
    await tier.close();
  });

  it('never evicts the whole file of a pinned object', async () => {
    const tier = await openPool({ isPinned: (id) => id === blockIdInVersion(OBJECT, 0) });
    await putObject(tier, OBJECT, 4 * BLOCK);
    expect(await tier.assembleWhole(OBJECT, 4 * BLOCK, BLOCK)).toBe(true);
    await putObject(tier, OTHER, 4 * BLOCK);
    expect(await tier.put(blockIdInVersion(OTHER, 9), randomBytes(BLOCK))).toBe(true);
    expect(tier.wholeFile(OBJECT, { touch: false })).toBeDefined();
    await tier.close();
  });

  it('makes nothing when a block is missing, and drops a file whose block fails its CRC when read', async () => {
    const tier = await openPool();
    const body = await putObject(tier, OBJECT, 3 * BLOCK);
    await tier.delete(blockIdInVersion(OBJECT, 1));
    expect(await tier.assembleWhole(OBJECT, 3 * BLOCK, BLOCK)).toBe(false);
    expect(await tier.put(blockIdInVersion(OBJECT, 1), body.subarray(BLOCK, 2 * BLOCK))).toBe(true);
    expect(await tier.assembleWhole(OBJECT, 3 * BLOCK, BLOCK)).toBe(true);
    const { path: file } = tier.wholeFile(OBJECT)!;
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([body[BLOCK + 7]! ^ 1]), 0, 1, BLOCK + 7);
    await handle.close();
    expect(await tier.get(blockIdInVersion(OBJECT, 1))).toBeUndefined();
    expect(tier.stats().checksumMismatches).toBe(1);
    expect(tier.wholeFile(OBJECT)).toBeUndefined();
    expect(tier.has(blockIdInVersion(OBJECT, 0))).toBe(false);
    expect(tier.stats()).toMatchObject({ blocks: 0, usedBytes: 0 });
    await tier.close();
  });

  it('a crash after the manifest is committed and before the slots are cleared: the file holds, the slots\' records go', async () => {
    const first = await openPool();
    const body = await putObject(first, OBJECT, 2 * BLOCK);
    expect(await first.assembleWhole(OBJECT, 2 * BLOCK, BLOCK)).toBe(true);
    const manifest = JSON.parse(await readFile(join(wholeDir, (await readdir(wholeDir)).find((n) => n.endsWith('.json'))!), 'utf8')) as { slots: number[] };
    await first.close();
    // Put the records back as they were before the commit cleared them: what a crash between the two leaves.
    const crashed = await openPool({ wholeFiles: false });
    expect(await crashed.put(blockIdInVersion(OBJECT, 0), body.subarray(0, BLOCK))).toBe(true);
    expect(await crashed.put(blockIdInVersion(OBJECT, 1), body.subarray(BLOCK))).toBe(true);
    await crashed.close();
    // wholeFiles off removed the folder: write it back as it was.
    await writeManifestAndData(wholeDir, manifest, body, await slotsOfRecords());
    const tier = await openPool();
    expect(tier.wholeFile(OBJECT, { touch: false })).toBeDefined();
    expect(tier.stats()).toMatchObject({ blocks: 2, usedBytes: 2 * BLOCK });
    const file = await readFile(path);
    for (const slot of await manifestSlots()) expect(readSlotRecord(file, recordOffset(slot), BLOCK)).toBeUndefined();
    await tier.close();
  });

  it('removes leftovers at open: data without a manifest, a manifest without data, temporary files', async () => {
    const first = await openPool();
    await putObject(first, OBJECT, 2 * BLOCK);
    expect(await first.assembleWhole(OBJECT, 2 * BLOCK, BLOCK)).toBe(true);
    await first.close();
    const names = await readdir(wholeDir);
    expect(names.filter((n) => n.endsWith('.data'))).toHaveLength(1);
    await rm(join(wholeDir, names.find((n) => n.endsWith('.json'))!));
    await writeFile(join(wholeDir, '.tmp-leftover'), 'x');
    await writeFile(join(wholeDir, `${'0'.repeat(64)}.json`), '{"objectId":"x"}');
    const tier = await openPool();
    expect(await readdir(wholeDir)).toEqual([]);
    expect(tier.wholeFile(OBJECT)).toBeUndefined();
    // Both slots are free again: eight blocks fit without an eviction.
    await putObject(tier, OTHER, 8 * BLOCK);
    expect(tier.stats().evictions).toBe(0);
    await tier.close();
  });

  it('with whole files off, makes none and removes those of an earlier run', async () => {
    const first = await openPool();
    await putObject(first, OBJECT, 2 * BLOCK);
    expect(await first.assembleWhole(OBJECT, 2 * BLOCK, BLOCK)).toBe(true);
    await first.close();
    const tier = await openPool({ wholeFiles: false });
    await expect(stat(wholeDir)).rejects.toMatchObject({ code: 'ENOENT' });
    await putObject(tier, OTHER, 2 * BLOCK);
    expect(await tier.assembleWhole(OTHER, 2 * BLOCK, BLOCK)).toBe(false);
    await putObject(tier, OBJECT, 6 * BLOCK);
    expect(tier.stats().evictions).toBe(0);
    await tier.close();
  });

  /** Slots whose record is valid now, in slot order. */
  async function slotsOfRecords(): Promise<number[]> {
    const file = await readFile(path);
    const slots: number[] = [];
    for (let slot = 0; slot < SLOTS; slot++) if (readSlotRecord(file, recordOffset(slot), BLOCK) !== undefined) slots.push(slot);
    return slots;
  }

  async function manifestSlots(): Promise<number[]> {
    const name = (await readdir(wholeDir)).find((n) => n.endsWith('.json'))!;
    return (JSON.parse(await readFile(join(wholeDir, name), 'utf8')) as { slots: number[] }).slots;
  }

  /** Writes a whole file and its manifest as the tier names them, with `slots` as the manifest's. */
  async function writeManifestAndData(folder: string, manifest: object, body: Buffer, slots: number[]): Promise<void> {
    const hash = createHash('sha256').update(OBJECT).digest('hex');
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, `${hash}.data`), body);
    await writeFile(join(folder, `${hash}.json`), JSON.stringify({ ...manifest, slots }));
  }
});
