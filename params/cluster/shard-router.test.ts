import { describe, expect, it } from 'vitest';
import { keyHash, shardOf } from '../key-hash.js';
import { decodeAnswer, keysBody, vectorOf } from '../testing/records.js';
import { mgetAnswerBytes } from '../served-table.js';
import { ClusterError } from './cluster-error.js';
import { ShardRequestError } from './shard-client.js';
import { ShardRouter, type RouterHost, type TableView } from './shard-router.js';

const DIM = 2;
const SHARDS = 4;
const SEED = 7;
const shardOfKey = (k: bigint) => shardOf(keyHash(Number(k & 0xffffffffn), Number(k >> 32n), SEED), SHARDS);

/** A member's answer for `keys`: every key found, its vector salted with the version. */
function answerFor(keys: Buffer, version: number): Buffer {
  const n = keys.length / 8;
  const out = Buffer.alloc(mgetAnswerBytes(n, DIM));
  const bitmap = Math.ceil(n / 32) * 4;
  for (let i = 0; i < n; i++) {
    out[i >> 3] |= 1 << (i & 7);
    Buffer.from(vectorOf(keys.readBigUInt64LE(i * 8), DIM, version).buffer).copy(out, bitmap + i * DIM * 4);
  }
  return out;
}

function host(views: TableView[], ask: (node: string, view: TableView, keys: Buffer) => Promise<Buffer>): RouterHost & { asked: string[] } {
  const suspects = new Set<string>();
  const asked: string[] = [];
  let current = 0;
  return {
    self: 'a',
    asked,
    view: () => views[Math.min(current, views.length - 1)],
    pin: () => () => undefined,
    ask: (node, view, keys) => {
      asked.push(node);
      return ask(node, view, keys).catch((err: unknown) => {
        if (err instanceof ClusterError && err.code === 'CLUSTER_VERSION_GONE') current++;
        throw err;
      });
    },
    suspect: (node) => suspects.add(node),
    isSuspect: (node) => suspects.has(node),
  };
}

const view = (version: number, replicas: string[][]): TableView => ({ name: 'emb', version, dim: DIM, shards: SHARDS, seed: SEED, replicas });
const keys = Array.from({ length: 300 }, (_, i) => BigInt(i) * 1_000_003n + 1n);

describe('ShardRouter', () => {
  it('answers held shards here, the rest from one other member, merged in request order', async () => {
    const h = host([view(1, [['a', 'b'], ['b', 'c'], ['a', 'c'], ['b', 'c']])], async (_node, v, k) => answerFor(k, v.version));
    const { answer } = await new ShardRouter(h).mget('emb', keysBody(keys));
    expect(decodeAnswer(answer, keys.length, DIM)).toEqual(keys.map((k) => vectorOf(k, DIM, 1)));
    expect(h.asked.sort()).toEqual(['a', 'b']); // shards 1 and 3 both go to b: one sub-request
  });

  it('asks another replica for the keys of a member that fails, and avoids it afterwards', async () => {
    const h = host([view(1, [['b', 'c'], ['b', 'c'], ['b', 'c'], ['b', 'c']])], async (node, v, k) => {
      if (node === 'b') throw new ShardRequestError('unreachable', 'connection refused');
      return answerFor(k, v.version);
    });
    const router = new ShardRouter(h);
    const first = await router.mget('emb', keysBody(keys));
    expect(decodeAnswer(first.answer, keys.length, DIM)).toEqual(keys.map((k) => vectorOf(k, DIM, 1)));
    h.asked.length = 0;
    await router.mget('emb', keysBody(keys));
    expect(h.asked).toEqual(['c']);
  });

  it('starts a request again on the new version when its version was dropped, never mixing them', async () => {
    let calls = 0;
    const h = host([view(1, [['b'], ['b'], ['c'], ['c']]), view(2, [['b'], ['b'], ['c'], ['c']])], async (node, v, k) => {
      calls++;
      if (v.version === 1 && node === 'c') throw new ClusterError('CLUSTER_VERSION_GONE', 'dropped');
      return answerFor(k, v.version);
    });
    const { answer, version } = await new ShardRouter(h).mget('emb', keysBody(keys));
    expect(version).toBe(2);
    expect(decodeAnswer(answer, keys.length, DIM)).toEqual(keys.map((k) => vectorOf(k, DIM, 2)));
    expect(calls).toBeGreaterThan(2);
  });

  it('fails with CLUSTER_UNAVAILABLE when no replica of a shard answers', async () => {
    const h = host([view(1, [['b'], ['b'], ['b'], ['b']])], async () => {
      throw new ShardRequestError('unreachable', 'down');
    });
    await expect(new ShardRouter(h).mget('emb', keysBody(keys))).rejects.toMatchObject({ code: 'CLUSTER_UNAVAILABLE' });
    expect(new Set(keys.map(shardOfKey)).size).toBe(SHARDS);
  });
});
