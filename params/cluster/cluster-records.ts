/**
 * What the cluster keeps in etcd, under its prefix (docs/PARAMS.md, "Cluster"):
 *
 *   members/<node>                       MemberRecord, under the member's lease
 *   election/coordinator/...             the coordinator election (etcd3's Election)
 *   requests/<id>                        SwitchRequest: a publish waiting for the coordinator
 *   results/<id>                         SwitchResult: how it ended, for the daemon that asked
 *   tables/<name>/serving                ServingRecord: the version every member answers from
 *   tables/<name>/switch                 SwitchRecord: the switch being prepared, if any
 *   tables/<name>/last-version           the highest version ever given out (never reused)
 *   tables/<name>/ready/<version>/<node> ReadyRecord, under the member's lease: it holds its
 *                                        shards of that version (prepared, or serving)
 *   tables/<name>/failed/<version>/<node> a prepare that failed, with its message
 *
 * Every value is JSON. Only the coordinator writes serving, switch and results; only a
 * member writes its own members/, ready/ and failed/ keys.
 */

export interface MemberRecord {
  readonly node: string;
  /** The member's admin API base URL, where the other members send shard lookups. */
  readonly api: string;
  readonly joinedAt: number;
}

/** Where a version's rows come from and what they are. */
export interface TableShape {
  readonly name: string;
  /** The table file (s3://, file:// or a path every member can read). */
  readonly source: string;
  /** The object's ETag when `source` is in a store: every member loads exactly that object. */
  readonly etag?: string;
  readonly dim: number;
  readonly shards: number;
  readonly seed: number;
  readonly keys: number;
  /** Replicas per shard asked for. */
  readonly replicas: number;
  /** Deltas applied since the source was published: rows no longer all in `source`. */
  readonly deltas?: number;
}

export interface ServingRecord extends TableShape {
  readonly version: number;
  /** assignment[s]: the members holding shard s. */
  readonly assignment: readonly (readonly string[])[];
  readonly committedAt: number;
}

export type SwitchKind = 'publish' | 'delta' | 'repair';

/** A delta on its way to the replicas of the shards it touches. */
export interface DeltaRef {
  /** The member that took the delta: it serves the body to the others until the switch ends. */
  readonly from: string;
  readonly touched: readonly number[];
  readonly upserts: number;
  readonly deletes: number;
}

export interface SwitchRecord extends TableShape {
  /** Names the switch; the request id for a publish. */
  readonly id: string;
  readonly kind: SwitchKind;
  /** The version being prepared: one above any the table had. */
  readonly version: number;
  /** The serving version it replaces (none for a first publish). */
  readonly base?: number;
  readonly assignment: readonly (readonly string[])[];
  readonly delta?: DeltaRef;
  readonly startedAt: number;
  /** Epoch ms after which the coordinator aborts the prepare. */
  readonly deadline: number;
}

export type SwitchRequest = {
  readonly id: string;
  readonly name: string;
  /** The member that asked (for the log). */
  readonly from: string;
} & ({ readonly kind: 'publish'; readonly source: string; readonly replicas: number } | { readonly kind: 'delta'; readonly delta: DeltaRef });

export interface SwitchResult {
  readonly ok: boolean;
  /** When it was written (epoch ms): results nobody collected are removed after a while. */
  readonly at: number;
  readonly version?: number;
  readonly code?: string;
  readonly message?: string;
}

export interface ReadyRecord {
  readonly shards: readonly number[];
  /** How long the member took to prepare, for `strata params ls`. */
  readonly ms: number;
}

export const KEYS = {
  members: 'members/',
  member: (node: string) => `members/${node}`,
  requests: 'requests/',
  request: (id: string) => `requests/${id}`,
  results: 'results/',
  result: (id: string) => `results/${id}`,
  tables: 'tables/',
  serving: (name: string) => `tables/${name}/serving`,
  switch: (name: string) => `tables/${name}/switch`,
  /** The highest version the coordinator ever gave the table (aborted switches included). */
  lastVersion: (name: string) => `tables/${name}/last-version`,
  ready: (name: string, version: number, node: string) => `tables/${name}/ready/${version}/${node}`,
  failed: (name: string, version: number, node: string) => `tables/${name}/failed/${version}/${node}`,
  /** The version-scoped prefix of ready or failed keys. */
  versionPrefix: (name: string, kind: 'ready' | 'failed', version: number) => `tables/${name}/${kind}/${version}/`,
} as const;

/** A `tables/...` key taken apart; undefined for a key of another shape. */
export function parseTableKey(key: string): { name: string; kind: 'serving' | 'switch' } | { name: string; kind: 'ready' | 'failed'; version: number; node: string } | undefined {
  const parts = key.split('/');
  if (parts[0] !== 'tables' || parts.length < 3) return undefined;
  const name = parts[1]!;
  if (parts.length === 3 && (parts[2] === 'serving' || parts[2] === 'switch')) return { name, kind: parts[2] };
  if (parts.length === 5 && (parts[2] === 'ready' || parts[2] === 'failed')) return { name, kind: parts[2], version: Number(parts[3]), node: parts[4]! };
  return undefined;
}
