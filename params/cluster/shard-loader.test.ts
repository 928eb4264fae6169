import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTable } from '../table-builder.js';
import { ServedTable } from '../served-table.js';
import { defaultTableMapper } from '../table-mapper.js';
import { decodeAnswer, encodeRecords, keysBody, vectorOf, writeRecords } from '../testing/records.js';
import { TableWriter } from '../table-writer.js';
import { deltaForShards, recordsOfShards, shardOfKey, shardsTouched, writeRecordsTable } from './shard-records.js';
import { openRangedTable, ROW_GAP_BYTES, writeShardTable } from './shard-loader.js';
import { EMPTY_ROW, SLOT_BYTES } from '../table-format.js';
import { decodeDelta, encodeDelta } from '../delta-body.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp('/dev/shm/params-cluster-');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const DIM = 4;
const SHARDS = 8;
const keys = Array.from({ length: 5000 }, (_, i) => BigInt(i) * 104729n + 11n);

async function whole(): Promise<{ path: string; seed: number }> {
  await writeRecords(join(work, 'in.bin'), keys, DIM);
  await buildTable(join(work, 'in.bin'), join(work, 't.params'), { dim: DIM, shards: SHARDS });
  const table = ServedTable.open(join(work, 't.params'), defaultTableMapper());
  const seed = table.header.seed;
  table.close();
  return { path: join(work, 't.params'), seed };
}

const shardOf = (key: bigint, seed: number) => shardOfKey(Number(key & 0xffffffffn), Number(key >> 32n), SHARDS, seed);

describe('shard tables', () => {
  it('holds exactly the keys of the wanted shards, read by byte ranges of the source', async () => {
    const { path, seed } = await whole();
    const source = await openRangedTable(path, {});
    const reads: Array<[number, number]> = [];
    const counting = { ...source, read: (offset: number, length: number) => (reads.push([offset, length]), source.read(offset, length)) };
    const wanted = [1, 2, 5];
    const report = await writeShardTable(counting, wanted, join(work, 'part.params'));
    await source.close();
    const inWanted = keys.filter((k) => wanted.includes(shardOf(k, seed)));
    expect(report.keys).toBe(inWanted.length);
    // Index regions of shards 1-2 and 5 (two ranges), then rows; never the whole index.
    const indexReads = reads.filter(([offset]) => offset >= source.header.indexOffset);
    expect(indexReads).toHaveLength(2);
    expect(indexReads.reduce((n, [, l]) => n + l, 0)).toBeLessThan(source.header.indexBytes);
    const part = ServedTable.open(join(work, 'part.params'), defaultTableMapper(), { verifyValues: true });
    const answer = Buffer.alloc((Math.ceil(keys.length / 32) * 4 + keys.length * DIM * 4));
    part.mgetInto(new Uint32Array(keysBody(keys).buffer.slice(0)), keys.length, new Uint32Array(answer.buffer));
    decodeAnswer(answer, keys.length, DIM).forEach((got, i) => {
      expect(got).toEqual(wanted.includes(shardOf(keys[i]!, seed)) ? vectorOf(keys[i]!, DIM) : undefined);
    });
    // Its records of a shard round-trip into a table of the same shape.
    const records = recordsOfShards(part, new Set([5]));
    part.close();
    expect(writeRecordsTable(join(work, 'five.params'), { dim: DIM, shards: SHARDS, seed }, [records])).toBe(keys.filter((k) => shardOf(k, seed) === 5).length);
  });

  it('cuts a delta into the part of each set of shards', async () => {
    const { seed } = await whole();
    const upserts = keys.slice(0, 50).map((k) => [k, vectorOf(k, DIM, 3)] as const);
    const deletes = keys.slice(50, 60);
    const delta = decodeDelta(encodeDelta(DIM, upserts, deletes));
    const touched = shardsTouched(delta, SHARDS, seed);
    expect(touched).toEqual([...new Set([...keys.slice(0, 60)].map((k) => shardOf(k, seed)))].sort((a, b) => a - b));
    const part = decodeDelta(deltaForShards(delta, new Set([touched[0]!]), SHARDS, seed));
    expect(part.upserts).toBe(upserts.filter(([k]) => shardOf(k, seed) === touched[0]).length);
    expect(part.deletes).toBe(deletes.filter((k) => shardOf(k, seed) === touched[0]).length);
  });
});

describe('shard loads read only their shards', () => {
  it('reads the header page, the wanted index regions and the wanted rows, plus at most the documented gap slack', async () => {
    // 40,000 keys of dim 16 in 8 shards: about 320 KB of rows a shard, above ROW_GAP_BYTES,
    // so a skipped shard is never read as slack.
    const dim = 16;
    const many = Array.from({ length: 40_000 }, (_, i) => BigInt(i) * 2654435761n + 17n);
    await writeRecords(join(work, 'in.bin'), many, dim);
    await buildTable(join(work, 'in.bin'), join(work, 't.params'), { dim, shards: SHARDS });
    const source = await openRangedTable(join(work, 't.params'), {});
    const { header, shards } = source;
    const rowBytes = dim * 4;
    // Rows are grouped by shard: shard s owns the rows after those of the shards before it.
    const firstRow = shards.map((_, s) => shards.slice(0, s).reduce((n, e) => n + e.keyCount, 0));
    const index = await source.read(header.indexOffset, header.indexBytes);
    const totalSlots = header.indexBytes / SLOT_BYTES;
    shards.forEach((entry, s) => {
      const end = s + 1 < shards.length ? shards[s + 1]!.firstSlot : totalSlots;
      for (let slot = entry.firstSlot; slot < end; slot++) {
        const row = index.readUInt32LE(slot * SLOT_BYTES + 8);
        if (row === EMPTY_ROW) continue;
        expect(row).toBeGreaterThanOrEqual(firstRow[s]!);
        expect(row).toBeLessThan(firstRow[s]! + entry.keyCount);
      }
    });

    for (const wanted of [[0, 1, 2, 3, 4, 5, 6, 7].filter((s) => s % 3 !== 2), [3], [1, 2, 5]]) {
      const reads: Array<[number, number]> = [];
      const counting = { ...source, read: (offset: number, length: number) => (reads.push([offset, length]), source.read(offset, length)) };
      const report = await writeShardTable(counting, wanted, join(work, 'part.params'));
      const indexBytes = wanted.reduce((n, s) => n + ((s + 1 < shards.length ? shards[s + 1]!.firstSlot : totalSlots) - shards[s]!.firstSlot) * SLOT_BYTES, 0);
      const rowsBytes = wanted.reduce((n, s) => n + shards[s]!.keyCount * rowBytes, 0);
      const runs = wanted.filter((s, i) => i === 0 || wanted[i - 1] !== s - 1).length;
      const read = (from: number, to: number) => reads.filter(([offset]) => offset >= from && offset < to).reduce((n, [, length]) => n + length, 0);
      expect(read(header.indexOffset, header.fileBytes)).toBe(indexBytes);
      expect(read(header.valuesOffset, header.indexOffset)).toBeGreaterThanOrEqual(rowsBytes);
      expect(read(header.valuesOffset, header.indexOffset)).toBeLessThanOrEqual(rowsBytes + (runs - 1) * ROW_GAP_BYTES);
      expect(reads.every(([offset]) => offset >= header.valuesOffset)).toBe(true);
      expect(report.bytesRead).toBe(header.valuesOffset + indexBytes + read(header.valuesOffset, header.indexOffset));
      // Shards of 320 KB are never merged across a skipped one: exactly the rows.
      expect(read(header.valuesOffset, header.indexOffset)).toBe(rowsBytes);
      const part = ServedTable.open(join(work, 'part.params'), defaultTableMapper(), { verifyValues: true });
      expect(part.header.keyCount).toBe(wanted.reduce((n, s) => n + shards[s]!.keyCount, 0));
      part.close();
    }
    await source.close();
  });
});

describe('shard loads of tables with rows in first-seen order', () => {
  it('load the same keys and values as from a table grouped by shard', async () => {
    const { seed } = await whole();
    const old = join(work, 'old.params');
    const records = encodeRecords(keys, DIM);
    const recordBytes = 8 + 4 * DIM;
    const writer = new TableWriter(old, { dim: DIM, shards: SHARDS, seed, maxRecords: keys.length, firstSeenOrder: true });
    keys.forEach((_, i) => writer.add(records.readUInt32LE(i * recordBytes), records.readUInt32LE(i * recordBytes + 4), records, i * recordBytes + 8));
    writer.finish();
    const wanted = [0, 3, 4];
    const source = await openRangedTable(old, {});
    const report = await writeShardTable(source, wanted, join(work, 'part.params'));
    await source.close();
    expect(report.keys).toBe(keys.filter((k) => wanted.includes(shardOf(k, seed))).length);
    const part = ServedTable.open(join(work, 'part.params'), defaultTableMapper(), { verifyValues: true });
    const answer = Buffer.alloc(Math.ceil(keys.length / 32) * 4 + keys.length * DIM * 4);
    part.mgetInto(new Uint32Array(keysBody(keys).buffer.slice(0)), keys.length, new Uint32Array(answer.buffer));
    part.close();
    decodeAnswer(answer, keys.length, DIM).forEach((got, i) => {
      expect(got).toEqual(wanted.includes(shardOf(keys[i]!, seed)) ? vectorOf(keys[i]!, DIM) : undefined);
    });
  });
});
