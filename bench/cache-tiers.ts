/**
 * Block cache throughput by tier, below the file system: a 1 GiB object read
 * sequentially in 128 KiB pieces (the FUSE request size) through the BlockCache, with
 * each piece copied out as the FUSE reply would copy it. The "store" is an in-memory
 * fetcher that copies from a 4 MiB pattern, so cold figures measure the cache's own
 * cost of fetching, checksumming and writing through, not a network.
 *
 * Rows: cold (DRAM only), cold with write-through to pmem and nvme, then warm from each
 * tier alone (DRAM; pmem on /dev/shm; nvme with the page cache warm, and cold when
 * STRATA_BENCH_DROP_CACHES=1 lets the bench drop the page cache, which needs root).
 * Last, the nvme index reload time for 100,000 real block files.
 *
 * Run: `npx tsx bench/cache-tiers.ts` (or `npm run bench -- cache-tiers`).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BlockCache, NvmeTier, resolveBlockCacheConfig, type BlockCacheOptions, type FetchRange } from '../cache/index.js';
import type { ObjectRef } from '../store/index.js';
import { silentLogger } from '../telemetry/index.js';
import { printTable } from './lib/table.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** 1 GiB: large enough that per-object costs vanish, small enough for /dev/shm and DRAM on a 24 GiB machine. */
const OBJECT_BYTES = GiB;
/** The kernel's FUSE read size without big_writes/max_read tuning (32 pages, as bench/read-path measures). */
const READ_BYTES = 128 * 1024;
const INDEX_BLOCKS = 100_000;
const logger = silentLogger();

const pattern = randomBytes(4 * MiB);
const ref: ObjectRef = { storeId: 'mem://bench', key: 'one-gib.bin', etag: '"bench"', size: OBJECT_BYTES };
let storeBytes = 0;
const fetchRange: FetchRange = async ({ range: { start, length } }) => {
  storeBytes += length;
  const out = Buffer.allocUnsafe(length);
  for (let done = 0; done < length; ) {
    const at = (start + done) % pattern.length;
    done += pattern.copy(out, done, at, Math.min(pattern.length, at + length - done));
  }
  return out;
};

async function readThrough(cache: BlockCache): Promise<{ mbps: number; storeBytes: number }> {
  const before = storeBytes;
  const reply = Buffer.allocUnsafe(READ_BYTES);
  const session = cache.openSession(ref);
  const started = performance.now();
  for (let offset = 0; offset < OBJECT_BYTES; offset += READ_BYTES) {
    const piece = await cache.read(session, offset, READ_BYTES);
    piece.copy(reply);
  }
  const seconds = (performance.now() - started) / 1000;
  cache.closeSession(session);
  return { mbps: OBJECT_BYTES / MiB / seconds, storeBytes: storeBytes - before };
}

async function withCache<T>(options: BlockCacheOptions, body: (cache: BlockCache) => Promise<T>): Promise<T> {
  const cache = await BlockCache.open(resolveBlockCacheConfig(options), logger, fetchRange);
  try {
    return await body(cache);
  } finally {
    await cache.close();
  }
}

async function dropPageCache(): Promise<boolean> {
  if (process.env.STRATA_BENCH_DROP_CACHES !== '1') return false;
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

async function nvmeIndexReload(dir: string): Promise<{ openMs: number; scanMs: number; blocks: number }> {
  const block = randomBytes(4096); // tiny blocks: the index cost depends on the count, not the size
  const tier = await NvmeTier.open({ dir, capacityBytes: 64 * GiB, reserveBytes: 0 }, logger);
  const writers = 16;
  let next = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < INDEX_BLOCKS) {
        const i = next++;
        await tier.put(JSON.stringify(['s3://bench', `dataset/shard-${i >> 6}.tar`, '"0123456789abcdef0123456789abcdef"', i & 63]), block);
      }
    }),
  );
  await tier.close();
  const started = performance.now();
  const reopened = await NvmeTier.open({ dir, capacityBytes: 64 * GiB, reserveBytes: 0 }, logger);
  const openMs = performance.now() - started;
  await reopened.scanned;
  const scanMs = performance.now() - started - openMs;
  const blocks = reopened.stats().blocks;
  await reopened.close();
  return { openMs, scanMs, blocks };
}

export async function run(): Promise<Record<string, unknown>> {
  const work = await mkdtemp(join(tmpdir(), 'strata-bench-cache-'));
  const shm = await mkdtemp(join('/dev/shm', 'strata-bench-cache-'));
  const rows: Array<{ case: string; 'MB/s': number; 'store MiB': number }> = [];
  const add = (name: string, result: { mbps: number; storeBytes: number }) =>
    rows.push({ case: name, 'MB/s': Math.round(result.mbps), 'store MiB': Math.round(result.storeBytes / MiB) });
  const dramOnly: BlockCacheOptions = { memoryBudgetBytes: OBJECT_BYTES + 256 * MiB };
  const pmem = { path: join(shm, 'strata.pool'), capacityBytes: OBJECT_BYTES };
  const nvme = { dir: join(work, 'nvme'), capacityBytes: 2 * OBJECT_BYTES, reserveBytes: 0 };
  try {
    await withCache(dramOnly, async (cache) => {
      add('cold, DRAM only', await readThrough(cache));
      add('warm, DRAM', await readThrough(cache));
    });
    await withCache({ ...dramOnly, pmem, nvme }, async (cache) => add('cold, DRAM + pmem + nvme write-through', await readThrough(cache)));
    const noDram = { dram: false, memoryBudgetBytes: 256 * MiB };
    await withCache({ ...noDram, pmem }, async (cache) => add('warm, pmem alone (/dev/shm)', await readThrough(cache)));
    await withCache({ ...noDram, nvme }, async (cache) => add('warm, nvme alone (page cache warm)', await readThrough(cache)));
    if (await dropPageCache()) {
      await withCache({ ...noDram, nvme }, async (cache) => add('warm, nvme alone (page cache dropped)', await readThrough(cache)));
    }
    await rm(join(work, 'nvme'), { recursive: true, force: true });
    await rm(shm, { recursive: true, force: true });
    const index = await nvmeIndexReload(join(work, 'index'));
    printTable(
      `BlockCache, 1 GiB read sequentially in ${READ_BYTES / 1024} KiB pieces`,
      ['case', 'MB/s', 'store MiB'],
      rows.map((row) => [row.case, row['MB/s'], row['store MiB']]),
    );
    printTable('nvme index', ['case', 'ms'], [
      [`reload (open) with ${index.blocks} blocks`, index.openMs],
      ['start-up scan for orphans (background)', index.scanMs],
    ]);
    return { objectBytes: OBJECT_BYTES, readBytes: READ_BYTES, rows, nvmeIndex: index };
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(shm, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
