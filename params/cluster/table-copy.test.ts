import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeDelta } from '../delta-body.js';
import { ParamsService } from '../params-service.js';
import { buildTable } from '../table-builder.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from '../testing/records.js';
import { recordsOfShards, writeRecordsTable } from './shard-records.js';
import { copyServedTable } from './table-copy.js';

/** What the cluster copies of a table whose deltas went in place (into its overlay, not its file). */
const DIM = 4;
const SHARDS = 4;
const keys = Array.from({ length: 4000 }, (_, i) => BigInt(i) * 7919n + 5n);
/** Keys no table holds at first: upserts of them add rows. */
const added = [3n, 4n, 6n];

let work: string;
let service: ParamsService;
beforeEach(async () => {
  work = await mkdtemp('/dev/shm/params-cluster-copy-');
  service = new ParamsService({ dir: join(work, 'tier') });
  await service.recover();
});
afterEach(async () => {
  await service.close();
  await rm(work, { recursive: true, force: true });
});

type Model = Map<bigint, Float32Array>;

/** Upserts `up` with `salt` and deletes `del`, in the table named `name` and in `model`. */
async function delta(name: string, model: Model, up: readonly bigint[], del: readonly bigint[], salt: number): Promise<void> {
  for (const k of del) model.delete(k);
  for (const k of up) model.set(k, vectorOf(k, DIM, salt));
  await service.applyDelta(name, encodeDelta(DIM, up.map((k) => [k, [...vectorOf(k, DIM, salt)]] as const), del));
}

/** Every key of `model` and every deleted one answers as the model says through table `name`. */
function expectServes(name: string, model: Model): void {
  const asked = [...keys, ...added];
  const got = decodeAnswer(service.mget(name, keysBody(asked)), asked.length, DIM);
  const wrong = asked.filter((k, i) => String(got[i] && [...got[i]!]) !== String(model.get(k) && [...model.get(k)!]));
  expect(wrong.slice(0, 5), `${wrong.length} keys of ${name} answer otherwise than the model`).toEqual([]);
}

async function servedWithDeltas(): Promise<Model> {
  await writeRecords(join(work, 'in.bin'), keys, DIM);
  await buildTable(join(work, 'in.bin'), join(work, 't.params'), { dim: DIM, shards: SHARDS });
  await service.load('base', join(work, 't.params'));
  const model: Model = new Map(keys.map((k) => [k, vectorOf(k, DIM)]));
  await delta('base', model, [...keys.slice(0, 200), added[0]!], keys.slice(200, 220), 5);
  await delta('base', model, [...keys.slice(100, 150), added[1]!], [keys[0]!], 6);
  // The deltas went in place: the table file alone still holds the old rows.
  expect(service.table('base').overlayState()?.epoch).toBe(2);
  expectServes('base', model);
  return model;
}

describe('copies of a table with in-place deltas', () => {
  it('a new replica gets the rows the table serves, not the rows of its file alone', async () => {
    const model = await servedWithDeltas();
    const all = new Set(Array.from({ length: SHARDS }, (_, s) => s));
    const table = service.table('base');
    const records = recordsOfShards(table, all);
    expect(records.length / (8 + 4 * DIM)).toBe(model.size);
    const { dim, shardCount, seed } = table.header;
    writeRecordsTable(join(work, 'copy.params'), { dim, shards: shardCount, seed }, [records]);
    await service.load('replica', join(work, 'copy.params'));
    expectServes('replica', model);
  });

  it('a copy made for the next delta keeps the deltas before it, and the original is unchanged', async () => {
    const model = await servedWithDeltas();
    const before = new Map(model);
    await copyServedTable(service, 'base', 'next');
    expectServes('next', model);
    await delta('next', model, [keys[300]!, added[2]!], [keys[1]!], 7);
    expectServes('next', model);
    expectServes('base', before);
  });
});
