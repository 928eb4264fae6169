import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTable } from '../table-builder.js';
import { ServedTable } from '../served-table.js';
import { defaultTableMapper } from '../table-mapper.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from '../testing/records.js';
import { deltaForShards, recordsOfShards, shardOfKey, shardsTouched, writeRecordsTable } from './shard-records.js';
import { openRangedTable, writeShardTable } from './shard-loader.js';
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
