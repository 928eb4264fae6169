import { KEYS, type MemberRecord, type ServingRecord, type SwitchRecord } from './cluster-records.js';
import type { EtcdMirror } from './etcd-mirror.js';
import type { TableView } from './shard-router.js';

export interface ClusterStatus {
  readonly node: string;
  readonly prefix: string;
  readonly coordinator: string | undefined;
  readonly members: ReadonlyArray<{ node: string; api: string; shards: Record<string, number>; self: boolean }>;
  readonly tables: ReadonlyArray<{
    name: string;
    version: number;
    keys: number;
    dim: number;
    shards: number;
    replicas: number;
    /** Shards with fewer live replicas than asked for. */
    underReplicated: number;
    /** `replicated`, `degraded` (some shard short of replicas) or `unavailable` (some shard has none). */
    state: 'replicated' | 'degraded' | 'unavailable';
    source: string;
    /** When the coordinator committed the serving version, and when this member began routing it (epoch ms). */
    committedAt: number;
    servingSince: number | undefined;
    switch?: { version: number; kind: string; ready: number; assigned: number; ageMs: number };
  }>;
}

/** What a member knows that its status is made of. */
export interface StatusInput {
  readonly mirror: EtcdMirror;
  readonly members: Map<string, MemberRecord>;
  readonly tableNames: Iterable<string>;
  readonly views: ReadonlyMap<string, TableView>;
  readonly servingSince: ReadonlyMap<string, number>;
  readonly node: string;
  readonly prefix: string;
  readonly coordinator: string | undefined;
}

/** Members, tables, versions and replication state, as `strata params ls` and `strata status` show them. */
export function describeCluster(input: StatusInput): ClusterStatus {
  const m = input.mirror;
  const members = input.members;
  const coordinator = input.coordinator;
  const tables: Array<ClusterStatus['tables'][number]> = [];
  const shardCounts = new Map<string, Record<string, number>>();
  for (const name of input.tableNames) {
    const serving = m.json<ServingRecord>(KEYS.serving(name));
    const sw = m.json<SwitchRecord>(KEYS.switch(name));
    if (!serving) continue;
    const view = input.views.get(name);
    const live = view?.replicas ?? [];
    const want = Math.min(serving.replicas, members.size);
    serving.assignment.forEach((holders) => {
      for (const n of holders) {
        const counts = shardCounts.get(n) ?? {};
        counts[name] = (counts[name] ?? 0) + 1;
        shardCounts.set(n, counts);
      }
    });
    const underReplicated = live.filter((h) => h.length < want).length;
    const state = live.some((h) => h.length === 0) ? 'unavailable' : underReplicated > 0 ? 'degraded' : 'replicated';
    const ready = sw ? m.keys(KEYS.versionPrefix(name, 'ready', sw.version)).length : 0;
    tables.push({
      name,
      version: serving.version,
      keys: serving.keys,
      dim: serving.dim,
      shards: serving.shards,
      replicas: serving.replicas,
      underReplicated,
      state,
      source: serving.source,
      committedAt: serving.committedAt,
      servingSince: view?.version === serving.version ? input.servingSince.get(name) : undefined,
      ...(sw ? { switch: { version: sw.version, kind: sw.kind, ready, assigned: new Set(sw.assignment.flat()).size, ageMs: Date.now() - sw.startedAt } } : {}),
    });
  }
  return {
    node: input.node,
    prefix: input.prefix,
    coordinator,
    members: [...members.values()].sort((a, b) => a.node.localeCompare(b.node)).map((r) => ({ node: r.node, api: r.api, shards: shardCounts.get(r.node) ?? {}, self: r.node === input.node })),
    tables,
  };
}
