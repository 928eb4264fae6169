import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Etcd3, Campaign, Election, Lease, Namespace } from 'etcd3';
import { ERROR_CATALOGUE, StrataError, type ErrorCode } from '../../errors/index.js';
import type { OpenStoreOptions } from '../../store/index.js';
import type { Logger } from '../../telemetry/index.js';
import { decodeDelta } from '../delta-body.js';
import { ParamsError } from '../params-error.js';
import { ServedTable } from '../served-table.js';
import { defaultTableMapper } from '../table-mapper.js';
import type { ParamsService } from '../params-service.js';
import { ClusterError } from './cluster-error.js';
import type { ClusterAddress } from './cluster-url.js';
import { KEYS, parseTableKey, type MemberRecord, type ReadyRecord, type ServingRecord, type SwitchRecord, type SwitchRequest, type SwitchResult } from './cluster-records.js';
import { Coordinator, COORDINATOR_TICK_MS } from './coordinator.js';
import { EtcdMirror } from './etcd-mirror.js';
import { shardsOf } from './shard-assignment.js';
import { shardMget, ShardRequestError } from './shard-client.js';
import { openRangedTable } from './shard-loader.js';
import { ShardWriter } from './shard-writer.js';
import { ShardRouter, type TableView } from './shard-router.js';
import { deltaForShards, recordsOfShards, shardsTouched, writeRecordsTable } from './shard-records.js';
import { copyServedTable } from './table-copy.js';

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
 * A member keeps a replaced version this long after it stopped serving before dropping
 * it, for requests routed by members that saw the switch a little later (a watch event
 * reaches every member within milliseconds). A request arriving after the drop is told
 * CLUSTER_VERSION_GONE and its router starts it again on the new version.
 */
const DROP_GRACE_MS = 2000;
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
/** A member that failed a request is avoided this long unless it is the only replica left. */
const SUSPECT_MS = 5000;
/** Copying a delta or a shard's rows from another member: large ones take a while, a dead member must not hang a prepare. */
const FETCH_TIMEOUT_MS = 5 * 60 * 1000;
/** Held table names in the params service: `cluster.<table>.v<version>`. */
const LOCAL_PREFIX = 'cluster.';

/** A version this member holds shards of, as a table of its params service. */
interface Held {
  readonly localName: string;
  readonly shards: readonly number[];
}

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
  #lease: Lease | undefined;
  #election: Election | undefined;
  #campaign: Campaign | undefined;
  #leader = false;
  #tick: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #views = new Map<string, TableView>();
  /** When this member began routing each table's serving version (epoch ms). */
  readonly #servingSince = new Map<string, number>();
  /** `name@version` -> what this member holds of it. */
  readonly #held = new Map<string, Held>();
  /** `name@version` -> requests using it now, here. */
  readonly #uses = new Map<string, number>();
  readonly #retiring = new Set<string>();
  readonly #preparing = new Set<string>();
  readonly #suspects = new Map<string, number>();
  readonly #writer = new ShardWriter();
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
    this.#router = new ShardRouter({
      self: config.node,
      view: (name) => this.#views.get(name),
      pin: (view) => this.#pin(`${view.name}@${view.version}`),
      ask: (node, view, keys) => (node === this.node ? this.#localMget(view.name, view.version, keys) : this.#remoteMget(node, view, keys)),
      suspect: (node) => this.#suspects.set(node, Date.now() + SUSPECT_MS),
      isSuspect: (node) => (this.#suspects.get(node) ?? 0) > Date.now(),
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
    await mkdir(this.#config.stagingDir, { recursive: true });
    for (const table of this.#config.params.list()) if (table.name.startsWith(LOCAL_PREFIX)) await this.#config.params.unload(table.name);
    this.#mirror.on('change', () => this.#changed());
    await this.#mirror.start();
    // Ready keys of a previous run of this member (its lease not expired yet) claim copies it no longer has.
    for (const key of this.#mirror.keys(KEYS.tables)) {
      const parsed = parseTableKey(key);
      if (parsed && parsed.kind === 'ready' && parsed.node === this.node) await this.#ns.delete().key(key);
    }
    await this.#register();
    this.#election = this.#ns.election('coordinator', this.#config.leaseSeconds ?? DEFAULT_LEASE_SECONDS);
    this.#campaignLoop();
    this.#tick = setInterval(() => {
      if (this.#leader) this.#coordinator.reconcile();
    }, COORDINATOR_TICK_MS);
    this.#tick.unref();
  }

  /** Grants the lease and writes the member record; again after a lost lease. */
  async #register(): Promise<void> {
    const lease = this.#ns.lease(this.#config.leaseSeconds ?? DEFAULT_LEASE_SECONDS, { autoKeepAlive: true });
    this.#lease = lease;
    lease.on('lost', (err) => {
      if (this.#closed || this.#lease !== lease) return;
      this.#logger.error({ err: err.message }, 'cluster lease lost (etcd unreachable too long); joining again');
      void this.#register().catch((e: unknown) => this.#logger.error({ err: (e as Error).message }, 'rejoining the cluster failed'));
    });
    const record: MemberRecord = { node: this.node, api: this.#config.api, joinedAt: Date.now() };
    await lease.put(KEYS.member(this.node)).value(JSON.stringify(record));
    // Versions held under the old lease are announced again.
    for (const [key, held] of this.#held) {
      const [name, version] = splitKey(key);
      await lease.put(KEYS.ready(name, version, this.node)).value(JSON.stringify({ shards: held.shards, ms: 0 } satisfies ReadyRecord));
    }
  }

  #campaignLoop(): void {
    if (this.#closed || !this.#election) return;
    const campaign = this.#election.campaign(this.node);
    this.#campaign = campaign;
    campaign.on('elected', () => {
      this.#leader = true;
      this.#logger.info('elected cluster coordinator');
      this.#coordinator.reconcile();
    });
    campaign.on('error', (err: Error) => {
      this.#leader = false;
      if (this.#closed) return;
      this.#logger.warn({ err: err.message }, 'coordinator campaign failed; campaigning again');
      setTimeout(() => this.#campaignLoop(), 1000).unref();
    });
  }

  get isCoordinator(): boolean {
    return this.#leader;
  }

  /** Whether `name` is a table the cluster serves (and this member routes). */
  serves(name: string): boolean {
    return this.#views.has(name);
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
    const unpin = this.#pin(`${name}@${version}`);
    try {
      return await this.#localMget(name, version, keys);
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
    const view = this.#views.get(name);
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
    const held = this.#held.get(`${name}@${version}`);
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
    await this.#until(() => (this.#views.get(name)?.version ?? 0) >= outcome.version!);
    return { name, version: outcome.version!, ms: performance.now() - started };
  }

  /** Members, tables, versions and replication state, as `strata params ls` and `strata status` show them. */
  async status(): Promise<ClusterStatus> {
    const m = this.#mirror;
    const members = this.#members();
    const coordinator = await this.#election?.leader().catch(() => undefined);
    const tables: Array<ClusterStatus['tables'][number]> = [];
    const shardCounts = new Map<string, Record<string, number>>();
    for (const name of this.#tableNames()) {
      const serving = m.json<ServingRecord>(KEYS.serving(name));
      const sw = m.json<SwitchRecord>(KEYS.switch(name));
      if (!serving) continue;
      const view = this.#views.get(name);
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
        servingSince: view?.version === serving.version ? this.#servingSince.get(name) : undefined,
        ...(sw ? { switch: { version: sw.version, kind: sw.kind, ready, assigned: new Set(sw.assignment.flat()).size, ageMs: Date.now() - sw.startedAt } } : {}),
      });
    }
    return {
      node: this.node,
      prefix: this.#config.address.prefix,
      coordinator,
      members: [...members.values()].sort((a, b) => a.node.localeCompare(b.node)).map((r) => ({ node: r.node, api: r.api, shards: shardCounts.get(r.node) ?? {}, self: r.node === this.node })),
      tables,
    };
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
    await this.#campaign?.resign().catch(() => undefined);
    await this.#lease?.revoke().catch(() => undefined);
    await this.#mirror.close().catch(() => undefined);
    await this.#writer.close();
    this.#client.close();
  }

  // ---- state changes -------------------------------------------------------------

  #changed(): void {
    if (this.#closed) return;
    this.#rebuildViews();
    const m = this.#mirror;
    for (const name of this.#tableNames()) {
      const sw = m.json<SwitchRecord>(KEYS.switch(name));
      if (sw && shardsOf(sw.assignment, this.node).length > 0 && !this.#preparing.has(sw.id) && !this.#held.has(`${name}@${sw.version}`)) {
        this.#preparing.add(sw.id);
        void this.#prepare(sw).finally(() => this.#preparing.delete(sw.id));
      }
    }
    // Versions held but neither serving nor being prepared are dropped once unused.
    for (const key of this.#held.keys()) {
      const [name, version] = splitKey(key);
      const serving = m.json<ServingRecord>(KEYS.serving(name));
      const sw = m.json<SwitchRecord>(KEYS.switch(name));
      if (serving?.version === version || sw?.version === version) continue;
      this.#retire(key);
    }
    if (this.#leader) this.#coordinator.reconcile();
    for (const listener of this.#onChange) listener();
  }

  #rebuildViews(): void {
    const m = this.#mirror;
    const members = this.#members();
    const now = Date.now();
    for (const [node, until] of this.#suspects) if (until < now || !members.has(node)) this.#suspects.delete(node);
    const seen = new Set<string>();
    for (const name of this.#tableNames()) {
      const serving = m.json<ServingRecord>(KEYS.serving(name));
      if (!serving) continue;
      seen.add(name);
      const ready = new Set(m.keys(KEYS.versionPrefix(name, 'ready', serving.version)).map((k) => k.split('/').pop()!));
      const replicas = serving.assignment.map((holders) => holders.filter((n) => members.has(n) && ready.has(n)));
      const old = this.#views.get(name);
      if (old && old.version === serving.version && sameReplicas(old.replicas, replicas)) continue;
      this.#views.set(name, { name, version: serving.version, dim: serving.dim, shards: serving.shards, seed: serving.seed, replicas });
      if (old?.version !== serving.version) this.#servingSince.set(name, Date.now());
      if (old?.version !== serving.version) this.#logger.info({ table: name, version: serving.version }, 'serving a new cluster version');
    }
    for (const name of this.#views.keys()) {
      if (seen.has(name)) continue;
      this.#views.delete(name);
      this.#servingSince.delete(name);
    }
  }

  /** Loads this member's shards of a switch's version and records `ready` (or `failed`). */
  async #prepare(sw: SwitchRecord): Promise<void> {
    const started = performance.now();
    const key = `${sw.name}@${sw.version}`;
    const shards = shardsOf(sw.assignment, this.node);
    try {
      this.#held.set(key, await this.#materialise(sw, shards));
      if (this.#mirror.json<SwitchRecord>(KEYS.switch(sw.name))?.id !== sw.id) {
        this.#retire(key); // aborted while loading
        return;
      }
      const ready: ReadyRecord = { shards, ms: Math.round(performance.now() - started) };
      await this.#lease!.put(KEYS.ready(sw.name, sw.version, this.node)).value(JSON.stringify(ready));
    } catch (err) {
      this.#logger.error({ err, table: sw.name, version: sw.version }, 'could not load shards of a new version; the switch will be aborted');
      if (this.#held.has(key)) this.#retire(key);
      await this.#lease
        ?.put(KEYS.failed(sw.name, sw.version, this.node))
        .value(JSON.stringify({ message: (err as Error).message }))
        .catch(() => undefined);
    }
  }

  /**
   * This member's table for `shards` of the switch's version:
   * - publish: written from byte ranges of the source;
   * - delta: the current table if the delta touches none of its shards, else a copy of it
   *   (its in-place deltas included) with the delta's part for its shards applied (the
   *   single-node load and delta);
   * - repair: the current table if it has every shard, else one written from its own rows
   *   and, for shards new to it, rows from a live replica (or from the source, when the
   *   table has no deltas and no replica is left).
   */
  async #materialise(sw: SwitchRecord, shards: readonly number[]): Promise<Held> {
    const localName = `${LOCAL_PREFIX}${sw.name}.v${sw.version}`;
    const params = this.#config.params;
    if (sw.kind === 'publish') {
      await this.#stageAndLoad(localName, async (staged) => {
        const report = await this.#writer.write({ source: sw.source, etag: sw.etag, store: this.#config.store ?? {}, shards, dest: staged });
        this.#logger.info({ table: sw.name, version: sw.version, shards: shards.length, keys: report.keys, bytesRead: report.bytesRead }, 'shards of a new version loaded from the source');
      });
      return { localName, shards };
    }
    const base = sw.base !== undefined ? this.#held.get(`${sw.name}@${sw.base}`) : undefined;
    if (sw.kind === 'delta') {
      if (!base || shards.some((s) => !base.shards.includes(s))) throw new ClusterError('CLUSTER_VERSION_GONE', `this member does not hold its shards of version ${sw.base} of ${sw.name} to apply the delta to`);
      const mine = new Set(shards.filter((s) => sw.delta!.touched.includes(s)));
      if (mine.size === 0) return { localName: base.localName, shards };
      const body = await this.#fetchDelta(sw);
      const part = deltaForShards(decodeDelta(body), mine, sw.shards, sw.seed);
      await copyServedTable(params, base.localName, localName);
      try {
        await params.applyDelta(localName, part);
      } catch (err) {
        await params.unload(localName).catch(() => undefined);
        throw err;
      }
      return { localName, shards };
    }
    if (base && shards.every((s) => base.shards.includes(s))) return { localName: base.localName, shards };
    const own = base ? shards.filter((s) => base.shards.includes(s)) : [];
    const fetched = shards.filter((s) => !own.includes(s));
    const chunks: Buffer[] = [];
    if (base && own.length > 0) chunks.push(recordsOfShards(params.table(base.localName), new Set(own)));
    const fromSource: number[] = [];
    for (const s of fetched) {
      const holder = this.#views.get(sw.name)?.replicas[s]?.find((n) => n !== this.node);
      if (holder) chunks.push(await this.#fetchRecords(holder, sw.name, sw.base!, [s]));
      else if ((sw.deltas ?? 0) === 0) fromSource.push(s);
      else throw new ClusterError('CLUSTER_UNAVAILABLE', `no live replica of shard ${s} of ${sw.name} to copy, and the source lacks its deltas`);
    }
    await this.#stageAndLoad(localName, async (staged) => {
      if (fromSource.length > 0) {
        const partial = `${staged}.source`;
        try {
          await this.#writer.write({ source: sw.source, etag: sw.etag, store: this.#config.store ?? {}, shards: fromSource, dest: partial });
          const written = ServedTable.open(partial, defaultTableMapper());
          chunks.push(recordsOfShards(written, new Set(fromSource)));
          written.close();
        } finally {
          await rm(partial, { force: true });
        }
      }
      writeRecordsTable(staged, sw, chunks);
    });
    this.#logger.info({ table: sw.name, version: sw.version, kept: own.length, copied: fetched.length - fromSource.length, fromSource: fromSource.length }, 'shards placed on this member');
    return { localName, shards };
  }

  /** Writes a table file in the staging folder with `write`, then has the params service load it as `localName`. */
  async #stageAndLoad(localName: string, write: (staged: string) => Promise<void>): Promise<void> {
    const staged = join(this.#config.stagingDir, `${localName}-${randomBytes(4).toString('hex')}.params`);
    try {
      await write(staged);
      await this.#config.params.load(localName, staged);
    } finally {
      await rm(staged, { force: true });
    }
  }

  async #fetchDelta(sw: SwitchRecord): Promise<Buffer> {
    if (sw.delta!.from === this.node) return this.deltaBody(sw.id);
    return this.#fetchFrom(sw.delta!.from, `/v1/params/cluster/deltas/${encodeURIComponent(sw.id)}`);
  }

  #fetchRecords(node: string, name: string, version: number, shards: readonly number[]): Promise<Buffer> {
    return this.#fetchFrom(node, `/v1/params/cluster/${encodeURIComponent(name)}/versions/${version}/records?shards=${shards.join(',')}`);
  }

  async #fetchFrom(node: string, path: string): Promise<Buffer> {
    const member = this.#members().get(node);
    if (!member) throw new ClusterError('CLUSTER_UNAVAILABLE', `${node} is not a member any more`);
    const headers: Record<string, string> = this.#config.token ? { authorization: `Bearer ${this.#config.token}` } : {};
    const res = await fetch(new URL(path, member.api), { headers, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!res.ok) throw new ClusterError('CLUSTER_UNAVAILABLE', `${node} answered ${res.status} to ${path}: ${(await res.text()).slice(0, 200)}`);
    return Buffer.from(await res.arrayBuffer());
  }

  /** Drops a held version once no request here uses it and DROP_GRACE_MS passed. */
  #retire(key: string): void {
    if (this.#retiring.has(key)) return;
    this.#retiring.add(key);
    const since = Date.now();
    const check = () => {
      if (this.#closed) return;
      const [name, version] = splitKey(key);
      // It may be serving again (an abort right after the switch record went): keep it then.
      const serving = this.#mirror.json<ServingRecord>(KEYS.serving(name));
      if (serving?.version === version) {
        this.#retiring.delete(key);
        return;
      }
      if ((this.#uses.get(key) ?? 0) > 0 || Date.now() - since < DROP_GRACE_MS) {
        setTimeout(check, 100).unref();
        return;
      }
      void this.#drop(key).finally(() => this.#retiring.delete(key));
    };
    setTimeout(check, 100).unref();
  }

  async #drop(key: string): Promise<void> {
    const held = this.#held.get(key);
    if (!held) return;
    this.#held.delete(key);
    const [name, version] = splitKey(key);
    await this.#ns.delete().key(KEYS.ready(name, version, this.node)).catch(() => undefined);
    const shared = [...this.#held.values()].some((h) => h.localName === held.localName);
    if (!shared) {
      await this.#config.params.unload(held.localName).catch((err: unknown) => this.#logger.warn({ err, table: held.localName }, 'could not drop an old shard table'));
    }
    this.#logger.info({ table: name, version }, 'dropped an unused cluster version');
  }

  // ---- lookups ---------------------------------------------------------------------

  #pin(key: string): () => void {
    this.#uses.set(key, (this.#uses.get(key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = this.#uses.get(key)! - 1;
      if (left === 0) this.#uses.delete(key);
      else this.#uses.set(key, left);
    };
  }

  async #localMget(name: string, version: number, keys: Buffer): Promise<Buffer> {
    const held = this.#held.get(`${name}@${version}`);
    if (!held) {
      throw new ClusterError('CLUSTER_VERSION_GONE', `this member holds no shards of version ${version} of ${name}`);
    }
    try {
      return await this.#config.params.mgetAsync(held.localName, keys);
    } catch (err) {
      if (err instanceof ParamsError && err.code === 'PARAMS_TABLE_NOT_FOUND') throw new ClusterError('CLUSTER_VERSION_GONE', `version ${version} of ${name} was dropped here`);
      throw err;
    }
  }

  #remoteMget(node: string, view: TableView, keys: Buffer): Promise<Buffer> {
    const member = this.#members().get(node);
    if (!member) return Promise.reject(new ShardRequestError('unreachable', `${node} is not a member any more`));
    return shardMget(member.api, view.name, view.version, keys, this.#config.token);
  }

  // ---- helpers ---------------------------------------------------------------------

  #members(): Map<string, MemberRecord> {
    const out = new Map<string, MemberRecord>();
    for (const key of this.#mirror.keys(KEYS.members)) {
      const record = this.#mirror.json<MemberRecord>(key);
      if (record) out.set(record.node, record);
    }
    return out;
  }

  #tableNames(): Set<string> {
    const names = new Set<string>();
    for (const key of this.#mirror.keys(KEYS.tables)) {
      const parsed = parseTableKey(key);
      if (parsed) names.add(parsed.name);
    }
    return names;
  }

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

function splitKey(key: string): [string, number] {
  const at = key.lastIndexOf('@');
  return [key.slice(0, at), Number(key.slice(at + 1))];
}

function sameReplicas(a: readonly (readonly string[])[], b: readonly (readonly string[])[]): boolean {
  return a.length === b.length && a.every((x, i) => x.length === b[i]!.length && x.every((n, j) => n === b[i]![j]));
}
