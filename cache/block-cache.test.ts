import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StoreError } from '../store/index.js';
import { silentLogger } from '../telemetry/index.js';
import { BlockCache } from './block-cache.js';
import type { FetchRange, FetchRequest } from './fetch-request.js';
import { resolveBlockCacheConfig, type BlockCacheOptions } from './block-cache-config.js';
import { blockChecksum } from './checksum.js';
import type { ObjectRef } from '../store/index.js';
import type { Tier, TierStats } from './tier.js';

const MiB = 1024 * 1024;
const BLOCK = 1 * MiB;
const logger = silentLogger();

/** A persistent tier that only records the ids written to it (write-through tests). */
function recordingTier(): { tier: Tier; written: Set<string> } {
  const written = new Set<string>();
  const tier: Tier = {
    name: 'nvme',
    capacityBytes: 1 << 30,
    usedBytes: 0,
    get: async () => undefined,
    put: async (id) => {
      written.add(id);
      return true;
    },
    delete: async (id) => void written.delete(id),
    has: (id) => written.has(id),
    stats: (): TierStats => ({ name: 'nvme', capacityBytes: 1 << 30, usedBytes: 0, blocks: written.size, hits: 0, misses: 0, evictions: 0, checksumMismatches: 0, ioErrors: 0 }),
    close: async () => undefined,
  };
  return { tier, written };
}

/** An in-memory store: objects by key with one current ETag; counts and can slow down GETs. */
class FakeStore {
  readonly objects = new Map<string, { etag: string; bytes: Buffer }>();
  fetches = 0;
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;
  onFetch: (() => void) | undefined;

  add(key: string, bytes: Buffer, etag = '"v1"'): ObjectRef {
    this.objects.set(key, { etag, bytes });
    return { storeId: 'mem://test', key, etag, size: bytes.length };
  }

  readonly fetchRange: FetchRange = async ({ ref, range: { start, length } }) => {
    this.fetches += 1;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      this.onFetch?.();
      if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      const object = this.objects.get(ref.key);
      if (object === undefined) throw new StoreError('STORE_NOT_FOUND', ref.key);
      if (object.etag !== ref.etag) throw new StoreError('STORE_PRECONDITION_FAILED', `${ref.key} changed`);
      return Buffer.from(object.bytes.subarray(start, start + length));
    } finally {
      this.inFlight -= 1;
    }
  };
}

describe('BlockCache', () => {
  let dir: string;
  let store: FakeStore;
  const caches: BlockCache[] = [];

  const makeCache = async (options: BlockCacheOptions = {}) => {
    const cache = await BlockCache.open(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, ...options }), logger, store.fetchRange);
    caches.push(cache);
    return cache;
  };

  const readAll = async (cache: BlockCache, ref: ObjectRef, chunk = 128 * 1024) => {
    const session = cache.openSession(ref);
    const parts: Buffer[] = [];
    for (let offset = 0; offset < ref.size; offset += chunk) parts.push(await cache.read(session, offset, chunk));
    cache.closeSession(session);
    return Buffer.concat(parts);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-cache-'));
    store = new FakeStore();
  });

  afterEach(async () => {
    for (const cache of caches.splice(0)) await cache.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers exact ranges, within and across blocks, and nothing past the end', async () => {
    const bytes = randomBytes(5 * BLOCK + 1234);
    const ref = store.add('obj', bytes);
    const cache = await makeCache({ readaheadMaxBlocks: 0 });
    const session = cache.openSession(ref);
    const ranges = [[0, 10], [BLOCK - 5, 10], [BLOCK / 2, 3 * BLOCK], [5 * BLOCK, 5000], [0, bytes.length + 99], [bytes.length - 1, 1]];
    for (const [offset, length] of ranges) {
      expect((await cache.read(session, offset, length)).equals(bytes.subarray(offset, offset + length))).toBe(true);
    }
    expect(await cache.read(session, bytes.length, 10)).toHaveLength(0);
    expect(await cache.read(session, bytes.length + 10, 10)).toHaveLength(0);
    expect(store.fetches).toBe(6); // each block once
    expect(cache.fetchStats()).toMatchObject({ blocksFetched: 6, bytesFetched: bytes.length });
  });

  it('coalesces 10 concurrent reads of one block into one fetch', async () => {
    const ref = store.add('obj', randomBytes(BLOCK));
    store.delayMs = 20;
    const cache = await makeCache();
    const reads = Array.from({ length: 10 }, (_, i) => cache.read(cache.openSession(ref), i * 1000, 100));
    await Promise.all(reads);
    expect(store.fetches).toBe(1);
    expect(cache.fetchStats().coalescedWaits).toBe(9);
  });

  it('loads the first block ahead of a read (readAhead): the read joins that load, and a cached block loads nothing', async () => {
    const bytes = randomBytes(2 * BLOCK);
    const ref = store.add('obj', bytes);
    store.delayMs = 20;
    const cache = await makeCache({ readaheadMaxBlocks: 0 });
    const load = cache.readAhead(ref);
    expect(load).toBeDefined();
    expect(cache.readAhead(ref)).toBeUndefined(); // loading already
    const got = await cache.read(cache.openSession(ref), 100, 1000);
    expect(got.equals(bytes.subarray(100, 1100))).toBe(true);
    await load;
    expect(store.fetches).toBe(1);
    expect(cache.fetchStats().coalescedWaits).toBe(1);
    expect(cache.readAhead(ref)).toBeUndefined(); // cached
    expect(cache.readAhead(store.add('empty', Buffer.alloc(0)))).toBeUndefined();
    expect(store.fetches).toBe(1);
  });

  it('fetches the blocks of a large read in parallel, bounded', async () => {
    const ref = store.add('obj', randomBytes(12 * BLOCK));
    store.delayMs = 10;
    const cache = await makeCache({ maxParallelFetches: 4, readaheadMaxBlocks: 0 });
    const got = await cache.read(cache.openSession(ref), 0, 12 * BLOCK);
    expect(got.equals(store.objects.get('obj')!.bytes)).toBe(true);
    expect(store.maxInFlight).toBe(4);
  });

  it('serves a second read from DRAM with no store request', async () => {
    const ref = store.add('obj', randomBytes(3 * BLOCK));
    const cache = await makeCache();
    await readAll(cache, ref);
    const before = store.fetches;
    expect((await readAll(cache, ref)).equals(store.objects.get('obj')!.bytes)).toBe(true);
    expect(store.fetches).toBe(before);
    expect(cache.stats()[0]).toMatchObject({ name: 'dram' });
    expect(cache.stats()[0].hits).toBeGreaterThan(0);
  });

  for (const tier of ['nvme', 'pmem'] as const) {
    it(`keeps blocks in ${tier} across a restart: zero fetches afterwards`, async () => {
      const shm = await mkdtemp(join('/dev/shm', 'strata-cache-'));
      try {
        const options: BlockCacheOptions =
          tier === 'nvme'
            ? { nvme: { dir: join(dir, 'nvme'), capacityBytes: 64 * MiB, reserveBytes: 0 } }
            : { pmem: { path: join(shm, 'strata.pool'), capacityBytes: 16 * MiB } };
        const bytes = randomBytes(6 * BLOCK + 77);
        const ref = store.add('obj', bytes);
        const first = await makeCache(options);
        await readAll(first, ref);
        await first.close();
        const fetched = store.fetches;
        const second = await makeCache(options);
        expect((await readAll(second, ref)).equals(bytes)).toBe(true);
        expect(store.fetches).toBe(fetched);
        const lower = second.stats().find((stats) => stats.name === tier)!;
        expect(lower.hits).toBe(7);
      } finally {
        await rm(shm, { recursive: true, force: true });
      }
    });
  }

  it('promotes a block found in nvme to pmem and DRAM', async () => {
    const shm = await mkdtemp(join('/dev/shm', 'strata-cache-'));
    try {
      const nvme = { dir: join(dir, 'nvme'), capacityBytes: 64 * MiB, reserveBytes: 0 };
      const bytes = randomBytes(2 * BLOCK);
      const ref = store.add('obj', bytes);
      const first = await makeCache({ nvme });
      await readAll(first, ref);
      await first.close();
      const both = await makeCache({ nvme, pmem: { path: join(shm, 'strata.pool'), capacityBytes: 16 * MiB } });
      expect((await readAll(both, ref)).equals(bytes)).toBe(true);
      await both.close(); // waits for the promotion writes
      const reopened = await makeCache({ pmem: { path: join(shm, 'strata.pool'), capacityBytes: 16 * MiB } });
      expect((await readAll(reopened, ref)).equals(bytes)).toBe(true);
      const [, pmemStats, nvmeStats] = both.stats();
      expect(nvmeStats).toMatchObject({ name: 'nvme', hits: 2 });
      expect(pmemStats).toMatchObject({ name: 'pmem', misses: 2 });
      expect(reopened.stats()[1]).toMatchObject({ name: 'pmem', hits: 2 });
      expect(store.fetches).toBe(2);
      await reopened.close(); // waits for the whole file its read offered
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  it('marks the store fetches of background sessions, their readahead and warmBlock as background, with their origin', async () => {
    const seen: Array<[string, number, boolean]> = [];
    const origins: Array<[string, FetchRequest['origin']]> = [];
    const marking: FetchRange = (request) => {
      seen.push([request.ref.key, request.range.start / BLOCK, request.priority === 'background']);
      origins.push([request.ref.key, request.origin]);
      return store.fetchRange(request);
    };
    const cache = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, readaheadMaxBlocks: 2 }), logger, marking);
    caches.push(cache);
    const user = store.add('user', randomBytes(BLOCK));
    const job = store.add('job', randomBytes(4 * BLOCK));
    const warmed = store.add('warmed', randomBytes(BLOCK));
    await readAll(cache, user);
    const session = cache.openSession(job, { priority: 'background' });
    for (let offset = 0; offset < 2 * BLOCK; offset += 128 * 1024) await cache.read(session, offset, 128 * 1024);
    cache.closeSession(session);
    await cache.warmBlock(warmed, 0);
    expect(seen.filter(([key]) => key === 'user')).toEqual([['user', 0, false]]);
    expect(seen.filter(([key]) => key === 'job').length).toBeGreaterThan(2); // readahead went ahead of the reads
    expect(seen.filter(([key]) => key === 'job').every(([, , background]) => background)).toBe(true);
    expect(seen.filter(([key]) => key === 'warmed')).toEqual([['warmed', 0, true]]);
    expect(origins.filter(([key]) => key === 'user')).toEqual([['user', 'read']]);
    expect(new Set(origins.filter(([key]) => key === 'job').map(([, origin]) => origin))).toEqual(new Set(['read', 'readahead']));
    expect(origins.filter(([key]) => key === 'warmed')).toEqual([['warmed', 'warm']]);
    const peer = store.add('peer', randomBytes(BLOCK));
    const peerSession = cache.openSession(peer, { origin: 'peer' });
    await cache.read(peerSession, 0, BLOCK);
    cache.closeSession(peerSession);
    expect(origins.filter(([key]) => key === 'peer')).toEqual([['peer', 'peer']]);
  });

  describe('warmBlock', () => {
    const warmAll = async (cache: BlockCache, ref: ObjectRef, tier?: 'dram' | 'pmem' | 'nvme') => {
      const results = [];
      for (let index = 0; index * BLOCK < ref.size; index += 1) results.push(await cache.warmBlock(ref, index, tier));
      return results;
    };

    it('without a tier caches a block as a read does, so the read after it costs no fetch', async () => {
      const bytes = randomBytes(2 * BLOCK + 10);
      const ref = store.add('obj', bytes);
      const cache = await makeCache();
      expect(await warmAll(cache, ref)).toEqual([{ bytes: BLOCK, placed: true }, { bytes: BLOCK, placed: true }, { bytes: 10, placed: true }]);
      expect(store.fetches).toBe(3);
      expect((await readAll(cache, ref)).equals(bytes)).toBe(true);
      expect(store.fetches).toBe(3);
      expect(cache.stats()[0]).toMatchObject({ name: 'dram', blocks: 3 });
    });

    it('with tier nvme writes fetched blocks to nvme before answering, and leaves DRAM alone', async () => {
      const nvme = { dir: join(dir, 'nvme'), capacityBytes: 64 * MiB, reserveBytes: 0 };
      const bytes = randomBytes(3 * BLOCK);
      const ref = store.add('obj', bytes);
      const cache = await makeCache({ nvme });
      expect((await warmAll(cache, ref, 'nvme')).every((b) => b.placed)).toBe(true);
      const [dram, nvmeStats] = cache.stats();
      expect(dram).toMatchObject({ name: 'dram', blocks: 0 });
      expect(nvmeStats).toMatchObject({ name: 'nvme', blocks: 3 });
      // Already there: a second warm asks nobody.
      await warmAll(cache, ref, 'nvme');
      expect(store.fetches).toBe(3);
      expect((await readAll(cache, ref)).equals(bytes)).toBe(true);
      expect(store.fetches).toBe(3);
    });

    it('with tier nvme copies a block DRAM already holds instead of fetching it again, and reports a refusal', async () => {
      // An nvme tier that refuses writes until told otherwise (as a tier full of pinned blocks does).
      const held = new Map<string, Buffer>();
      let accepting = false;
      const picky: Tier = {
        name: 'nvme',
        capacityBytes: 64 * MiB,
        get usedBytes() { return [...held.values()].reduce((sum, b) => sum + b.length, 0); },
        get: async (id) => held.get(id),
        put: async (id, bytes) => { if (accepting) held.set(id, Buffer.from(bytes)); return accepting; },
        delete: async (id) => { held.delete(id); },
        has: (id) => held.has(id),
        stats: (): TierStats => ({ name: 'nvme', capacityBytes: 64 * MiB, usedBytes: 0, blocks: held.size, hits: 0, misses: 0, evictions: 0, checksumMismatches: 0, ioErrors: 0 }),
        close: async () => undefined,
      };
      const bytes = randomBytes(2 * BLOCK);
      const ref = store.add('obj', bytes);
      const cache = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, readaheadMaxBlocks: 0 }), logger, store.fetchRange, { nvme: picky });
      caches.push(cache);
      await readAll(cache, ref);
      expect(await warmAll(cache, ref, 'nvme')).toEqual([{ bytes: BLOCK, placed: false }, { bytes: BLOCK, placed: false }]);
      accepting = true;
      expect((await warmAll(cache, ref, 'nvme')).every((b) => b.placed)).toBe(true);
      expect(held.size).toBe(2);
      expect([...held.values()].map((b) => b.equals(bytes.subarray(0, BLOCK)) || b.equals(bytes.subarray(BLOCK)))).toEqual([true, true]);
      expect(store.fetches).toBe(2);
    });

    it('refuses a tier the cache does not have', async () => {
      const ref = store.add('obj', randomBytes(10));
      const cache = await makeCache();
      await expect(cache.warmBlock(ref, 0, 'nvme')).rejects.toMatchObject({ code: 'CACHE_TIER_INVALID' });
      const noDram = await makeCache({ dram: false });
      await expect(noDram.warmBlock(ref, 0, 'dram')).rejects.toMatchObject({ code: 'CACHE_TIER_INVALID' });
      expect(store.fetches).toBe(0);
    });
  });

  it('refetches a block whose nvme file is corrupt and counts the mismatch', async () => {
    const nvme = { dir: join(dir, 'nvme'), capacityBytes: 64 * MiB, reserveBytes: 0 };
    const bytes = randomBytes(BLOCK);
    const ref = store.add('obj', bytes);
    const first = await makeCache({ nvme });
    await readAll(first, ref);
    await first.close();
    const sub = (await readdir(nvme.dir)).find((name) => name.length === 2)!;
    const file = join(nvme.dir, sub, (await readdir(join(nvme.dir, sub)))[0]);
    const content = await readFile(file);
    content[content.length - 100] ^= 0x01;
    await writeFile(file, content);
    const second = await makeCache({ nvme });
    expect((await readAll(second, ref)).equals(bytes)).toBe(true);
    expect(store.fetches).toBe(2);
    expect(second.stats().find((stats) => stats.name === 'nvme')!.checksumMismatches).toBe(1);
  });

  it('never serves bytes of an older ETag, and propagates a changed object', async () => {
    const oldBytes = randomBytes(BLOCK);
    const oldRef = store.add('obj', oldBytes, '"v1"');
    const cache = await makeCache({ nvme: { dir: join(dir, 'nvme'), capacityBytes: 64 * MiB, reserveBytes: 0 } });
    expect((await readAll(cache, oldRef)).equals(oldBytes)).toBe(true);
    const newBytes = randomBytes(BLOCK);
    const newRef = store.add('obj', newBytes, '"v2"');
    expect((await readAll(cache, newRef)).equals(newBytes)).toBe(true);
    expect(store.fetches).toBe(2);
    // A session still holding the old version, on a block not cached: the store refuses.
    const bigOld = store.add('big', randomBytes(2 * BLOCK), '"v1"');
    store.add('big', randomBytes(2 * BLOCK), '"v2"');
    await expect(cache.read(cache.openSession(bigOld), BLOCK, 10)).rejects.toMatchObject({ code: 'STORE_PRECONDITION_FAILED' });
  });

  it('prefetches ahead of a sequential reader, growing the window, and not for a random one', async () => {
    const bytes = randomBytes(40 * BLOCK);
    const ref = store.add('seq', bytes);
    const cache = await makeCache({ readaheadMaxBlocks: 8 });
    expect((await readAll(cache, ref)).equals(bytes)).toBe(true);
    const stats = cache.fetchStats();
    expect(stats.readaheadBlocks).toBeGreaterThan(20);
    expect(stats.blocksFetched).toBe(40);

    const randomRef = store.add('random', randomBytes(40 * BLOCK));
    const randomCache = await makeCache({ readaheadMaxBlocks: 8 });
    const session = randomCache.openSession(randomRef);
    for (const index of [17, 3, 29, 11, 36, 0, 22, 8]) await randomCache.read(session, index * BLOCK + 100, 4096);
    expect(randomCache.fetchStats().readaheadBlocks).toBe(0);
    expect(randomCache.fetchStats().blocksFetched).toBe(8);
  });

  it('keeps DRAM, readahead and in-flight buffers under the budget with 16 concurrent readers', async () => {
    const budget = 12 * MiB;
    const cache = await makeCache({ memoryBudgetBytes: budget, readaheadMaxBlocks: 8, maxParallelFetches: 8 });
    const config = cache.config;
    expect(config.dramBytes + config.ioPoolBytes).toBe(budget);
    const refs = Array.from({ length: 16 }, (_, i) => store.add(`reader-${i}`, randomBytes(6 * BLOCK)));
    store.delayMs = 5;
    // Independent check, sampled at every GET: DRAM use plus the buffers of all GETs in flight.
    let worst = 0;
    store.onFetch = () => {
      const dram = cache.stats().find((stats) => stats.name === 'dram')!.usedBytes;
      worst = Math.max(worst, dram + store.inFlight * BLOCK);
    };
    const results = await Promise.all(refs.map((ref, i) => readAll(cache, ref, i % 2 === 0 ? 128 * 1024 : 3 * BLOCK)));
    results.forEach((got, i) => expect(got.equals(store.objects.get(`reader-${i}`)!.bytes)).toBe(true));
    expect(worst).toBeLessThanOrEqual(budget);
    expect(cache.memory().peakBytes).toBeLessThanOrEqual(budget);
    expect(cache.memory().peakBytes).toBeGreaterThan(budget / 2);
    expect(store.maxInFlight).toBeLessThanOrEqual(config.ioPoolBytes / BLOCK);
  });

  it('without DRAM, sessions left open cannot starve other readers of memory', async () => {
    const cache = await makeCache({ dram: false, memoryBudgetBytes: 3 * BLOCK, readaheadMaxBlocks: 0 });
    const refs = Array.from({ length: 8 }, (_, i) => store.add(`idle-${i}`, randomBytes(BLOCK)));
    const idle = refs.map((ref) => cache.openSession(ref));
    for (const session of idle) await cache.read(session, 0, 10);
    const late = store.add('late', randomBytes(2 * BLOCK));
    const got = await cache.read(cache.openSession(late), 0, 2 * BLOCK);
    expect(got.equals(store.objects.get('late')!.bytes)).toBe(true);
    expect(cache.memory().peakBytes).toBeLessThanOrEqual(3 * BLOCK);
  });

  it('writes through behind the reader: a stalled tier delays no read, holds no I/O pool bytes, and gets every block once it moves', async () => {
    const written = new Map<string, { bytes: Buffer; checksum: number | undefined }>();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let puts = 0;
    const slow: Tier = {
      name: 'nvme',
      capacityBytes: 1 << 30,
      usedBytes: 0,
      get: async (id) => written.get(id)?.bytes,
      put: async (id, bytes, checksum) => {
        puts += 1;
        await gate;
        written.set(id, { bytes: Buffer.from(bytes), checksum });
        return true;
      },
      delete: async (id) => void written.delete(id),
      has: (id) => written.has(id),
      stats: (): TierStats => ({ name: 'nvme', capacityBytes: 1 << 30, usedBytes: 0, blocks: written.size, hits: 0, misses: 0, evictions: 0, checksumMismatches: 0, ioErrors: 0 }),
      close: async () => undefined,
    };
    const bytes = randomBytes(12 * BLOCK);
    const ref = store.add('obj', bytes);
    const cache = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 32 * MiB, readaheadMaxBlocks: 0 }), logger, store.fetchRange, { nvme: slow });
    caches.push(cache);
    expect((await readAll(cache, ref)).equals(bytes)).toBe(true);
    expect(cache.memory().ioPoolUsedBytes).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 120)); // past the quiet time after the reader's last fetch
    expect(puts).toBe(2); // two writes in flight, the other ten queued
    const settled = cache.writesSettled();
    open();
    await settled;
    expect(written.size).toBe(12);
    const first = written.get(JSON.stringify(['mem://test', 'obj', '"v1"', 0]))!;
    expect(first.checksum).toBe(blockChecksum(bytes.subarray(0, BLOCK)));
  });

  it('closes without waiting out write-through\'s quiet time, whose unref\'d timer cannot keep a shutting-down process alive', async () => {
    const { tier, written } = recordingTier();
    // Only timers are faked: the quiet time never passes unless close() ends it.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const cache = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, readaheadMaxBlocks: 0 }), logger, store.fetchRange, { nvme: tier });
      await readAll(cache, store.add('quiet', randomBytes(BLOCK)));
      expect(written.size).toBe(0); // the reader's fetch has just ended: the block waits for quiet
      await cache.close();
      expect(written.size).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('holds write-through back while a reader waits on the store, and writes once its fetches have been quiet', async () => {
    const { tier, written } = recordingTier();
    const first = store.add('first', randomBytes(BLOCK));
    const second = store.add('second', randomBytes(BLOCK));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const fetchRange: FetchRange = async (request) => {
      if (request.ref.key === 'second') await held;
      return store.fetchRange(request);
    };
    const cache = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, readaheadMaxBlocks: 0 }), logger, fetchRange, { nvme: tier });
    caches.push(cache);
    await readAll(cache, first);
    const reading = readAll(cache, second);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(written.size).toBe(0); // the first block waits in DRAM while the second is fetched
    release();
    await reading;
    const settled = cache.writesSettled();
    await new Promise((resolve) => setImmediate(resolve));
    expect(written.size).toBe(0); // the reader's last fetch has just ended
    await settled;
    expect(written.size).toBe(2);
    // Background work (a prefetch's fetches) does not hold write-through back.
    const warmed = store.add('warmed', randomBytes(BLOCK));
    let releaseWarm!: () => void;
    const heldWarm = new Promise<void>((resolve) => (releaseWarm = resolve));
    const slowStore: FetchRange = async (request) => {
      if (request.ref.key === 'warmed') await heldWarm;
      return store.fetchRange(request);
    };
    const other = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, readaheadMaxBlocks: 0 }), logger, slowStore, { nvme: tier });
    caches.push(other);
    const third = store.add('third', randomBytes(BLOCK));
    const jobSession = other.openSession(third, { priority: 'background' });
    await other.read(jobSession, 0, BLOCK);
    other.closeSession(jobSession);
    const warming = other.warmBlock(warmed, 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(written.has(JSON.stringify(['mem://test', 'third', '"v1"', 0]))).toBe(true);
    releaseWarm();
    await warming;
  });

  it('treats a tier that throws as a miss and still answers the read', async () => {
    const broken: Tier = {
      name: 'nvme',
      capacityBytes: 1 << 30,
      usedBytes: 0,
      get: async () => { throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }); },
      put: async () => { throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }); },
      delete: async () => { throw new Error('EIO'); },
      has: () => { throw new Error('EIO'); },
      stats: (): TierStats => ({ name: 'nvme', capacityBytes: 1 << 30, usedBytes: 0, blocks: 0, hits: 0, misses: 0, evictions: 0, checksumMismatches: 0, ioErrors: 0 }),
      close: async () => undefined,
    };
    const bytes = randomBytes(3 * BLOCK);
    const ref = store.add('obj', bytes);
    const cache = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, dram: false, readaheadMaxBlocks: 0 }), logger, store.fetchRange, { nvme: broken });
    caches.push(cache);
    expect((await readAll(cache, ref, BLOCK)).equals(bytes)).toBe(true);
    expect((await readAll(cache, ref, BLOCK)).equals(bytes)).toBe(true);
    expect(store.fetches).toBe(6);
  });

  it('counts a real tier I/O error as a miss and refetches', async () => {
    const nvme = { dir: join(dir, 'nvme'), capacityBytes: 64 * MiB, reserveBytes: 0 };
    const bytes = randomBytes(BLOCK);
    const ref = store.add('obj', bytes);
    const first = await makeCache({ nvme });
    await readAll(first, ref);
    await first.close();
    // Make the nvme directory's block unreadable: replace the file by a directory.
    const sub = (await readdir(nvme.dir)).find((name) => name.length === 2)!;
    const file = join(nvme.dir, sub, (await readdir(join(nvme.dir, sub)))[0]);
    await rm(file);
    await (await import('node:fs/promises')).mkdir(file);
    const second = await makeCache({ nvme });
    expect((await readAll(second, ref)).equals(bytes)).toBe(true);
    expect(second.stats().find((stats) => stats.name === 'nvme')!.ioErrors).toBe(1);
  });

  it('validates its configuration, naming the option', () => {
    expect(() => resolveBlockCacheConfig({ blockSize: 100 })).toThrow(/blockSize/);
    expect(() => resolveBlockCacheConfig({ blockSize: 32 * MiB })).toThrow(/blockSize/);
    expect(() => resolveBlockCacheConfig({ memoryBudgetBytes: 4 * MiB })).toThrow(/memoryBudgetBytes/);
    const defaults = resolveBlockCacheConfig();
    expect(defaults.blockSize).toBe(4 * MiB);
    expect(defaults.dramBytes + defaults.ioPoolBytes).toBe(defaults.memoryBudgetBytes);
    expect(Object.isFrozen(defaults)).toBe(true);
  });
});
