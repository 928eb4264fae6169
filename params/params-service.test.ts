import { mkdtemp, open, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { encodeDelta } from './delta-body.js';
import { ParamsService } from './params-service.js';
import { ServedTable } from './served-table.js';
import { defaultTableMapper } from './table-mapper.js';
import { buildTable } from './table-builder.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from './testing/records.js';

let work: string;
let tier: string;
beforeEach(async () => {
  work = await mkdtemp('/dev/shm/params-svc-');
  tier = join(work, 'tier');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function table(name: string, keys: bigint[], dim: number, salt = 0, shards = 1): Promise<string> {
  await writeRecords(join(work, `${name}.bin`), keys, dim, salt);
  await buildTable(join(work, `${name}.bin`), join(work, `${name}.params`), { dim, shards });
  return join(work, `${name}.params`);
}

describe('ParamsService', () => {
  it('loads a table from a path or file:// URL, lists it and answers mget and lookup', async () => {
    const keys = Array.from({ length: 1000 }, (_, i) => BigInt(i) * 3n);
    const source = await table('emb', keys, 4, 0, 3);
    const service = new ParamsService({ dir: tier });
    await service.recover();
    const info = await service.load('emb', `file://${source}`);
    expect(info).toMatchObject({ name: 'emb', version: 1, keys: 1000, dim: 4, shards: 3, tier: 'pmem', mapping: 'mmap' });
    expect(service.list()).toEqual([info]);
    const answer = decodeAnswer(service.mget('emb', keysBody([3n, 4n])), 2, 4);
    expect(answer).toEqual([vectorOf(3n, 4), undefined]);
    expect(service.lookup('emb', ['6', '7'])).toEqual({ found: [true, false], vectors: [Array.from(vectorOf(6n, 4)), null] });
    expect(() => service.mget('nope', keysBody([1n]))).toThrow(expect.objectContaining({ code: 'PARAMS_TABLE_NOT_FOUND' }));
    expect(() => service.mget('emb', Buffer.alloc(7))).toThrow(expect.objectContaining({ code: 'PARAMS_BAD_KEYS' }));
    expect(() => service.mget('emb', Buffer.alloc(8 * 100_001))).toThrow(expect.objectContaining({ code: 'PARAMS_BATCH_TOO_LARGE' }));
    expect(() => service.lookup('emb', ['18446744073709551616'])).toThrow(expect.objectContaining({ code: 'PARAMS_BAD_KEYS' }));
    expect(() => service.lookup('emb', ['-1'])).toThrow(expect.objectContaining({ code: 'PARAMS_BAD_KEYS' }));
    // A body at an odd byte offset is still read right.
    const odd = Buffer.alloc(17);
    odd.writeBigUInt64LE(9n, 1);
    odd.writeBigUInt64LE(10n, 9);
    expect(decodeAnswer(service.mget('emb', odd.subarray(1)), 2, 4)).toEqual([vectorOf(9n, 4), undefined]);
  });

  it('refuses a damaged source and keeps serving the old version', async () => {
    const service = new ParamsService({ dir: tier });
    await service.load('emb', await table('a', [1n, 2n], 2));
    const bad = join(work, 'bad.params');
    await writeFile(bad, Buffer.alloc(8192));
    await expect(service.load('emb', bad)).rejects.toMatchObject({ code: 'PARAMS_BAD_TABLE' });
    await expect(service.load('emb', join(work, 'missing.params'))).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT' });
    await expect(service.load('../x', bad)).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT' });
    expect(service.list()).toMatchObject([{ name: 'emb', version: 1 }]);
    expect(decodeAnswer(service.mget('emb', keysBody([2n])), 1, 2)).toEqual([vectorOf(2n, 2)]);
    expect((await readdir(tier)).sort()).toEqual(['emb.v1.params', 'manifest.json']);
  });

  it('switches versions atomically: concurrent lookups see the old or the new version whole, never a mix or an error', async () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => BigInt(i));
    const v1 = await table('v1', keys, 8, 0);
    const v2 = await table('v2', keys, 8, 1000);
    const service = new ParamsService({ dir: tier });
    await service.load('emb', v1);
    const body = keysBody(keys.filter((_, i) => i % 97 === 0));
    const n = body.length / 8;
    const seen = new Set<number>();
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        const answer = decodeAnswer(service.mget('emb', body), n, 8);
        // Every vector of one answer carries the same salt: 0 (v1) or 1000 (v2).
        const salts = new Set(answer.map((v, i) => Math.round(v![0]! - Number(BigInt(i * 97) % 1_000_003n))));
        expect(salts.size).toBe(1);
        seen.add([...salts][0]!);
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let round = 0; round < 4; round++) await service.load('emb', round % 2 === 0 ? v2 : v1);
    stop = true;
    await reader;
    expect(seen).toEqual(new Set([0, 1000]));
    expect(service.list()[0]!.version).toBe(5);
    expect((await readdir(tier)).sort()).toEqual(['emb.v5.params', 'manifest.json']);
    // Replaced versions are unmapped at the switch, not at some later garbage collection:
    // their (unlinked) files hold no memory once the new version serves.
    const maps = await readFile('/proc/self/maps', 'utf8');
    expect(maps).toContain(join(tier, 'emb.v5.params'));
    for (const old of [1, 2, 3, 4]) expect(maps).not.toContain(join(tier, `emb.v${old}.params`));
  });

  it('recovers after a crash: a new service serves the manifest tables without the sources, and drops leftovers', async () => {
    const keys = Array.from({ length: 5000 }, (_, i) => BigInt(i) * 11n);
    const source = await table('emb', keys, 4, 0, 2);
    const first = new ParamsService({ dir: tier });
    await first.load('emb', source);
    await first.load('other', await table('o', [5n], 1));
    // The crash: no close(); the source disappears; a temp file of an interrupted load stays behind.
    await rm(source);
    await writeFile(join(tier, '.tmp-emb.v9.params-dead'), 'partial');
    await writeFile(join(tier, 'emb.v0.params'), 'an old version');
    const second = new ParamsService({ dir: tier });
    // Bounded in this process's CPU time, which a busy machine does not inflate as it does wall time.
    const cpuBefore = process.cpuUsage();
    const report = await second.recover();
    const cpu = process.cpuUsage(cpuBefore);
    expect(report).toMatchObject({ tables: 2, failed: [] });
    expect(report.ms).toBeGreaterThanOrEqual(0);
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(1000);
    await second.valuesChecked;
    expect(decodeAnswer(second.mget('emb', keysBody([11n * 4999n, 12n])), 2, 4)).toEqual([vectorOf(11n * 4999n, 4), undefined]);
    expect((await readdir(tier)).sort()).toEqual(['emb.v1.params', 'manifest.json', 'other.v1.params']);
    // Versions continue after the recovered ones.
    expect(await second.load('other', await table('o2', [6n], 1))).toMatchObject({ version: 2 });
  });

  it('recovery leaves out a table whose file was damaged and serves the rest', async () => {
    const first = new ParamsService({ dir: tier });
    await first.load('good', await table('g', [1n], 2));
    await first.load('bad', await table('b', [2n], 2));
    await writeFile(join(tier, 'bad.v1.params'), Buffer.alloc(100));
    const second = new ParamsService({ dir: tier });
    const report = await second.recover();
    expect(report.tables).toBe(1);
    expect(report.failed).toMatchObject([{ name: 'bad', message: expect.stringContaining('header') }]);
    expect(second.list().map((t) => t.name)).toEqual(['good']);
    // Another load rewrites the manifest: the failed table stays listed (and reported at the next start) until it is reloaded or unloaded.
    await second.load('other', await table('o', [3n], 2));
    const third = new ParamsService({ dir: tier });
    expect((await third.recover()).failed).toMatchObject([{ name: 'bad' }]);
    await third.load('bad', await table('b2', [4n], 2));
    expect(decodeAnswer(third.mget('bad', keysBody([4n])), 1, 2)).toEqual([vectorOf(4n, 2)]);
    expect((await readdir(tier)).sort()).toEqual(['bad.v2.params', 'good.v1.params', 'manifest.json', 'other.v1.params']);
  });

  it('after a restart, serves no table whose values were damaged: checked right after recovery', async () => {
    const keys = Array.from({ length: 1000 }, (_, i) => BigInt(i));
    const first = new ParamsService({ dir: tier });
    await first.load('flipped', await table('f', keys, 4));
    await first.load('fine', await table('fi', keys, 4, 1));
    const file = join(tier, 'flipped.v1.params');
    const { valuesOffset } = ServedTable.open(file, defaultTableMapper()).header;
    const bytes = await readFile(file);
    for (let i = 0; i < 10; i++) bytes[valuesOffset + 1600 * i + 3] ^= 0xff; // an exponent byte of 10 values
    await writeFile(file, bytes);
    const second = new ParamsService({ dir: tier });
    const report = await second.recover();
    expect(report).toMatchObject({ tables: 2, failed: [] }); // the index is intact: recovery itself stays fast
    // Until its check ends a lookup answers PARAMS_TABLE_VERIFYING (503); it may already have ended here.
    await second.valuesChecked;
    expect(() => second.mget('flipped', keysBody([1n]))).toThrow(expect.objectContaining({ code: 'PARAMS_TABLE_NOT_FOUND' }));
    expect(second.failedVerification).toEqual([{ name: 'flipped', message: expect.stringContaining('values checksum mismatch') }]);
    expect(decodeAnswer(second.mget('fine', keysBody([7n])), 1, 4)).toEqual([vectorOf(7n, 4, 1)]);
    expect(second.list().map((t) => t.name)).toEqual(['fine']);
    // Reloading the name serves it again.
    await second.load('flipped', await table('f2', keys, 4));
    expect(decodeAnswer(second.mget('flipped', keysBody([9n])), 1, 4)).toEqual([vectorOf(9n, 4)]);
    await second.close();
    await first.close();
  });

  it('serves a table checked in this boot at once after a restart, and checks one that changed, was stamped in another boot or was never read', async () => {
    const keys = Array.from({ length: 2000 }, (_, i) => BigInt(i));
    const manifestOf = async () => JSON.parse(await readFile(join(tier, 'manifest.json'), 'utf8')) as { tables: Array<{ name: string; file: string; checked?: { boot: string } }> };
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    const first = new ParamsService({ dir: tier });
    await first.load('kept', await table('k', keys, 4));
    await first.load('touched', await table('t', keys, 4, 1));
    await first.load('moved', await table('m', keys, 4, 2));
    await first.load('delta', await table('d', keys, 4, 3));
    // A delta past half of what a new overlay holds (65,536 upserts): the table is rewritten as a new version file.
    const added = Array.from({ length: 70_000 }, (_, i): [bigint, number[]] => [10_000n + BigInt(i), [1, 2, 3, 4]]);
    await first.applyDelta('delta', encodeDelta(4, [[5n, [9, 9, 9, 9]], ...added], []));
    const stamps = new Map((await manifestOf()).tables.map((t) => [t.name, t]));
    expect(stamps.get('kept')!.checked).toMatchObject({ boot });
    expect(stamps.get('delta')).toMatchObject({ file: 'delta.v2.params' });
    expect(stamps.get('delta')!.checked).toBeUndefined(); // written, not read back
    // One value of `touched` flipped in place, its mtime put back: the ctime still moves.
    const touched = join(tier, 'touched.v1.params');
    const { valuesOffset } = ServedTable.open(touched, defaultTableMapper()).header;
    const { mtime } = await stat(touched);
    const handle = await open(touched, 'r+');
    await handle.write(Buffer.from([0xff]), 0, 1, valuesOffset + 3);
    await handle.close();
    await utimes(touched, mtime, mtime);
    // `moved` says it was checked in another boot.
    const manifest = await manifestOf();
    for (const t of manifest.tables) if (t.name === 'moved') t.checked = { ...t.checked!, boot: 'another-boot' };
    await writeFile(join(tier, 'manifest.json'), JSON.stringify({ format: 1, tables: manifest.tables }));

    // Which files a recovery reads every value of.
    const recoverReading = async (service: ParamsService, tables: number, meanwhile = () => {}): Promise<string[]> => {
      const read: string[] = [];
      const valuesIntact = ServedTable.prototype.valuesIntact;
      const spy = vi.spyOn(ServedTable.prototype, 'valuesIntact').mockImplementation(function (this: ServedTable) {
        read.push(this.path.slice(tier.length + 1));
        return valuesIntact.call(this);
      });
      try {
        expect(await service.recover()).toMatchObject({ tables, failed: [] });
        meanwhile();
        await service.valuesChecked;
      } finally {
        spy.mockRestore();
      }
      return read.sort();
    };
    const second = new ParamsService({ dir: tier });
    // `kept` is served with no check at all, before the others are checked.
    const read = await recoverReading(second, 4, () => expect(decodeAnswer(second.mget('kept', keysBody([7n])), 1, 4)).toEqual([vectorOf(7n, 4)]));
    expect(read).toEqual(['delta.v2.params', 'moved.v1.params', 'touched.v1.params']);
    expect(second.failedVerification).toEqual([{ name: 'touched', message: expect.stringContaining('values checksum mismatch') }]);
    expect(decodeAnswer(second.mget('moved', keysBody([7n])), 1, 4)).toEqual([vectorOf(7n, 4, 2)]);
    expect(decodeAnswer(second.mget('delta', keysBody([5n])), 1, 4).map((v) => (v ? [...v] : null))).toEqual([[9, 9, 9, 9]]);
    // What was read whole is stamped with this boot for the next recovery.
    const after = new Map((await manifestOf()).tables.map((t) => [t.name, t.checked]));
    expect(after.get('moved')).toMatchObject({ boot });
    expect(after.get('delta')).toMatchObject({ boot });
    expect(after.has('touched')).toBe(true); // not served, but still listed, and its file kept
    const third = new ParamsService({ dir: tier });
    // Only the damaged file is read again, fails again and is reported again.
    expect(await recoverReading(third, 4)).toEqual(['touched.v1.params']);
    expect(third.failedVerification).toEqual([{ name: 'touched', message: expect.stringContaining('values checksum mismatch') }]);
    for (const name of ['kept', 'moved', 'delta']) expect(() => third.mget(name, keysBody([7n]))).not.toThrow();
    expect(third.unservedNames()).toEqual(['touched']);
    // Unloading it drops it from the manifest, with its file.
    await third.unload('touched');
    expect(third.unservedNames()).toEqual([]);
    expect((await manifestOf()).tables.map((t) => t.name).sort()).toEqual(['delta', 'kept', 'moved']);
    expect(await readdir(tier)).not.toContain('touched.v1.params');
    await expect(third.unload('touched')).rejects.toMatchObject({ code: 'PARAMS_TABLE_NOT_FOUND' });
    await Promise.all([first.close(), second.close(), third.close()]);
  });

  it('applies a delta of upserts and deletes as a new version', async () => {
    const keys = Array.from({ length: 3000 }, (_, i) => BigInt(i));
    const service = new ParamsService({ dir: tier });
    await service.load('emb', await table('emb', keys, 4, 0, 2));
    const delta = encodeDelta(4, [[5n, [9, 9, 9, 9]], [1_000_000n, [1, 2, 3, 4]], [7n, [7, 7, 7, 7]]], [6n, 7n, 424242n]);
    const info = await service.applyDelta('emb', delta);
    expect(info).toMatchObject({ version: 2, keys: 3000 - 1 + 1, shards: 2 });
    const answer = decodeAnswer(service.mget('emb', keysBody([5n, 1_000_000n, 6n, 7n, 8n])), 5, 4);
    expect(answer.map((v) => (v ? [...v] : null))).toEqual([[9, 9, 9, 9], [1, 2, 3, 4], null, [7, 7, 7, 7], [...vectorOf(8n, 4)]]);
    await expect(service.applyDelta('emb', encodeDelta(3, [], []))).rejects.toMatchObject({ code: 'PARAMS_BAD_DELTA' });
    await expect(service.applyDelta('emb', delta.subarray(0, delta.length - 1))).rejects.toMatchObject({ code: 'PARAMS_BAD_DELTA' });
    await expect(service.applyDelta('nope', delta)).rejects.toMatchObject({ code: 'PARAMS_TABLE_NOT_FOUND' });
    // The delta survives a crash like a load does.
    const again = new ParamsService({ dir: tier });
    await again.recover();
    expect(decodeAnswer(again.mget('emb', keysBody([6n, 1_000_000n])), 2, 4).map((v) => (v ? [...v] : null))).toEqual([null, [1, 2, 3, 4]]);
  });
});

describe('ParamsService with lookup threads', () => {
  it('answers recovered tables on the main thread until `threadsAfter` settles, then on the threads', async () => {
    const keys = Array.from({ length: 2000 }, (_, i) => BigInt(i) * 7n);
    const first = new ParamsService({ dir: tier, lookupThreads: 2 });
    await first.load('emb', await table('emb', keys, 4));
    await first.close();
    const service = new ParamsService({ dir: tier, lookupThreads: 2 });
    try {
      let started = () => undefined as void;
      await service.recover({ threadsAfter: new Promise<void>((resolve) => (started = resolve)) });
      await service.valuesChecked;
      await new Promise((r) => setTimeout(r, 200)); // a thread would have mapped the table by now
      expect(service.runsOnThreads('emb')).toBe(false);
      expect(decodeAnswer(await service.mgetAsync('emb', keysBody([7n, 8n])), 2, 4)).toEqual([vectorOf(7n, 4), undefined]);
      started();
      await vi.waitFor(() => expect(service.runsOnThreads('emb')).toBe(true), { timeout: 10_000 });
      expect(decodeAnswer(await service.mgetAsync('emb', keysBody([14n, 15n])), 2, 4)).toEqual([vectorOf(14n, 4), undefined]);
    } finally {
      await service.close();
    }
  });

  it('moves a recovered table on a device tier to the threads without waiting for `threadsAfter`', async () => {
    const first = new ParamsService({ dir: tier, tier: 'nvme' });
    await first.load('emb', await table('emb', [1n, 2n], 2));
    await first.close();
    const service = new ParamsService({ dir: tier, tier: 'nvme' });
    try {
      await service.recover({ threadsAfter: new Promise<void>(() => undefined) });
      await service.valuesChecked;
      await vi.waitFor(() => expect(service.runsOnThreads('emb')).toBe(true), { timeout: 10_000 });
      expect(decodeAnswer(await service.mgetAsync('emb', keysBody([2n])), 1, 2)).toEqual([vectorOf(2n, 2)]);
    } finally {
      await service.close();
    }
  });

  it('never starts lookup threads for a service closed before `threadsAfter` settles', async () => {
    const first = new ParamsService({ dir: tier, lookupThreads: 1 });
    await first.load('emb', await table('emb', [1n, 2n], 2));
    await first.close();
    const service = new ParamsService({ dir: tier, lookupThreads: 1 });
    let started = () => undefined as void;
    await service.recover({ threadsAfter: new Promise<void>((resolve) => (started = resolve)) });
    await service.valuesChecked;
    await service.close();
    const threads = async () => Number(/^Threads:\s+(\d+)/m.exec(await readFile('/proc/self/status', 'utf8'))![1]);
    const before = await threads();
    started();
    await new Promise((r) => setTimeout(r, 300)); // a lookup thread would be running by now
    expect(await threads()).toBe(before);
    expect(() => service.runsOnThreads('emb')).toThrow(expect.objectContaining({ code: 'PARAMS_TABLE_NOT_FOUND' }));
  });

  it('answers mgetAsync on worker threads, splitting large batches, and switches versions atomically', async () => {
    const keys = Array.from({ length: 30_000 }, (_, i) => BigInt(i) * 5n);
    const v1 = await table('v1', keys, 4, 0, 2);
    const v2 = await table('v2', keys, 4, 1000, 2);
    const service = new ParamsService({ dir: tier, lookupThreads: 2 });
    try {
      await service.load('emb', v1);
      // 10,001 keys: split across both threads at a 32-key boundary; the last key is missing.
      const asked = [...keys.slice(0, 10_000), 7n];
      const answer = decodeAnswer(await service.mgetAsync('emb', keysBody(asked)), asked.length, 4);
      asked.forEach((k, i) => expect(answer[i], `key ${k}`).toEqual(i < 10_000 ? vectorOf(k, 4) : undefined));
      expect(decodeAnswer(await service.mgetAsync('emb', keysBody([5n])), 1, 4)).toEqual([vectorOf(5n, 4)]);
      await expect(service.mgetAsync('emb', Buffer.alloc(9))).rejects.toMatchObject({ code: 'PARAMS_BAD_KEYS' });

      const body = keysBody(keys.slice(0, 5000));
      let stop = false;
      const salts = new Set<number>();
      const readers = [0, 1, 2].map(async () => {
        while (!stop) {
          const got = decodeAnswer(await service.mgetAsync('emb', body), 5000, 4);
          const one = new Set(got.map((v, i) => Math.round(v![0]! - Number((BigInt(i) * 5n) % 1_000_003n))));
          expect(one.size).toBe(1);
          salts.add([...one][0]!);
        }
      });
      for (let round = 0; round < 4; round++) await service.load('emb', round % 2 === 0 ? v2 : v1);
      stop = true;
      await Promise.all(readers);
      expect(salts).toEqual(new Set([0, 1000]));
    } finally {
      await service.close();
    }
  });
});
