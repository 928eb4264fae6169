/**
 * `npm run bench params-shard-load`: what a cluster member's prepare reads of a table, and
 * what it costs the builder to lay the rows out by shard. The table of bench/params-cluster
 * (1M keys, dim 16, 12 shards, three members at R = 2, so 8 shards each) is written twice
 * in each round: rows grouped by shard (the builder's layout) and rows in first-seen order
 * (the layout before it, still served). For each member, the shard load (writeShardTable,
 * the prepare's read and write) runs on both files from a local path, counting the bytes it
 * requests; rounds interleaved, medians and ranges of the times. Bytes do not vary by run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { TableWriter } from '../params/index.js';
import { assignShards, openRangedTable, writeShardTable } from '../params/cluster/index.js';
import { encodeRecords } from '../params/testing/records.js';
import { printTable } from './lib/table.js';

const KEYS = 1_000_000;
const DIM = 16;
const SHARDS = 12;
const MEMBERS = ['b0', 'b1', 'b2'];
const REPLICAS = 2;
const ROUNDS = 3;
/** Records handed to the writer per call batch: the builder's input batches are of this order. */
const BATCH_KEYS = 65_536;

type Layout = 'by shard' | 'first seen';
const LAYOUTS: Layout[] = ['first seen', 'by shard'];

export async function run(): Promise<Record<string, unknown>> {
  const work = await mkdtemp(join(tmpdir(), 'bench-shard-load-'));
  try {
    const keys = Array.from({ length: KEYS }, (_, i) => BigInt(i) * 2654435761n + 17n);
    const records = encodeRecords(keys, DIM);
    const recordBytes = 8 + 4 * DIM;
    const plan = assignShards(SHARDS, MEMBERS, REPLICAS);
    const held = MEMBERS.map((m) => plan.flatMap((holders, s) => (holders.includes(m) ? [s] : [])));
    const buildMs: Record<Layout, number[]> = { 'by shard': [], 'first seen': [] };
    const loadMs: Record<Layout, number[]> = { 'by shard': [], 'first seen': [] };
    const bytes: Record<Layout, number[]> = { 'by shard': [], 'first seen': [] };
    let fileBytes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const layout of round % 2 === 0 ? LAYOUTS : [...LAYOUTS].reverse()) {
        const path = join(work, `${layout === 'by shard' ? 'grouped' : 'first-seen'}.params`);
        const started = performance.now();
        const writer = new TableWriter(path, { dim: DIM, shards: SHARDS, maxRecords: KEYS, firstSeenOrder: layout === 'first seen' });
        for (let at = 0; at < KEYS; at += BATCH_KEYS) {
          for (let i = at; i < Math.min(KEYS, at + BATCH_KEYS); i++) writer.add(records.readUInt32LE(i * recordBytes), records.readUInt32LE(i * recordBytes + 4), records, i * recordBytes + 8);
        }
        fileBytes = writer.finish().bytes;
        buildMs[layout].push(performance.now() - started);
        for (const [m, shards] of held.entries()) {
          const source = await openRangedTable(path, {});
          const loadStarted = performance.now();
          const report = await writeShardTable(source, shards, join(work, `part-${m}.params`));
          loadMs[layout].push(performance.now() - loadStarted);
          await source.close();
          if (round === 0) bytes[layout][m] = report.bytesRead;
        }
      }
    }
    const stats = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return `${s[Math.floor(s.length / 2)]!.toFixed(0)} (${s[0]!.toFixed(0)}-${s[s.length - 1]!.toFixed(0)})`;
    };
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const load = loadavg()[0]!.toFixed(1);
    printTable(
      `prepare reads of a ${mb(fileBytes)} MB table (${KEYS} keys, dim ${DIM}, ${SHARDS} shards), per member (${MEMBERS.length} members, R = ${REPLICAS}); load average ${load}`,
      ['member', 'shards', 'MB read, first-seen rows', 'MB read, rows by shard', 'ratio'],
      MEMBERS.map((m, i) => [m, held[i]!.join(','), mb(bytes['first seen'][i]!), mb(bytes['by shard'][i]!), (bytes['by shard'][i]! / bytes['first seen'][i]!).toFixed(2)]),
    );
    printTable(
      `times, ${ROUNDS} interleaved rounds, median (range) ms; shard loads from a local file, all members`,
      ['layout', 'write the table', 'one member\'s shard load'],
      LAYOUTS.map((l) => [l, stats(buildMs[l]), stats(loadMs[l])]),
    );
    return { fileBytes, held, bytes, buildMs, loadMs, loadAverage: load };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
