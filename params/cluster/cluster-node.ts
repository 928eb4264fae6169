import { randomBytes } from 'node:crypto';

import { performance } from 'node:perf_hooks';
import type { Etcd3, Namespace } from 'etcd3';
import { ERROR_CATALOGUE, StrataError, type ErrorCode } from '../../errors/index.js';
import type { OpenStoreOptions } from '../../store/index.js';
import type { Logger } from '../../telemetry/index.js';
import { decodeDelta } from '../delta-body.js';
import { ParamsError } from '../params-error.js';
import type { ParamsService } from '../params-service.js';
import { ClusterError } from './cluster-error.js';
import type { ClusterAddress } from './cluster-url.js';
import { KEYS, parseTableKey, type ReadyRecord, type ServingRecord, type SwitchRecord, type SwitchRequest, type SwitchResult } from './cluster-records.js';
import { ClusterMembership } from './cluster-membership.js';
import { ClusterViews } from './cluster-views.js';
import { Coordinator, COORDINATOR_TICK_MS } from './coordinator.js';
import { EtcdMirror } from './etcd-mirror.js';
import { shardsOf } from './shard-assignment.js';
import { shardMget, ShardRequestError } from './shard-client.js';
import { openRangedTable } from './shard-loader.js';
import { ShardWriter } from './shard-writer.js';
import { ShardRouter, type TableView } from './shard-router.js';
import { recordsOfShards, shardsTouched } from './shard-records.js';
import { describeCluster, type ClusterStatus } from './cluster-status.js';

export type { ClusterStatus } from './cluster-status.js';
import { LOCAL_PREFIX, ShardMaterialiser } from './shard-materialiser.js';
import { HeldVersions, splitKey } from './held-versions.js';
import { makeFolders } from '../../durable/index.js';

export interface ClusterNodeConfig {
  readonly address: ClusterAddress;
  /** This member's name: unique in the cluster. */
  readonly node: string;
  /** This member's admin API base URL as the other members reach it. */
  readonly api: string;
  /** Where this member's shards are served from: each held version is a table of it. */
  readonly params: ParamsService;
  /** Scratch space for shard tables being written before the params service loads them. */
  readonly stagingDir: string;
  readonly store?: OpenStoreOptions;
  readonly logger: Logger;
  /** Bearer token for shard requests to the other members (they share STRATA_TOKEN). */
  readonly token?: string;
  /** Seconds the member's lease lives without a keepalive: how long a dead member stays listed. Default 10. */
  readonly leaseSeconds?: number;
  /** A prepare not complete after this long is aborted. Default 10 minutes. */
  readonly prepareTimeoutMs?: number;
}

/**
 * How long a dead member stays listed (and a dead coordinator elected). Requests are routed
 * around a dead member at once by their own failures, so this only delays the repair. A
 * prepare blocks the event loop for seconds at a time on a loaded machine (a 1M-key shard
 * table's index and checksums): bench/params-cluster saw 3 s leases expire under that, with
 * keepalives every TTL/3.
 */
const DEFAULT_LEASE_SECONDS = 10;
/** Large tables take minutes to copy from a store; a stuck prepare must not block the next publish forever. */
const DEFAULT_PREPARE_TIMEOUT_MS = 10 * 60 * 1000;

/**
 * This daemon's membership in a parameter-table cluster (docs/PARAMS.md, "Cluster"):
 * joins under a lease, campaigns for coordinator, prepares the shards the coordinator
 * assigns it, switches when a commit appears, drops versions nobody uses, and routes
 * lookups of cluster tables to the members holding their shards.
 */
export class ClusterNode {
  readonly node: string;
  readonly #config: ClusterNodeConfig;
  readonly #client: Etcd3;
  readonly #ns: Namespace;
  readonly #logger: Logger;
  readonly #mirror: EtcdMirror;
  readonly #router: ShardRouter;
  readonly #coordinator: Coordinator;
  readonly #membership: ClusterMembership;
  #tick: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #views: ClusterViews;
  /** What this member holds of each `name@version`, and the requests using it. */
  readonly #versions: HeldVersions;
  readonly #preparing = new Set<string>();
  readonly #writer = new ShardWriter();
  readonly #materialiser: ShardMaterialiser;
  /** Delta bodies this member took, by request id, until their switch ends. */
  readonly #deltas = new Map<string, Buffer>();
  /** Called after each change of the cluster's state (tests and status watchers). */
  #onChange: Array<() => void> = [];

  private constructor(config: ClusterNodeConfig, client: Etcd3) {
    this.node = config.node;
    this.#config = config;
    this.#logger = config.logger.child({ component: 'cluster', node: config.node });
    this.#client = client;
    this.#ns = this.#client.namespace(`${config.address.prefix}/`);
    this.#mirror = new EtcdMirror(this.#ns, this.#logger);
    this.#views = new ClusterViews(this.#mirror, this.#logger);
    this.#router = new ShardRouter({
      self: config.node,
      view: (name) => this.#views.view(name),
      pin: (view) => this.#versions.pin(`${view.name}@${view.version}`),
      ask: (node, view, keys) => (node === this.node ? this.#versions.localMget(view.name, view.version, keys) : this.#remoteMget(node, view, keys)),
      suspect: (node) => this.#views.suspect(node),
      isSuspect: (node) => this.#views.isSuspect(node),
    });
    this.#membership = new ClusterMembership(this.#ns, {
      node: config.node,
      api: config.api,
      leaseSeconds: config.leaseSeconds ?? DEFAULT_LEASE_SECONDS,
      logger: this.#logger,
      closed: () => this.#closed,
      held: () => this.#versions.entries(),
      elected: () => this.#coordinator.reconcile(),
    });
    this.#versions = new HeldVersions({
      node: config.node,
      params: config.params,
      logger: this.#logger,
      closed: () => this.#closed,
      servingVersion: (name) => this.#mirror.json<ServingRecord>(KEYS.serving(name))?.version,
      forgetReady: (name, version) => this.#ns.delete().key(KEYS.ready(name, version, this.node)).then(() => undefined),
    });
    this.#materialiser = new ShardMaterialiser({
      node: config.node,
      params: config.params,
      stagingDir: config.stagingDir,
      ...(config.store ? { store: config.store } : {}),
      ...(config.token !== undefined ? { token: config.token } : {}),
      logger: this.#logger,
      writer: this.#writer,
      held: (key) => this.#versions.get(key),
      replicas: (name) => this.#views.view(name)?.replicas,
      deltaBody: (id) => this.deltaBody(id),
      members: () => this.#views.members(),
    });
    this.#coordinator = new Coordinator(this.#ns, this.#mirror, {
      inspect: async (source) => {
        const table = await openRangedTable(source, config.store ?? {});
        await table.close();
        const h = table.header;
        return { dim: h.dim, shards: h.shardCount, seed: h.seed, keys: h.keyCount, ...(table.etag ? { etag: table.etag } : {}) };
      },
      prepareTimeoutMs: config.prepareTimeoutMs ?? DEFAULT_PREPARE_TIMEOUT_MS,
      logger: this.#logger.child({ role: 'coordinator' }),
    });
  }

  /**
   * Joins the cluster: drops shard tables a previous run of this daemon held (the
   * coordinator places shards again once this member's old lease has expired), writes
   * the member record under a new lease, mirrors the cluster's state and campaigns.
   * CLUSTER_UNAVAILABLE when etcd does not answer.
   */
  static async join(config: ClusterNodeConfig): Promise<ClusterNode> {
    // etcd3 (with gRPC and protobufjs) is loaded by a daemon that joins a cluster, not by
    // every daemon and command that imports this folder (the config schema does).
    const { Etcd3 } = await import('etcd3');
    const node = new ClusterNode(config, new Etcd3({ hosts: [...config.address.hosts], dialTimeout: 5000 }));
    try {
      await node.#start();
    } catch (err) {
      await node.close();
      if (err instanceof ClusterError) throw err;
      throw new ClusterError('CLUSTER_UNAVAILABLE', `cannot join the cluster at ${config.address.hosts.join(',')}/${config.address.prefix}: ${(err as Error).message}`, { cause: err });
    }
    return node;
  }

  async #start(): Promise<void> {
    await makeFolders(this.#config.stagingDir);
    // Local shard tables of a previous run, served or failed at recovery, are not this run's.
    const names = [...this.#config.params.list().map((t) => t.name), ...this.#config.params.unservedNames()];
    for (const name of names) if (name.startsWith(LOCAL_PREFIX)) await this.#config.params.unload(name);
    this.#mirror.on('change', () => this.#changed());
    await this.#mirror.start();
    // Ready keys of a previous run of this member (its lease not expired yet) claim copies it no longer has.
    for (const key of this.#mirror.keys(KEYS.tables)) {
      const parsed = parseTableKey(key);
      if (parsed && parsed.kind === 'ready' && parsed.node === this.node) await this.#ns.delete().key(key);
    }
    await this.#membership.join();
    this.#tick = setInterval(() => {
      if (this.#membership.leader) this.#coordinator.reconcile();
    }, COORDINATOR_TICK_MS);
    this.#tick.unref();
  }

  get isCoordinator(): boolean {
    return this.#membership.leader;
  }

  /** Whether `name` is a table the cluster serves (and this member routes). */
  serves(name: string): boolean {
    return this.#views.view(name) !== undefined;
  }

  /** Calls `listener` after every change of the cluster state this member sees. */
  onChange(listener: () => void): () => void {
    this.#onChange.push(listener);
    return () => {
      this.#onChange = this.#onChange.filter((l) => l !== listener);
    };
  }

  /** The mget of a cluster table, routed to its shards' replicas (see ShardRouter). */
  mget(name: string, keys: Buffer): Promise<{ answer: Buffer; version: number }> {
    return this.#router.mget(name, keys);
  }

  /** Answers keys from this member's copy of `version` of `name` (the route other members call). */
  async shardMget(name: string, version: number, keys: Buffer): Promise<Buffer> {
    const unpin = this.#versions.pin(`${name}@${version}`);
    try {
      return await this.#versions.localMget(name, version, keys);
    } finally {
      unpin();
    }
  }

  /**
   * Publishes table `name` from `source` with `replicas` copies of each shard: asks the
   * coordinator (through etcd) and answers when the switch committed. CLUSTER_SWITCH_ABORTED
   * (the old version keeps serving), CLUSTER_NOT_ENOUGH_MEMBERS, or the source's error.
   */
  async publish(name: string, source: string, replicas: number): Promise<{ name: string; version: number; ms: number }> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name)) throw new ParamsError('PARAMS_BAD_INPUT', `table name "${name}" must be 1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit`);
    if (!Number.isInteger(replicas) || replicas < 1) throw new ParamsError('PARAMS_BAD_INPUT', `replicas must be a positive integer, got ${replicas}`);
    return this.#switch(name, (id) => ({ id, name, from: this.node, kind: 'publish', source, replicas }));
  }

  /**
   * Applies a delta body (docs/PARAMS.md) to cluster table `name`: every replica of each
   * shard it touches prepares the new version, and all switch in one commit, as for a
   * publish. Replicas of shards it does not touch share their current table. The body is
   * served from this member to the others until the switch ends.
   */
  async applyDelta(name: string, body: Buffer): Promise<{ name: string; version: number; ms: number; touched: number }> {
    const view = this.#views.view(name);
    if (!view) throw new ParamsError('PARAMS_TABLE_NOT_FOUND', `the cluster serves no table named "${name}"`);
    const delta = decodeDelta(body);
    if (delta.dim !== view.dim) throw new ParamsError('PARAMS_BAD_DELTA', `delta has dim ${delta.dim}, table ${name} has dim ${view.dim}`);
    const touched = shardsTouched(delta, view.shards, view.seed);
    let id = '';
    try {
      const done = await this.#switch(name, (given) => {
        id = given;
        this.#deltas.set(given, body);
        return { id: given, name, from: this.node, kind: 'delta', delta: { from: this.node, touched, upserts: delta.upserts, deletes: delta.deletes } };
      });
      return { ...done, touched: touched.length };
    } finally {
      this.#deltas.delete(id);
    }
  }

  /** A delta body this member took, for the replicas preparing it. CLUSTER_VERSION_GONE once its switch ended. */
  deltaBody(id: string): Buffer {
    const body = this.#deltas.get(id);
    if (!body) throw new ClusterError('CLUSTER_VERSION_GONE', `no delta ${id} is being switched through this member`);
    return body;
  }

  /** The records of `shards` in this member's copy of `version` of `name` (for a member becoming their replica). */
  shardRecords(name: string, version: number, shards: readonly number[]): Buffer {
    const held = this.#versions.get(`${name}@${version}`);
    if (!held) throw new ClusterError('CLUSTER_VERSION_GONE', `this member holds no shards of version ${version} of ${name}`);
    const missing = shards.filter((s) => !held.shards.includes(s));
    if (missing.length > 0) throw new ClusterError('CLUSTER_VERSION_GONE', `this member does not hold shards ${missing.join(', ')} of ${name} version ${version}`);
    return recordsOfShards(this.#config.params.table(held.localName), new Set(shards));
  }

  /** Writes a request for the coordinator and waits for its result, then for this member to route the new version. */
  async #switch(name: string, make: (id: string) => SwitchRequest): Promise<{ name: string; version: number; ms: number }> {
    const timeoutMs = (this.#config.prepareTimeoutMs ?? DEFAULT_PREPARE_TIMEOUT_MS) + 60_000;
    const started = performance.now();
    const id = `${name}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const request = make(id);
    const result = new Promise<SwitchResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new ClusterError('CLUSTER_UNAVAILABLE', `${request.kind} of ${name} got no answer within ${timeoutMs} ms (is a coordinator elected?)`));
      }, timeoutMs);
      const off = this.onChange(() => {
        const found = this.#mirror.json<SwitchResult>(KEYS.result(id));
        if (!found) return;
        clearTimeout(timer);
        off();
        resolve(found);
      });
    });
    await this.#ns.put(KEYS.request(id)).value(JSON.stringify(request));
    const outcome = await result;
    await this.#ns.delete().key(KEYS.result(id));
    if (!outcome.ok) {
      // The coordinator passes on the code of what failed (a source's STORE_NOT_FOUND, say).
      const code = outcome.code ?? 'CLUSTER_SWITCH_ABORTED';
      const message = outcome.message ?? `${request.kind} of ${name} failed`;
      throw code in ERROR_CATALOGUE ? new StrataError(code as ErrorCode, message) : new ClusterError('CLUSTER_SWITCH_ABORTED', message);
    }
    // The commit is in etcd; answer once this member routes the new version too.
    await this.#until(() => (this.#views.view(name)?.version ?? 0) >= outcome.version!);
    return { name, version: outcome.version!, ms: performance.now() - started };
  }

  /** Members, tables, versions and replication state, as `strata params ls` and `strata status` show them. */
  async status(): Promise<ClusterStatus> {
    const coordinator = await this.#membership.coordinator();
    const views = this.#views;
    return describeCluster({ mirror: this.#mirror, members: views.members(), tableNames: views.tableNames(), views: views.views, servingSince: views.servingSince, node: this.node, prefix: this.#config.address.prefix, coordinator });
  }

  /** Requests in flight from this member's router to each member. */
  inFlight(): Record<string, number> {
    return this.#router.inFlight();
  }

  /** Leaves the cluster: resigns, revokes the lease (the member and its ready keys go at once), stops watching. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#tick) clearInterval(this.#tick);
    await this.#membership.leave();
    await this.#mirror.close().catch(() => undefined);
    await this.#writer.close();
    this.#client.close();
  }

  // ---- state changes -------------------------------------------------------------

  #changed(): void {
    if (this.#closed) return;
    this.#views.rebuild();
    const m = this.#mirror;
    for (const name of this.#views.tableNames()) {
      const sw = m.json<SwitchRecord>(KEYS.switch(name));
      if (sw && shardsOf(sw.assignment, this.node).length > 0 && !this.#preparing.has(sw.id) && !this.#versions.has(`${name}@${sw.version}`)) {
        this.#preparing.add(sw.id);
        void this.#prepare(sw).finally(() => this.#preparing.delete(sw.id));
      }
    }
    // Versions held but neither serving nor being prepared are dropped once unused.
    for (const key of this.#versions.keys()) {
      const [name, version] = splitKey(key);
      const serving = m.json<ServingRecord>(KEYS.serving(name));
      const sw = m.json<SwitchRecord>(KEYS.switch(name));
      if (serving?.version === version || sw?.version === version) continue;
      this.#versions.retire(key);
    }
    if (this.#membership.leader) this.#coordinator.reconcile();
    for (const listener of this.#onChange) listener();
  }

  /** Loads this member's shards of a switch's version and records `ready` (or `failed`). */
  async #prepare(sw: SwitchRecord): Promise<void> {
    const started = performance.now();
    const key = `${sw.name}@${sw.version}`;
    const shards = shardsOf(sw.assignment, this.node);
    try {
      this.#versions.set(key, await this.#materialiser.materialise(sw, shards));
      if (this.#mirror.json<SwitchRecord>(KEYS.switch(sw.name))?.id !== sw.id) {
        this.#versions.retire(key); // aborted while loading
        return;
      }
      const ready: ReadyRecord = { shards, ms: Math.round(performance.now() - started) };
      await this.#membership.lease!.put(KEYS.ready(sw.name, sw.version, this.node)).value(JSON.stringify(ready));
    } catch (err) {
      this.#logger.error({ err, table: sw.name, version: sw.version }, 'could not load shards of a new version; the switch will be aborted');
      if (this.#versions.has(key)) this.#versions.retire(key);
      await this.#membership.lease
        ?.put(KEYS.failed(sw.name, sw.version, this.node))
        .value(JSON.stringify({ message: (err as Error).message }))
        .catch(() => undefined);
    }
  }

  #remoteMget(node: string, view: TableView, keys: Buffer): Promise<Buffer> {
    const member = this.#views.members().get(node);
    if (!member) return Promise.reject(new ShardRequestError('unreachable', `${node} is not a member any more`));
    return shardMget(member.api, view.name, view.version, keys, this.#config.token);
  }

  // ---- helpers ---------------------------------------------------------------------

  #until(condition: () => boolean): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.onChange(() => {
        if (!condition()) return;
        off();
        resolve();
      });
    });
  }
}
