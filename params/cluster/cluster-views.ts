import type { Logger } from '../../telemetry/index.js';
import { KEYS, parseTableKey, type MemberRecord, type ServingRecord } from './cluster-records.js';
import type { EtcdMirror } from './etcd-mirror.js';
import type { TableView } from './shard-router.js';

/** A member that failed a request is avoided this long unless it is the only replica left. */
const SUSPECT_MS = 5000;

/**
 * What one member reads from its mirror of the cluster's state: the members, the table names,
 * and for each served table the view the router uses (its serving version and, per shard, the
 * members that are up and ready with it). Also the members recently suspected of failing.
 * Rebuilt after every change of the mirror; a view is replaced only when its version or
 * replicas changed, so routers holding it are not disturbed by unrelated changes.
 */
export class ClusterViews {
  readonly #mirror: EtcdMirror;
  readonly #logger: Logger;
  readonly #views = new Map<string, TableView>();
  /** When this member began routing each table's serving version (epoch ms). */
  readonly #servingSince = new Map<string, number>();
  readonly #suspects = new Map<string, number>();

  constructor(mirror: EtcdMirror, logger: Logger) {
    this.#mirror = mirror;
    this.#logger = logger;
  }

  get views(): ReadonlyMap<string, TableView> {
    return this.#views;
  }

  get servingSince(): ReadonlyMap<string, number> {
    return this.#servingSince;
  }

  view(name: string): TableView | undefined {
    return this.#views.get(name);
  }

  /** Avoid `node` for a while: a request to it failed. */
  suspect(node: string): void {
    this.#suspects.set(node, Date.now() + SUSPECT_MS);
  }

  isSuspect(node: string): boolean {
    return (this.#suspects.get(node) ?? 0) > Date.now();
  }

  /** The members listed now (their leases alive), by name. */
  members(): Map<string, MemberRecord> {
    const out = new Map<string, MemberRecord>();
    for (const key of this.#mirror.keys(KEYS.members)) {
      const record = this.#mirror.json<MemberRecord>(key);
      if (record) out.set(record.node, record);
    }
    return out;
  }

  /** Every table the cluster has records of. */
  tableNames(): Set<string> {
    const names = new Set<string>();
    for (const key of this.#mirror.keys(KEYS.tables)) {
      const parsed = parseTableKey(key);
      if (parsed) names.add(parsed.name);
    }
    return names;
  }

  /** Reads the mirror again: views of served tables, dropping those no longer served and expired suspicions. */
  rebuild(): void {
    const m = this.#mirror;
    const members = this.members();
    const now = Date.now();
    for (const [node, until] of this.#suspects) if (until < now || !members.has(node)) this.#suspects.delete(node);
    const seen = new Set<string>();
    for (const name of this.tableNames()) {
      const serving = m.json<ServingRecord>(KEYS.serving(name));
      if (!serving) continue;
      seen.add(name);
      const ready = new Set(m.keys(KEYS.versionPrefix(name, 'ready', serving.version)).map((k) => k.split('/').pop()!));
      const replicas = serving.assignment.map((holders) => holders.filter((n) => members.has(n) && ready.has(n)));
      const old = this.#views.get(name);
      if (old && old.version === serving.version && sameReplicas(old.replicas, replicas)) continue;
      this.#views.set(name, { name, version: serving.version, dim: serving.dim, shards: serving.shards, seed: serving.seed, replicas });
      if (old?.version !== serving.version) {
        this.#servingSince.set(name, Date.now());
        this.#logger.info({ table: name, version: serving.version }, 'serving a new cluster version');
      }
    }
    for (const name of this.#views.keys()) {
      if (seen.has(name)) continue;
      this.#views.delete(name);
      this.#servingSince.delete(name);
    }
  }
}

function sameReplicas(a: readonly (readonly string[])[], b: readonly (readonly string[])[]): boolean {
  return a.length === b.length && a.every((x, i) => x.length === b[i]!.length && x.every((n, j) => n === b[i]![j]));
}
