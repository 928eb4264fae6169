import { describe, expect, it } from 'vitest';
import { assignShards, shardsOf } from './shard-assignment.js';
import { parseClusterUrl } from './cluster-url.js';

describe('assignShards', () => {
  it('puts every shard on R distinct members, spread within one shard of even', () => {
    for (const [shards, members, replicas] of [[12, 3, 2], [7, 3, 2], [64, 5, 3], [1, 4, 1], [10, 10, 10]] as const) {
      const nodes = Array.from({ length: members }, (_, i) => `n${i}`);
      const plan = assignShards(shards, nodes, replicas);
      expect(plan).toHaveLength(shards);
      for (const holders of plan) expect(new Set(holders).size).toBe(replicas);
      const loads = nodes.map((n) => shardsOf(plan, n).length);
      expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
      expect(loads.reduce((a, b) => a + b, 0)).toBe(shards * replicas);
    }
  });

  it('keeps the holders still alive and places only the lost replicas, on the least loaded members', () => {
    const before = assignShards(12, ['a', 'b', 'c', 'd'], 2);
    const after = assignShards(12, ['a', 'b', 'c'], 2, before.map((h) => h.filter((n) => n !== 'd')));
    before.forEach((holders, s) => {
      for (const n of holders.filter((x) => x !== 'd')) expect(after[s]).toContain(n);
      expect(after[s]).not.toContain('d');
    });
    const loads = ['a', 'b', 'c'].map((n) => shardsOf(after, n).length);
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
  });

  it('is deterministic whatever the order of the members', () => {
    expect(assignShards(9, ['c', 'a', 'b'], 2)).toEqual(assignShards(9, ['a', 'b', 'c'], 2));
  });

  it('refuses more replicas than members', () => {
    expect(() => assignShards(4, ['a', 'b'], 3)).toThrow(expect.objectContaining({ code: 'CLUSTER_NOT_ENOUGH_MEMBERS' }));
  });
});

describe('parseClusterUrl', () => {
  it('reads hosts and prefix', () => {
    expect(parseClusterUrl('etcd://10.0.0.1:2379,10.0.0.2:2379/strata/prod')).toEqual({ hosts: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], prefix: 'strata/prod' });
    expect(parseClusterUrl('etcd://[::1]:2379/x/')).toEqual({ hosts: ['http://[::1]:2379'], prefix: 'x' });
  });

  it('names what is wrong', () => {
    expect(() => parseClusterUrl('http://a:1/x')).toThrow(/not an etcd:\/\/ URL/);
    expect(() => parseClusterUrl('etcd://a:1')).toThrow(/no \/PREFIX/);
    expect(() => parseClusterUrl('etcd://a/x')).toThrow(/"a" where HOST:PORT belongs/);
    expect(() => parseClusterUrl('etcd://a:1/')).toThrow(/no valid prefix/);
  });
});
