import { open, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeDelta } from './delta-body.js';
import { ParamsService } from './params-service.js';
import { buildTable } from './table-builder.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from './testing/records.js';

/** In-place deltas (docs/PARAMS.md, "In-place deltas"), checked against a model of the table. */
const DIM = 4;
let work: string;
let tier: string;
beforeEach(async () => {
  work = await mkdtemp('/dev/shm/params-inplace-');
  tier = join(work, 'tier');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function table(keys: bigint[], shards = 2): Promise<string> {
  await writeRecords(join(work, 'emb.bin'), keys, DIM);
  await buildTable(join(work, 'emb.bin'), join(work, 'emb.params'), { dim: DIM, shards });
  return join(work, 'emb.params');
}

/** The table as it should be: key to vector. */
type Model = Map<bigint, number[]>;

/** A random delta over keys below `space`; applies it to the model (deletes first, then upserts, in order). */
function randomDelta(model: Model, space: number, upserts: number, deletes: number, salt: number): Buffer {
  const up: Array<readonly [bigint, number[]]> = [];
  const del: bigint[] = [];
  for (let i = 0; i < deletes; i++) del.push(BigInt(Math.floor(Math.random() * space)));
  for (let i = 0; i < upserts; i++) {
    const key = BigInt(Math.floor(Math.random() * space));
    up.push([key, [salt, i, Number(key % 1000n), -salt]]);
  }
  for (const key of del) model.delete(key);
  for (const [key, values] of up) model.set(key, values);
  return encodeDelta(DIM, up, del);
}

/** Every asked key's answer is the model's (found with its vector, or missing); names the first few that are not. */
function expectMatches(answer: Buffer, asked: readonly bigint[], model: Model): void {
  const got = decodeAnswer(answer, asked.length, DIM);
  const wrong: string[] = [];
  asked.forEach((key, i) => {
    const want = model.get(key)?.join() ?? 'missing';
    const have = got[i] ? [...got[i]!].join() : 'missing';
    if (want !== have && wrong.length < 5) wrong.push(`key ${key}: ${have}, want ${want}`);
  });
  expect(wrong).toEqual([]);
}

function baseModel(keys: readonly bigint[]): Model {
  return new Map(keys.map((k) => [k, [...vectorOf(k, DIM)]]));
}

describe('in-place deltas', () => {
  it('apply in place, count keys and versions, agree with a model on the event loop and on lookup threads, and survive a restart', async () => {
    const keys = Array.from({ length: 5000 }, (_, i) => BigInt(i) * 2n);
    const model = baseModel(keys);
    const source = await table(keys);
    const service = new ParamsService({ dir: tier, lookupThreads: 2 });
    const everything = Array.from({ length: 12_000 }, (_, i) => BigInt(i));
    try {
      await service.recover();
      await service.load('emb', source);
      for (let round = 1; round <= 12; round++) {
        const info = await service.applyDelta('emb', randomDelta(model, 12_000, 300, 100, round));
        expect(info).toMatchObject({ version: 1 + round, keys: model.size });
        expectMatches(service.mget('emb', keysBody(everything)), everything, model);
        expectMatches(await service.mgetAsync('emb', keysBody(everything)), everything, model);
      }
      // An empty delta is a version too; a key deleted and upserted in one delta is present.
      expect(await service.applyDelta('emb', encodeDelta(DIM, [], []))).toMatchObject({ version: 14 });
      expect(await service.applyDelta('emb', encodeDelta(DIM, [[1n, [1, 1, 1, 1]]], [1n, 0n]))).toMatchObject({ version: 15 });
      model.set(1n, [1, 1, 1, 1]);
      model.delete(0n);
      expectMatches(await service.mgetAsync('emb', keysBody(everything)), everything, model);
      expect((await readdir(tier)).sort()).toEqual(['emb.v1.params', 'emb.v1.params.overlay', 'manifest.json']);
    } finally {
      await service.close();
    }
    const again = new ParamsService({ dir: tier });
    try {
      expect(await again.recover()).toMatchObject({ tables: 1, failed: [] });
      expect(again.list()).toMatchObject([{ name: 'emb', version: 15, keys: model.size }]);
      expectMatches(again.mget('emb', keysBody(everything)), everything, model);
      // Versions go on from there.
      expect(await again.applyDelta('emb', randomDelta(model, 12_000, 10, 0, 99))).toMatchObject({ version: 16 });
    } finally {
      await again.close();
    }
  });

  it('lets lookups on threads and on the event loop see every delta whole or not at all while deltas stream', async () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => BigInt(i));
    const source = await table(keys, 4);
    const service = new ParamsService({ dir: tier, lookupThreads: 2 });
    const asked = keys.filter((_, i) => i % 7 === 0);
    const body = keysBody(asked);
    try {
      await service.load('emb', source);
      // Every delta sets every asked key to its own salt: an answer mixing salts saw half a delta.
      const deltaFor = (salt: number) => encodeDelta(DIM, asked.map((k) => [k, [salt, salt, salt, Number(k)]] as const), []);
      let stop = false;
      const seen = new Set<number>();
      const check = (answer: Buffer) => {
        const got = decodeAnswer(answer, asked.length, DIM);
        // Salt 0: the base table, before the first delta.
        const saltOf = (v: Float32Array, key: bigint) => (v[3] === Number(key) && v[0] === v[1] ? v[0]! : [...v].join() === [...vectorOf(key, DIM)].join() ? 0 : NaN);
        const salts = new Set(got.map((v, i) => saltOf(v!, asked[i]!)));
        expect(salts.size).toBe(1);
        seen.add([...salts][0]!);
      };
      const readers = [
        ...[0, 1].map(async () => {
          while (!stop) check(await service.mgetAsync('emb', body));
        }),
        (async () => {
          while (!stop) {
            check(service.mget('emb', body));
            await new Promise((r) => setImmediate(r));
          }
        })(),
      ];
      for (let salt = 1; salt <= 30; salt++) await service.applyDelta('emb', deltaFor(salt));
      stop = true;
      await Promise.all(readers);
      expect(seen.size).toBeGreaterThan(3);
      expect([...seen].every((s) => Number.isInteger(s) && s <= 30)).toBe(true);
    } finally {
      await service.close();
    }
  });

  it('compacts in the background past half the overlay, carrying over deltas applied meanwhile, and folds a delta too large for the overlay at once', async () => {
    const keys = Array.from({ length: 2000 }, (_, i) => BigInt(i));
    const model = baseModel(keys);
    const source = await table(keys);
    const service = new ParamsService({ dir: tier, lookupThreads: 1 });
    const everything = Array.from({ length: 120_000 }, (_, i) => BigInt(i));
    try {
      await service.load('emb', source);
      // The smallest overlay takes 64Ki keys; 40,000 new ones are past half of it.
      let info = await service.applyDelta('emb', randomDelta(model, 120_000, 40_000, 500, 1));
      // Deltas while the compaction thread runs: lookups and deltas go on.
      for (let round = 2; round < 6; round++) {
        info = await service.applyDelta('emb', randomDelta(model, 120_000, 200, 50, round));
        expectMatches(await service.mgetAsync('emb', keysBody(everything.slice(0, 50_000))), everything.slice(0, 50_000), model);
      }
      const deadline = Date.now() + 50_000;
      // Switched once the first file is gone (the new one is renamed into place before the switch).
      while ((await readdir(tier)).includes('emb.v1.params')) {
        if (Date.now() > deadline) throw new Error('no compaction within 50 s');
        await new Promise((r) => setTimeout(r, 50));
      }
      expect((await readdir(tier)).some((f) => /^emb\.v\d+\.params$/.test(f))).toBe(true);
      const after = service.list()[0]!;
      expect(after.version).toBeGreaterThanOrEqual(info.version); // the compaction may have switched before the last delta
      expect(after.keys).toBe(model.size);
      for (const part of [everything.slice(0, 60_000), everything.slice(60_000)]) {
        expectMatches(service.mget('emb', keysBody(part)), part, model);
        expectMatches(await service.mgetAsync('emb', keysBody(part)), part, model);
      }

      // 100,000 changes do not fit any more: folded into a new version at once.
      const big = await service.applyDelta('emb', randomDelta(model, 120_000, 100_000, 1000, 7));
      expect(big.keys).toBe(model.size);
      for (const part of [everything.slice(0, 60_000), everything.slice(60_000)]) expectMatches(await service.mgetAsync('emb', keysBody(part)), part, model);
    } finally {
      await service.close();
    }
    const again = new ParamsService({ dir: tier });
    try {
      expect(await again.recover()).toMatchObject({ tables: 1, failed: [] });
      for (const part of [everything.slice(0, 60_000), everything.slice(60_000)]) expectMatches(again.mget('emb', keysBody(part)), part, model);
    } finally {
      await again.close();
    }
  });

  it('applies the first delta right after a restart, while the lookup threads are still mapping the table', async () => {
    const keys = Array.from({ length: 3000 }, (_, i) => BigInt(i));
    const first = new ParamsService({ dir: tier });
    await first.load('emb', await table(keys));
    await first.close();
    const service = new ParamsService({ dir: tier, lookupThreads: 2 });
    try {
      await service.recover();
      // No wait for the threads: the overlay is made while their first open is under way.
      expect(await service.applyDelta('emb', encodeDelta(DIM, [[2n, [5, 5, 5, 5]]], [1n]))).toMatchObject({ version: 2, keys: 2999 });
      while (!service.runsOnThreads('emb')) await new Promise((r) => setTimeout(r, 10));
      expect(decodeAnswer(await service.mgetAsync('emb', keysBody([1n, 2n, 3n])), 3, DIM).map((v) => (v ? [...v] : null))).toEqual([null, [5, 5, 5, 5], [...vectorOf(3n, DIM)]]);
    } finally {
      await service.close();
    }
  });

  it('refuses a damaged overlay at recovery with the index or log checksum named', async () => {
    const keys = Array.from({ length: 1000 }, (_, i) => BigInt(i));
    const service = new ParamsService({ dir: tier });
    await service.load('emb', await table(keys));
    await service.applyDelta('emb', encodeDelta(DIM, [[5000n, [1, 2, 3, 4]]], [3n]));
    await service.close();
    const overlay = join(tier, 'emb.v1.params.overlay');
    const file = await open(overlay, 'r+');
    const head = Buffer.alloc(128);
    await file.read(head, 0, 128, 0);
    const logOffset = Number(head.readBigUInt64LE(56));
    await file.write(Buffer.from([0x7f]), 0, 1, logOffset + 20); // a value byte of the first record
    await file.close();
    const again = new ParamsService({ dir: tier });
    const report = await again.recover();
    expect(report.failed).toMatchObject([{ name: 'emb', message: expect.stringContaining('overlay log checksum mismatch') }]);
    await again.close();

    // A byte of the overlay's index: the block holding it fails its checksum.
    const tier2 = join(tier, 'second');
    const indexed = new ParamsService({ dir: tier2 });
    await indexed.load('emb', await table(keys));
    await indexed.applyDelta('emb', encodeDelta(DIM, [[5000n, [1, 2, 3, 4]]], [3n]));
    await indexed.close();
    const damaged = await open(join(tier2, 'emb.v1.params.overlay'), 'r+');
    const head2 = Buffer.alloc(128);
    await damaged.read(head2, 0, 128, 0);
    const indexOffset = Number(head2.readBigUInt64LE(48));
    const slots = Number(head2.readBigUInt64LE(24));
    // A byte in every block of 64 slots (the first slot's key): whichever block is checked first fails.
    for (let block = 0; block < slots / 64; block++) await damaged.write(Buffer.from([0x5a]), 0, 1, indexOffset + block * 64 * 12);
    await damaged.close();
    const third = new ParamsService({ dir: tier2 });
    const report3 = await third.recover();
    expect(report3.failed).toMatchObject([{ name: 'emb', message: expect.stringMatching(/overlay index block \d+ checksum mismatch/) }]);
    await third.close();
  });
});
