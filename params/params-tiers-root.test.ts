import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeDelta } from './delta-body.js';
import { ParamsService } from './params-service.js';
import { buildTable } from './table-builder.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from './testing/records.js';

/**
 * Tables placed by room: a small real tmpfs stands in for a pmem tier that is too small,
 * a second one for the NVMe tier (so "no room anywhere" can be shown too).
 */
const DIM = 64; // 256-byte rows: tables of tens of MB from a few ten thousand keys
let work: string;
let pmem: string;
let nvme: string;

function mountTmpfs(dir: string, size: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
}

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/params-tiers-');
  pmem = join(work, 'pmem');
  nvme = join(work, 'nvme');
  await mkdir(pmem);
  await mkdir(nvme);
  // 24 MiB: a 2 MB table fits beside the 16 MiB reserve, a 12 MB one does not.
  mountTmpfs(pmem, '24m');
  // 44 MiB: the 12 MB table, a 2 MB one, and room to write a delta's new version of the 12 MB one.
  mountTmpfs(nvme, '44m');
});
afterAll(async () => {
  for (const dir of [pmem, nvme]) execFileSync('umount', ['-l', dir]);
  await rm(work, { recursive: true, force: true });
});

async function table(name: string, count: number): Promise<{ path: string; keys: bigint[] }> {
  const keys = Array.from({ length: count }, (_, i) => BigInt(i) * 13n + 1n);
  await writeRecords(join(work, `${name}.bin`), keys, DIM);
  await buildTable(join(work, `${name}.bin`), join(work, `${name}.params`), { dim: DIM, shards: 2 });
  await rm(join(work, `${name}.bin`));
  return { path: join(work, `${name}.params`), keys };
}

describe('parameter tables on pmem and NVMe', () => {
  it('puts a table on NVMe when pmem lacks room, serves it from lookup threads, and recovers both tiers', async () => {
    const small = await table('small', 7_000); // about 2 MB
    const big = await table('big', 45_000); // about 12 MB
    const huge = await table('huge', 120_000); // about 32 MB: fits neither tier with its reserve
    const config = { dir: join(pmem, 'strata-params'), tier: 'pmem', overflow: { dir: join(nvme, 'strata-params'), tier: 'nvme' } };
    const service = new ParamsService(config);
    try {
      await service.recover();
      expect(await service.load('small', small.path)).toMatchObject({ tier: 'pmem', kernel: 'native' });
      const info = await service.load('big', big.path);
      expect(info).toMatchObject({ tier: 'nvme', keys: 45_000, mapping: 'mmap' });
      expect(info.residentBytes).toBeGreaterThan(0);
      expect(info.residentBytes).toBeLessThanOrEqual(info.bytes);
      expect(service.runsOnThreads('big')).toBe(true);
      expect(service.runsOnThreads('small')).toBe(false);
      const asked = [big.keys[0]!, big.keys[44_999]!, 5n];
      expect(decodeAnswer(await service.mgetAsync('big', keysBody(asked)), 3, DIM)).toEqual([vectorOf(asked[0]!, DIM), vectorOf(asked[1]!, DIM), undefined]);
      await expect(service.load('huge', huge.path)).rejects.toMatchObject({ code: 'PARAMS_NO_SPACE', message: expect.stringMatching(/pmem has .* free, nvme has .* free/) });
      await expect(service.load('small', small.path, { tier: 'dram' })).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT' });
      // Asked for by name, a table goes to that tier even when the first has room.
      expect(await service.load('small', small.path, { tier: 'nvme' })).toMatchObject({ tier: 'nvme', version: 2 });
      expect(await readdir(config.dir)).toEqual(['manifest.json']); // the pmem version was removed after the switch
      // A delta keeps a table on its tier.
      expect(await service.applyDelta('big', encodeDelta(DIM, [], [big.keys[0]!]))).toMatchObject({ tier: 'nvme', keys: 44_999 });
    } finally {
      await service.close();
    }
    const again = new ParamsService(config);
    try {
      const report = await again.recover();
      await again.valuesChecked;
      expect(report).toMatchObject({ tables: 2, failed: [] });
      expect(again.list().map((t) => [t.name, t.tier, t.version])).toEqual([
        ['big', 'nvme', 2],
        ['small', 'nvme', 2],
      ]);
      const asked = [big.keys[0]!, big.keys[1]!];
      expect(decodeAnswer(await again.mgetAsync('big', keysBody(asked)), 2, DIM)).toEqual([undefined, vectorOf(asked[1]!, DIM)]);
      // The delta went in place: version 2 of big is its file of version 1 with one delta in its overlay.
      expect((await readdir(join(nvme, 'strata-params'))).sort()).toEqual(['big.v1.params', 'big.v1.params.overlay', 'small.v2.params']);
    } finally {
      await again.close();
    }
  });

  it('applies a small delta in place where a second version has no room, and refuses one that needs a rewrite with PARAMS_NO_SPACE', async () => {
    const mid = await table('mid', 18_000); // about 5 MB: loads (24 MiB free), but two versions and the reserve do not fit
    const service = new ParamsService({ dir: join(pmem, 'strata-params-delta'), tier: 'pmem' });
    try {
      await service.recover();
      expect(await service.load('mid', mid.path)).toMatchObject({ tier: 'pmem', version: 1 });
      // In place: the overlay (1.6 MiB of index and one record) fits where a copy would not.
      expect(await service.applyDelta('mid', encodeDelta(DIM, [], [mid.keys[0]!]))).toMatchObject({ version: 2, keys: 17_999 });
      // 100,000 upserts are more than the overlay (64Ki keys at least) takes: a rewrite, which has no room.
      const big = encodeDelta(DIM, Array.from({ length: 100_000 }, (_, i) => [BigInt(i) * 13n + 2n, vectorOf(1n, DIM)] as const), []);
      await expect(service.applyDelta('mid', big)).rejects.toMatchObject({ code: 'PARAMS_NO_SPACE', message: expect.stringMatching(/delta of mid needs .* on its pmem tier/) });
      expect(service.list().map((t) => [t.name, t.version, t.keys])).toEqual([['mid', 2, 17_999]]);
      expect(decodeAnswer(await service.mgetAsync('mid', keysBody([mid.keys[0]!, mid.keys[1]!])), 2, DIM)).toEqual([undefined, vectorOf(mid.keys[1]!, DIM)]);
      expect((await readdir(join(pmem, 'strata-params-delta'))).sort()).toEqual(['manifest.json', 'mid.v1.params', 'mid.v1.params.overlay']);
    } finally {
      await service.close();
      await rm(join(pmem, 'strata-params-delta'), { recursive: true, force: true });
    }
  });
});
