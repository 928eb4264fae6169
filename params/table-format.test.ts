import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTable } from './table-builder.js';
import { mgetAnswerBytes, ServedTable } from './served-table.js';
import { MmapTableMapper, ReadTableMapper } from './table-mapper.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from './testing/records.js';
import { decodeHeader, EMPTY_ROW, SLOT_BYTES } from './table-format.js';

const MAX = 2n ** 64n - 1n;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp('/dev/shm/params-format-');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function lookup(table: ServedTable, keys: bigint[]): Array<Float32Array | undefined> {
  const body = keysBody(keys);
  const out = Buffer.alloc(mgetAnswerBytes(keys.length, table.dim));
  table.mgetInto(new Uint32Array(body.buffer, body.byteOffset, keys.length * 2), keys.length, new Uint32Array(out.buffer, out.byteOffset, out.length / 4));
  return decodeAnswer(out, keys.length, table.dim);
}

describe('table format', () => {
  it('round-trips every key, including 0 and 2^64-1, and misses unknown keys, over mmap and plain reads', async () => {
    const keys = [0n, MAX, 1n, 2n ** 32n, 2n ** 63n, ...Array.from({ length: 5000 }, (_, i) => BigInt(i) * 7919n + 3n)];
    await writeRecords(join(dir, 'in.bin'), keys, 5);
    const report = await buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 5 });
    expect(report).toMatchObject({ records: keys.length, keys: keys.length, duplicates: 0 });
    for (const mapper of [new MmapTableMapper(), new ReadTableMapper()]) {
      const table = ServedTable.open(join(dir, 't.params'), mapper, { verifyValues: true });
      expect(table.keyCount).toBe(keys.length);
      const answers = lookup(table, [...keys, 4n, MAX - 1n]);
      keys.forEach((k, i) => expect(answers[i], `key ${k}`).toEqual(vectorOf(k, 5)));
      expect(answers.at(-2)).toBeUndefined();
      expect(answers.at(-1)).toBeUndefined();
    }
  });

  it('writes the bitmap padded to 4 bytes and zeros for missing keys', async () => {
    await writeRecords(join(dir, 'in.bin'), [10n, 20n], 3);
    await buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 3 });
    const table = ServedTable.open(join(dir, 't.params'), new MmapTableMapper());
    const body = keysBody([20n, 99n, 10n]);
    const out = Buffer.alloc(4 + 3 * 12, 0xff);
    table.mgetInto(new Uint32Array(body.buffer, body.byteOffset, 6), 3, new Uint32Array(out.buffer, out.byteOffset, out.length / 4));
    expect([...out.subarray(0, 4)]).toEqual([0b101, 0, 0, 0]);
    expect([...out.subarray(4 + 12, 4 + 24)]).toEqual(new Array(12).fill(0));
    expect(out.length).toBe(mgetAnswerBytes(3, 3));
  });

  it('keeps the last record of a duplicate key and counts it; --strict fails instead', async () => {
    const recordBytes = 8 + 4 * 2;
    const input = Buffer.alloc(3 * recordBytes);
    [[7n, 1], [8n, 2], [7n, 3]].forEach(([k, v], i) => {
      input.writeBigUInt64LE(k as bigint, i * recordBytes);
      input.writeFloatLE(v as number, i * recordBytes + 8);
      input.writeFloatLE(v as number, i * recordBytes + 12);
    });
    await writeFile(join(dir, 'in.bin'), input);
    const report = await buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 2 });
    expect(report).toMatchObject({ records: 3, keys: 2, duplicates: 1 });
    const table = ServedTable.open(join(dir, 't.params'), new MmapTableMapper(), { verifyValues: true });
    expect([...lookup(table, [7n])[0]!]).toEqual([3, 3]);
    expect(table.header.duplicates).toBe(1);
    await expect(buildTable(join(dir, 'in.bin'), join(dir, 's.params'), { dim: 2, strict: true })).rejects.toMatchObject({ code: 'PARAMS_DUPLICATE_KEY' });
    await expect(stat(join(dir, 's.params'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps the last record when the duplicate comes after its first row was written out (values checksum still right)', async () => {
    // dim 1024: 4 KiB rows, so the 8 MiB write batch holds 2048 rows and row 0 is flushed before its duplicate arrives.
    const keys = [...Array.from({ length: 3000 }, (_, i) => BigInt(i)), 0n];
    const recordBytes = 8 + 4 * 1024;
    const input = Buffer.alloc(keys.length * recordBytes);
    keys.forEach((k, i) => {
      input.writeBigUInt64LE(k, i * recordBytes);
      input.writeFloatLE(i === keys.length - 1 ? -1 : Number(k), i * recordBytes + 8);
    });
    await writeFile(join(dir, 'in.bin'), input);
    await buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 1024 });
    const table = ServedTable.open(join(dir, 't.params'), new MmapTableMapper(), { verifyValues: true });
    expect(lookup(table, [0n])[0]![0]).toBe(-1);
    expect(lookup(table, [2999n])[0]![0]).toBe(2999);
  });

  it('lays the rows out shard by shard, duplicates and the one-row-at-a-time path included', async () => {
    // [dim, shards]: 8 MiB batches flush before key 0's duplicate at dim 1024; at dim 4096 and
    // 4096 shards a shard's share of the regrouping buffer is below one row.
    for (const [dim, shards] of [[1024, 5], [4096, 4096]] as const) {
      const keys = [...Array.from({ length: 3000 }, (_, i) => BigInt(i) * 7919n), 0n];
      const recordBytes = 8 + 4 * dim;
      const input = Buffer.alloc(keys.length * recordBytes);
      keys.forEach((k, i) => {
        input.writeBigUInt64LE(k, i * recordBytes);
        input.writeFloatLE(i === keys.length - 1 ? -1 : i, i * recordBytes + 8);
        input.writeFloatLE(i, i * recordBytes + 8 + 4 * (dim - 1));
      });
      await writeFile(join(dir, 'in.bin'), input);
      await buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim, shards });
      expectGroupedByShard(await readFile(join(dir, 't.params')));
      const table = ServedTable.open(join(dir, 't.params'), new MmapTableMapper(), { verifyValues: true });
      const answers = lookup(table, keys.slice(0, -1));
      expect(answers[0]![0]).toBe(-1);
      expect(answers[0]![dim - 1]).toBe(keys.length - 1);
      answers.slice(1).forEach((answer, i) => {
        expect(answer![0]).toBe(i + 1);
        expect(answer![dim - 1]).toBe(i + 1);
      });
      table.close();
    }
  });

  it('rejects bad input with clear errors', async () => {
    await writeFile(join(dir, 'in.bin'), Buffer.alloc(8 + 4 * 4 + 1));
    await expect(buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 4 })).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT', message: expect.stringContaining('not a multiple of the 24-byte record') });
    await expect(buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 0 })).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT' });
    await expect(buildTable(join(dir, 'missing.bin'), join(dir, 't.params'), { dim: 4 })).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT' });
    await expect(buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 4, shards: 0 })).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT' });
  });

  it('shards by key hash and finds every key whatever the shard count; file:// destinations work', async () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => BigInt(i) * 1_000_000_007n);
    await writeRecords(join(dir, 'in.bin'), keys, 4);
    await buildTable(join(dir, 'in.bin'), `file://${dir}/s7.params`, { dim: 4, shards: 7 });
    const table = ServedTable.open(join(dir, 's7.params'), new MmapTableMapper(), { verifyValues: true });
    expect(table.header.shardCount).toBe(7);
    const answers = lookup(table, keys);
    keys.forEach((k, i) => expect(answers[i]).toEqual(vectorOf(k, 4)));
    // Every shard got a fair share of the keys (expected 20000/7 = 2857 each).
    const page = await readFile(join(dir, 's7.params'));
    for (let s = 0; s < 7; s++) expect(page.readUInt32LE(128 + 16 * s + 12)).toBeGreaterThan(2500);
  });

  it('refuses a table whose header, index or values were damaged, or that was truncated', async () => {
    await writeRecords(join(dir, 'in.bin'), Array.from({ length: 1000 }, (_, i) => BigInt(i)), 4);
    await buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 4 });
    const good = await readFile(join(dir, 't.params'));
    const damaged = async (mutate: (b: Buffer) => Buffer) => {
      await writeFile(join(dir, 'bad.params'), mutate(Buffer.from(good)));
      return join(dir, 'bad.params');
    };
    const indexOffset = Number(good.readBigUInt64LE(56));
    const valuesOffset = Number(good.readBigUInt64LE(40));
    const open = (p: string, verifyValues = false) => () => ServedTable.open(p, new MmapTableMapper(), { verifyValues });
    expect(open(await damaged((b) => (b.write('XXXX', 0), b)))).toThrow(expect.objectContaining({ code: 'PARAMS_BAD_TABLE', message: expect.stringContaining('magic') }));
    expect(open(await damaged((b) => (b.writeUInt32LE(5, 12), b)))).toThrow(expect.objectContaining({ message: expect.stringContaining('header checksum') }));
    expect(open(await damaged((b) => (b[indexOffset + 100]! ^= 1, b)))).toThrow(expect.objectContaining({ message: expect.stringContaining('index checksum') }));
    const values = await damaged((b) => (b[valuesOffset + 10]! ^= 1, b));
    expect(open(values)).not.toThrow(); // recovery does not read values
    expect(open(values, true)).toThrow(expect.objectContaining({ message: expect.stringContaining('values checksum') }));
    expect(open(await damaged((b) => b.subarray(0, b.length - 1)))).toThrow(expect.objectContaining({ message: expect.stringContaining('truncated') }));
    expect(open(join(dir, 'nothing.params'))).toThrow(expect.objectContaining({ code: 'PARAMS_BAD_TABLE' }));
  });

  it('serves an empty table', async () => {
    await writeFile(join(dir, 'in.bin'), Buffer.alloc(0));
    await buildTable(join(dir, 'in.bin'), join(dir, 't.params'), { dim: 8, shards: 3 });
    const table = ServedTable.open(join(dir, 't.params'), new MmapTableMapper(), { verifyValues: true });
    expect(lookup(table, [0n, 5n])).toEqual([undefined, undefined]);
  });
});

/** Every slot of shard s names a row among those after the rows of shards 0..s-1. */
function expectGroupedByShard(file: Buffer): void {
  const { header, shards } = decodeHeader(file, file.length, 'test');
  const totalSlots = header.indexBytes / SLOT_BYTES;
  let firstRow = 0;
  shards.forEach((entry, s) => {
    const end = s + 1 < shards.length ? shards[s + 1]!.firstSlot : totalSlots;
    for (let slot = entry.firstSlot; slot < end; slot++) {
      const row = file.readUInt32LE(header.indexOffset + slot * SLOT_BYTES + 8);
      if (row === EMPTY_ROW) continue;
      expect(row).toBeGreaterThanOrEqual(firstRow);
      expect(row).toBeLessThan(firstRow + entry.keyCount);
    }
    firstRow += entry.keyCount;
  });
}
