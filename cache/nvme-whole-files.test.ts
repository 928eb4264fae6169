import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type ObjectRef, type ObjectStore } from '../store/index.js';
import { metricsText, silentLogger } from '../telemetry/index.js';
import { BlockCache } from './block-cache.js';
import { resolveBlockCacheConfig } from './block-cache-config.js';
import { blockId, blockKeyOf, objectVersionId } from './block-key.js';
import { NvmeTier } from './nvme-tier.js';

const logger = silentLogger();
const BLOCK = 64 * 1024;
const MiB = 1024 * 1024;

/** Files of the tier folder ending with `suffix` (`.blk` block files, `.obj` whole files). */
async function filesEnding(dir: string, suffix: string): Promise<string[]> {
  const subs = (await readdir(dir)).filter((name) => /^[0-9a-f]{2}$/.test(name));
  const lists = await Promise.all(subs.map(async (sub) => (await readdir(join(dir, sub))).filter((n) => n.endsWith(suffix)).map((n) => join(dir, sub, n))));
  return lists.flat();
}

async function metric(name: string): Promise<number> {
  const line = (await metricsText()).split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** An object version of `size` random bytes, and its block ids in `BLOCK`-byte blocks. */
function object(key: string, size: number): { ref: ObjectRef; bytes: Buffer; ids: string[]; id: string } {
  const bytes = randomBytes(size);
  const ref = { storeId: 'file:///test', key, etag: 'e1', size };
  const ids = Array.from({ length: Math.ceil(size / BLOCK) }, (_, i) => blockId(blockKeyOf(ref, i)));
  return { ref, bytes, ids, id: objectVersionId(ref) };
}

async function putBlocks(tier: NvmeTier, o: { bytes: Buffer; ids: string[] }): Promise<void> {
  for (const [i, id] of o.ids.entries()) expect(await tier.put(id, o.bytes.subarray(i * BLOCK, (i + 1) * BLOCK))).toBe(true);
}

describe('NvmeTier whole-object files', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-whole-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('copies a whole object into one file at its own offsets, drops the block files, and serves the blocks from it', async () => {
    const o = object('a.bin', 3 * BLOCK + 1000);
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await tier.scanned;
    await putBlocks(tier, o);
    const blockBytes = tier.usedBytes;
    expect(tier.wholeFile(o.id)).toBeUndefined();
    expect(await tier.assembleWhole(o.id, o.ref.size, BLOCK)).toBe(true);
    const whole = tier.wholeFile(o.id)!;
    expect(whole.size).toBe(o.ref.size);
    expect((await readFile(whole.path)).equals(o.bytes)).toBe(true);
    expect(await filesEnding(dir, '.blk')).toEqual([]);
    // Kept once: the file's bytes, not the blocks' too (block files also carried headers).
    expect(tier.usedBytes).toBe(o.ref.size);
    expect(tier.usedBytes).toBeLessThan(blockBytes);
    expect(tier.stats().blocks).toBe(4);
    for (const [i, id] of o.ids.entries()) {
      const length = Math.min(BLOCK, o.ref.size - i * BLOCK);
      expect(tier.has(id)).toBe(true);
      expect(tier.locate(id, length)).toMatchObject({ path: whole.path, offset: i * BLOCK });
      expect((await tier.get(id))!.equals(o.bytes.subarray(i * BLOCK, i * BLOCK + length))).toBe(true);
    }
    // Putting a block of a whole object again changes nothing.
    expect(await tier.put(o.ids[1]!, o.bytes.subarray(BLOCK, 2 * BLOCK))).toBe(true);
    expect(await filesEnding(dir, '.blk')).toEqual([]);
    await tier.close();

    // A restart finds the whole file in the index, and nothing else.
    const again = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await again.scanned;
    expect(again.wholeFile(o.id)?.path).toBe(whole.path);
    expect(again.usedBytes).toBe(o.ref.size);
    expect(again.stats().blocks).toBe(4);
    expect((await again.get(o.ids[3]!))!.equals(o.bytes.subarray(3 * BLOCK))).toBe(true);
    // Dropping any block of it (a changed object) drops the whole file.
    await again.delete(o.ids[0]!);
    expect(again.wholeFile(o.id)).toBeUndefined();
    expect(again.has(o.ids[2]!)).toBe(false);
    expect(again.usedBytes).toBe(0);
    expect(await filesEnding(dir, '.obj')).toEqual([]);
    await again.close();
  });

  it('makes nothing while a block is missing, and drops a block that fails its CRC instead of copying it', async () => {
    const o = object('b.bin', 3 * BLOCK);
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await tier.scanned;
    await tier.put(o.ids[0]!, o.bytes.subarray(0, BLOCK));
    await tier.put(o.ids[1]!, o.bytes.subarray(BLOCK, 2 * BLOCK));
    expect(await tier.assembleWhole(o.id, o.ref.size, BLOCK)).toBe(false);
    await tier.put(o.ids[2]!, o.bytes.subarray(2 * BLOCK));
    // Flip the last byte of the middle block's file.
    const bad = tier.locate(o.ids[1]!, BLOCK)!;
    const handle = await open(bad.path, 'r+');
    await handle.write(Buffer.from([o.bytes[2 * BLOCK - 1]! ^ 0xff]), 0, 1, bad.offset + BLOCK - 1);
    await handle.close();
    const mismatches = tier.stats().checksumMismatches;
    expect(await tier.assembleWhole(o.id, o.ref.size, BLOCK)).toBe(false);
    expect(tier.stats().checksumMismatches).toBe(mismatches + 1);
    expect(tier.has(o.ids[1]!)).toBe(false);
    expect(tier.has(o.ids[0]!)).toBe(true);
    expect(await filesEnding(dir, '.obj')).toEqual([]);
    expect((await readdir(dir, { recursive: true })).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    await tier.close();
  });

  it('after a crash: removes a whole file the log never recorded, and block files a recorded one replaced', async () => {
    const o = object('c.bin', 2 * BLOCK + 10);
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await tier.scanned;
    await putBlocks(tier, o);
    const blocks = await filesEnding(dir, '.blk');
    const saved = await Promise.all(blocks.map(async (path) => ({ path, bytes: await readFile(path) })));
    const logBefore = await readFile(join(dir, 'index.log'), 'utf8');
    expect(await tier.assembleWhole(o.id, o.ref.size, BLOCK)).toBe(true);
    const wholePath = tier.wholeFile(o.id)!.path;
    await tier.close();
    const wholeRecord = (await readFile(join(dir, 'index.log'), 'utf8')).split('\n').find((l) => l.startsWith('W '))!;

    // Crash between the rename and the log append: the file is there, the log knows only blocks.
    for (const { path, bytes } of saved) await writeFile(path, bytes);
    await writeFile(join(dir, 'index.log'), logBefore);
    const orphaned = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await orphaned.scanned;
    expect(orphaned.wholeFile(o.id)).toBeUndefined();
    expect(await filesEnding(dir, '.obj')).toEqual([]);
    expect((await orphaned.get(o.ids[2]!))!.equals(o.bytes.subarray(2 * BLOCK))).toBe(true);
    await orphaned.close();

    // Crash between the log append and the removal of the block files.
    expect(await filesEnding(dir, '.blk')).toHaveLength(3);
    const rebuilt = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await rebuilt.scanned;
    expect(await rebuilt.assembleWhole(o.id, o.ref.size, BLOCK)).toBe(true);
    await rebuilt.close();
    for (const { path, bytes } of saved) await writeFile(path, bytes);
    await writeFile(join(dir, 'index.log'), `${logBefore}${wholeRecord}\n`);
    const crashed = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await crashed.scanned;
    expect(crashed.wholeFile(o.id)?.path).toBe(wholePath);
    expect(await filesEnding(dir, '.blk')).toEqual([]);
    expect(crashed.usedBytes).toBe(o.ref.size);
    await crashed.close();

    // A torn W record (no newline) is not trusted: the file goes, blocks are refetched later.
    await writeFile(join(dir, 'index.log'), wholeRecord.slice(0, -3));
    const torn = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await torn.scanned;
    expect(torn.wholeFile(o.id)).toBeUndefined();
    expect(await filesEnding(dir, '.obj')).toEqual([]);
    await torn.close();
  });

  it('stops an assembly when the tier closes: no file, no temporary file, the blocks kept', async () => {
    const o = object('big.bin', 64 * BLOCK);
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await tier.scanned;
    await putBlocks(tier, o);
    const assembling = tier.assembleWhole(o.id, o.ref.size, BLOCK);
    await tier.close();
    expect(await assembling).toBe(false);
    expect(await filesEnding(dir, '.obj')).toEqual([]);
    expect((await readdir(dir, { recursive: true })).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const again = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await again.scanned;
    expect(o.ids.every((id) => again.has(id))).toBe(true);
    expect(again.wholeFile(o.id)).toBeUndefined();
    await again.close();
  });

  it('evicts a whole file as one entry, least recently opened first, and never a pinned one', async () => {
    const a = object('a.bin', 4 * BLOCK);
    const b = object('b.bin', 4 * BLOCK);
    const c = object('c.bin', 6 * BLOCK);
    let pinned = '';
    // Room for one whole file and the blocks and file of another being made whole.
    const tier = await NvmeTier.open({ dir, capacityBytes: 13 * BLOCK, reserveBytes: 0, isPinned: (id) => pinned !== '' && id.startsWith(pinned) }, logger);
    await tier.scanned;
    await putBlocks(tier, a);
    expect(await tier.assembleWhole(a.id, a.ref.size, BLOCK)).toBe(true);
    await putBlocks(tier, b);
    expect(await tier.assembleWhole(b.id, b.ref.size, BLOCK)).toBe(true);
    expect(tier.usedBytes).toBe(8 * BLOCK);
    // Opening a makes b the least recently opened: c's blocks push b out, whole.
    expect(tier.wholeFile(a.id)).toBeDefined();
    await putBlocks(tier, c);
    expect(tier.wholeFile(b.id)).toBeUndefined();
    expect(tier.has(b.ids[0]!)).toBe(false);
    expect(tier.wholeFile(a.id)).toBeDefined();
    expect(tier.usedBytes).toBeLessThanOrEqual(13 * BLOCK);
    // With a pinned there is no room for c's file next to its blocks: nothing is evicted, nothing made.
    pinned = a.id.slice(0, -1);
    expect(await tier.assembleWhole(c.id, c.ref.size, BLOCK)).toBe(false);
    expect(tier.wholeFile(a.id)).toBeDefined();
    expect(c.ids.every((id) => tier.has(id))).toBe(true);
    pinned = '';
    expect(await tier.assembleWhole(c.id, c.ref.size, BLOCK)).toBe(true);
    expect(tier.wholeFile(a.id)).toBeUndefined();
    expect(tier.usedBytes).toBe(6 * BLOCK);
    await tier.close();
  });

  it('scrubs whole files in the background: a flipped byte drops the file, and its blocks are misses again', async () => {
    const o = object('s.bin', 3 * BLOCK);
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0, scrubBytesPerSecond: 64 * MiB }, logger);
    await tier.scanned;
    await putBlocks(tier, o);
    const scrubbed = await metric('strata_cache_scrub_bytes_total');
    const found = await metric('strata_cache_scrub_mismatches_total');
    expect(await tier.assembleWhole(o.id, o.ref.size, BLOCK)).toBe(true);
    // The scrub was idle (no whole file yet): the new file wakes it.
    const path = tier.wholeFile(o.id)!.path;
    const deadline = Date.now() + 20_000;
    while ((await metric('strata_cache_scrub_bytes_total')) < scrubbed + o.ref.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await metric('strata_cache_scrub_bytes_total')).toBeGreaterThanOrEqual(scrubbed + o.ref.size);
    expect(tier.wholeFile(o.id)).toBeDefined();
    const handle = await open(path, 'r+');
    await handle.write(Buffer.from([o.bytes[BLOCK + 7]! ^ 0x01]), 0, 1, BLOCK + 7);
    await handle.close();
    while (tier.wholeFile(o.id, { touch: false }) !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(tier.wholeFile(o.id)).toBeUndefined();
    expect(await metric('strata_cache_scrub_mismatches_total')).toBe(found + 1);
    expect(tier.has(o.ids[0]!)).toBe(false);
    expect(await tier.get(o.ids[1]!)).toBeUndefined();
    await tier.close();
  }, 30_000);
});

describe('BlockCache over a local store: whole files for passthrough', () => {
  let dir: string;
  let store: ObjectStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-whole-cache-'));
    await mkdir(join(dir, 'store'));
    store = openStore(`file://${join(dir, 'store')}`);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const open = (wholeFiles: boolean) =>
    BlockCache.open(
      resolveBlockCacheConfig({ blockSize: MiB, memoryBudgetBytes: 8 * MiB, nvme: { dir: join(dir, 'nvme'), capacityBytes: 64 * MiB, reserveBytes: 0, wholeFiles } }),
      logger,
      async ({ ref, range }) => (await store.getRange(ref.key, range.start, range.length, { ifMatch: ref.etag })).body,
    );

  it('makes an object whole once a reader closes it, and a restarted cache hands out the same file', async () => {
    const bytes = randomBytes(5 * MiB + 333);
    await store.put('model.bin', bytes);
    const info = (await store.head('model.bin'))!;
    const ref: ObjectRef = { storeId: 'file://test', key: 'model.bin', etag: info.etag, size: info.size };
    let cache = await open(true);
    let session = cache.openSession(ref);
    expect(cache.wholeFile(session)).toBeUndefined();
    expect((await cache.read(session, 0, bytes.length)).equals(bytes)).toBe(true);
    cache.closeSession(session);
    await cache.wholeFilesSettled();
    session = cache.openSession(ref);
    const path = cache.wholeFile(session)!;
    expect(createHash('sha256').update(await readFile(path)).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
    cache.closeSession(session);
    await cache.close();

    cache = await open(true);
    session = cache.openSession(ref);
    expect(cache.wholeFile(session)).toBe(path);
    // The block view of the whole object is the same file at each block's offset.
    expect(cache.locate(session)!.blocks.map((b) => (b && 'path' in b ? b.path : undefined))).toEqual(Array(6).fill(path));
    expect((await cache.read(session, 4 * MiB - 5, 10)).equals(bytes.subarray(4 * MiB - 5, 4 * MiB + 5))).toBe(true);
    cache.closeSession(session);
    await cache.close();
  });

  it('takes an adopted checkpoint as its whole file by a hard link, copying nothing, so its first open can pass through', async () => {
    const bytes = randomBytes(3 * MiB + 1);
    const staged = join(dir, 'staged.bin');
    await writeFile(staged, bytes);
    const ref: ObjectRef = { storeId: 'file://test', key: 'ckpt.bin', etag: 'e-ckpt', size: bytes.length };
    let cache = await open(true);
    expect(await cache.adopt(ref, staged)).toBe(4);
    const path = cache.wholeFile(cache.openSession(ref))!;
    expect((await stat(path)).ino).toBe((await stat(staged)).ino);
    expect(await filesEnding(join(dir, 'nvme'), '.blk')).toEqual([]);
    // The write path deletes its staged copy next; the whole file stays, and so after a restart.
    await rm(staged);
    await cache.close();
    cache = await open(true);
    const session = cache.openSession(ref);
    expect(cache.wholeFile(session)).toBe(path);
    expect((await cache.read(session, 2 * MiB - 7, MiB + 8)).equals(bytes.subarray(2 * MiB - 7, 3 * MiB + 1))).toBe(true);
    cache.closeSession(session);
    await cache.close();
  });

  it('copies an adopted checkpoint into blocks when whole files are off', async () => {
    const bytes = randomBytes(2 * MiB + 5);
    const staged = join(dir, 'staged-off.bin');
    await writeFile(staged, bytes);
    const ref: ObjectRef = { storeId: 'file://test', key: 'ckpt-off.bin', etag: 'e-off', size: bytes.length };
    const cache = await open(false);
    expect(await cache.adopt(ref, staged)).toBe(3);
    await cache.writesSettled();
    expect(cache.wholeFile(cache.openSession(ref))).toBeUndefined();
    expect(await filesEnding(join(dir, 'nvme'), '.blk')).toHaveLength(3);
    await cache.close();
  });

  it('leaves an object of one block as its block file', async () => {
    const bytes = randomBytes(MiB - 3);
    await store.put('small.bin', bytes);
    const info = (await store.head('small.bin'))!;
    const ref: ObjectRef = { storeId: 'file://test', key: 'small.bin', etag: info.etag, size: info.size };
    const cache = await open(true);
    const session = cache.openSession(ref);
    expect((await cache.read(session, 0, bytes.length)).equals(bytes)).toBe(true);
    cache.closeSession(session);
    await cache.writesSettled();
    await cache.wholeFilesSettled();
    expect(cache.wholeFile(cache.openSession(ref))).toBeUndefined();
    expect(await filesEnding(join(dir, 'nvme'), '.blk')).toHaveLength(1);
    await cache.close();
  });

  it('keeps block files only when whole files are turned off', async () => {
    const bytes = randomBytes(2 * MiB + 1);
    await store.put('x.bin', bytes);
    const info = (await store.head('x.bin'))!;
    const ref: ObjectRef = { storeId: 'file://test', key: 'x.bin', etag: info.etag, size: info.size };
    const cache = await open(false);
    const session = cache.openSession(ref);
    await cache.read(session, 0, bytes.length);
    cache.closeSession(session);
    await cache.wholeFilesSettled();
    await cache.writesSettled();
    expect(cache.wholeFile(cache.openSession(ref))).toBeUndefined();
    expect(await filesEnding(join(dir, 'nvme'), '.blk')).toHaveLength(3);
    await cache.close();
  });
});
