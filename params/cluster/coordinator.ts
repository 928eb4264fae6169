import type { Namespace } from 'etcd3';
import type { Logger } from '../../telemetry/index.js';
import { KEYS, type MemberRecord, type ServingRecord, type SwitchRecord, type SwitchRequest, type SwitchResult, type TableShape } from './cluster-records.js';
import type { EtcdMirror } from './etcd-mirror.js';
import { assignShards } from './shard-assignment.js';

export interface CoordinatorConfig {
  /** Reads a table's shape (dim, shards, seed, keys, ETag) at its source, without its rows. */
  readonly inspect: (source: string) => Promise<Omit<TableShape, 'name' | 'source' | 'replicas'>>;
  /** A prepare not complete after this long is aborted. */
  readonly prepareTimeoutMs: number;
  readonly logger: Logger;
}

/** A repair that aborted (say, a member joining and leaving) is retried after this pause, not in a tight loop. */
const REPAIR_RETRY_MS = 1000;

/** A switch's result waits this long for the member that asked (it reads and deletes it at once). */
const RESULT_KEEP_MS = 10 * 60 * 1000;

/** How often the coordinator looks at deadlines even when nothing in etcd changed. */
export const COORDINATOR_TICK_MS = 500;

/**
 * The coordinator's work, done by whichever member holds the election: turns publish
 * requests into switches, commits a switch once every assigned member is ready (one etcd
 * transaction that makes the new version the serving one), aborts one that cannot
 * complete (an assigned member left or failed, or the deadline passed), and starts a
 * repair when a serving shard has fewer live replicas than asked for.
 *
 * It keeps no state of its own beyond what etcd holds: a member elected after another
 * died reads the running switch from etcd and finishes or aborts it by the same rules.
 * Every write is a transaction conditioned on what it read, so a coordinator that lost
 * the election while thinking does no harm.
 */
export class Coordinator {
  readonly #ns: Namespace;
  readonly #mirror: EtcdMirror;
  readonly #config: CoordinatorConfig;
  #running = false;
  #again = false;
  /** Requests whose source is being inspected: not started twice. */
  readonly #starting = new Set<string>();
  /** When a repair of each table last aborted: the next waits REPAIR_RETRY_MS. */
  readonly #repairAborted = new Map<string, number>();
  /** Versions with a shard lost for good (logged once). */
  readonly #lost = new Set<string>();

  constructor(ns: Namespace, mirror: EtcdMirror, config: CoordinatorConfig) {
    this.#ns = ns;
    this.#mirror = mirror;
    this.#config = config;
  }

  /** Looks at everything once more; calls that come while one runs fold into one more pass. */
  reconcile(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    void (async () => {
      do {
        this.#again = false;
        try {
          await this.#pass();
        } catch (err) {
          this.#config.logger.warn({ err: (err as Error).message }, 'coordinator pass failed; retrying on the next change');
        }
      } while (this.#again);
      this.#running = false;
    })();
  }

  async #pass(): Promise<void> {
    const m = this.#mirror;
    const members = new Set(m.keys(KEYS.members).map((k) => m.json<MemberRecord>(k)?.node).filter((n): n is string => n !== undefined));
    const names = new Set(m.keys(KEYS.tables).map((k) => k.split('/')[1]!));
    for (const name of names) {
      const sw = m.json<SwitchRecord>(KEYS.switch(name));
      if (sw) await this.#advance(sw, members);
      else await this.#checkReplicas(name, members);
    }
    // Results whose requester died before reading them.
    for (const key of m.keys(KEYS.results)) {
      if ((m.json<SwitchResult>(key)?.at ?? 0) < Date.now() - RESULT_KEEP_MS) await this.#ns.delete().key(key);
    }
    for (const key of m.keys(KEYS.requests)) {
      const request = m.json<SwitchRequest>(key);
      if (!request || this.#starting.has(request.id)) continue;
      if (m.json<SwitchRecord>(KEYS.switch(request.name))) continue; // waits for the running switch
      this.#starting.add(request.id);
      try {
        if (request.kind === 'delta') await this.#startDelta(request, members);
        else await this.#startPublish(request, members);
      } finally {
        this.#starting.delete(request.id);
      }
    }
  }

  /** Commits, aborts or leaves a running switch. */
  async #advance(sw: SwitchRecord, members: ReadonlySet<string>): Promise<void> {
    const m = this.#mirror;
    const assigned = [...new Set(sw.assignment.flat())];
    const gone = assigned.filter((n) => !members.has(n));
    if (gone.length > 0) return this.#abort(sw, `member ${gone.join(', ')} left the cluster during the prepare`);
    if (sw.delta && !members.has(sw.delta.from)) return this.#abort(sw, `${sw.delta.from}, which holds the delta, left the cluster`);
    const failedKey = m.keys(KEYS.versionPrefix(sw.name, 'failed', sw.version))[0];
    if (failedKey) return this.#abort(sw, `${failedKey.split('/').pop()} could not load its shards: ${m.json<{ message: string }>(failedKey)?.message ?? 'unknown error'}`);
    const ready = new Set(m.keys(KEYS.versionPrefix(sw.name, 'ready', sw.version)).map((k) => k.split('/').pop()!));
    if (assigned.every((n) => ready.has(n))) return this.#commit(sw);
    if (Date.now() > sw.deadline) return this.#abort(sw, `the prepare did not complete within ${this.#config.prepareTimeoutMs} ms (ready: ${[...ready].join(', ') || 'none'})`);
  }

  async #commit(sw: SwitchRecord): Promise<void> {
    const serving: ServingRecord = { ...shapeOf(sw), version: sw.version, assignment: sw.assignment, committedAt: Date.now() };
    const result: SwitchResult = { ok: true, at: Date.now(), version: sw.version };
    const ok = await this.#swap(sw, [this.#ns.put(KEYS.serving(sw.name)).value(JSON.stringify(serving)), this.#ns.put(KEYS.result(sw.id)).value(JSON.stringify(result))]);
    if (ok) this.#config.logger.info({ table: sw.name, version: sw.version, kind: sw.kind, ms: Date.now() - sw.startedAt }, 'cluster switch committed');
  }

  async #abort(sw: SwitchRecord, why: string): Promise<void> {
    const result: SwitchResult = { ok: false, at: Date.now(), code: 'CLUSTER_SWITCH_ABORTED', message: `${sw.kind} of ${sw.name} version ${sw.version} aborted: ${why}; version ${sw.base ?? 'none'} keeps serving` };
    const ok = await this.#swap(sw, [this.#ns.put(KEYS.result(sw.id)).value(JSON.stringify(result)), this.#ns.delete().prefix(KEYS.versionPrefix(sw.name, 'failed', sw.version))]);
    if (ok && sw.kind === 'repair') this.#repairAborted.set(sw.name, Date.now());
    if (ok) this.#config.logger.warn({ table: sw.name, version: sw.version, kind: sw.kind, why }, 'cluster switch aborted');
  }

  /** Ends switch `sw` with `ops` in one transaction, provided nobody changed it meanwhile. */
  async #swap(sw: SwitchRecord, ops: Parameters<ReturnType<Namespace['if']>['then']>): Promise<boolean> {
    const rev = this.#mirror.modRevision(KEYS.switch(sw.name));
    if (rev === undefined) return false;
    const res = await this.#ns
      .if(KEYS.switch(sw.name), 'Mod', '==', rev)
      .then(this.#ns.delete().key(KEYS.switch(sw.name)), ...ops)
      .commit();
    return res.succeeded;
  }

  /** Starts a repair when a shard of the serving version has fewer live replicas than asked for (or the members allow). */
  async #checkReplicas(name: string, members: ReadonlySet<string>): Promise<void> {
    const m = this.#mirror;
    const serving = m.json<ServingRecord>(KEYS.serving(name));
    if (!serving || members.size === 0) return;
    const ready = new Set(m.keys(KEYS.versionPrefix(name, 'ready', serving.version)).map((k) => k.split('/').pop()!));
    const live = serving.assignment.map((holders) => holders.filter((n) => members.has(n) && ready.has(n)));
    const want = Math.min(serving.replicas, members.size);
    if (live.every((holders) => holders.length >= want)) return;
    if (Date.now() - (this.#repairAborted.get(name) ?? 0) < REPAIR_RETRY_MS) return;
    if (live.some((holders) => holders.length === 0)) {
      if ((serving.deltas ?? 0) > 0) {
        // The source lacks the deltas: reloading it would serve old rows as current ones.
        if (!this.#lost.has(`${name}@${serving.version}`)) this.#config.logger.error({ table: name, version: serving.version }, 'every replica of a shard is gone and the table has deltas the source lacks; publish it again');
        this.#lost.add(`${name}@${serving.version}`);
        return;
      }
      this.#config.logger.error({ table: name, version: serving.version }, 'every replica of a shard is gone; reloading it from the source');
    }
    const version = serving.version;
    const next = this.#nextVersion(name, version);
    const plan = assignShards(serving.shards, [...members], want, live);
    const sw: SwitchRecord = { ...shapeOf(serving), id: `repair-${name}-${next}`, kind: 'repair', version: next, base: version, assignment: plan, startedAt: Date.now(), deadline: Date.now() + this.#config.prepareTimeoutMs };
    await this.#begin(sw);
  }

  /** A delta goes to the live holders of the serving version; the shards it does not touch are shared, not copied. */
  async #startDelta(request: Extract<SwitchRequest, { kind: 'delta' }>, members: ReadonlySet<string>): Promise<void> {
    const serving = this.#mirror.json<ServingRecord>(KEYS.serving(request.name));
    if (!serving) {
      await this.#answer(request.id, { ok: false, at: Date.now(), code: 'PARAMS_TABLE_NOT_FOUND', message: `the cluster serves no table named "${request.name}"` });
      return;
    }
    const ready = new Set(this.#mirror.keys(KEYS.versionPrefix(request.name, 'ready', serving.version)).map((k) => k.split('/').pop()!));
    const holders = serving.assignment.map((h) => h.filter((n) => members.has(n) && ready.has(n)));
    const empty = holders.findIndex((h) => h.length === 0);
    if (empty >= 0) {
      await this.#answer(request.id, { ok: false, at: Date.now(), code: 'CLUSTER_UNAVAILABLE', message: `shard ${empty} of ${request.name} has no live replica to apply the delta to` });
      return;
    }
    const version = serving.version;
    const sw: SwitchRecord = {
      ...shapeOf(serving),
      deltas: (serving.deltas ?? 0) + 1,
      id: request.id,
      kind: 'delta',
      version: this.#nextVersion(request.name, version),
      base: version,
      assignment: holders,
      delta: request.delta,
      startedAt: Date.now(),
      deadline: Date.now() + this.#config.prepareTimeoutMs,
    };
    await this.#begin(sw, request.id);
  }

  /** Answers a request without a switch (it could not start). */
  async #answer(id: string, result: SwitchResult): Promise<void> {
    await this.#ns
      .if(KEYS.request(id), 'Create', '>', 0)
      .then(this.#ns.delete().key(KEYS.request(id)), this.#ns.put(KEYS.result(id)).value(JSON.stringify(result)))
      .commit();
  }

  async #startPublish(request: Extract<SwitchRequest, { kind: 'publish' }>, members: ReadonlySet<string>): Promise<void> {
    let shape: Omit<TableShape, 'name' | 'source' | 'replicas'>;
    let plan: string[][];
    try {
      shape = await this.#config.inspect(request.source);
      plan = assignShards(shape.shards, [...members], request.replicas);
    } catch (err) {
      await this.#answer(request.id, { ok: false, at: Date.now(), code: (err as { code?: string }).code ?? 'INTERNAL', message: (err as Error).message });
      return;
    }
    const serving = this.#mirror.json<ServingRecord>(KEYS.serving(request.name));
    const version = this.#nextVersion(request.name, serving?.version ?? 0);
    const sw: SwitchRecord = {
      ...shape,
      name: request.name,
      source: request.source,
      replicas: request.replicas,
      deltas: 0,
      id: request.id,
      kind: 'publish',
      version,
      ...(serving ? { base: serving.version } : {}),
      assignment: plan,
      startedAt: Date.now(),
      deadline: Date.now() + this.#config.prepareTimeoutMs,
    };
    await this.#begin(sw, request.id);
  }

  /** Writes a switch record (and the table's last version) if no switch runs for the table; removes the request it answers. */
  async #begin(sw: SwitchRecord, requestId?: string): Promise<void> {
    let txn = this.#ns.if(KEYS.switch(sw.name), 'Create', '==', 0);
    if (requestId) txn = txn.and(KEYS.request(requestId), 'Create', '>', 0);
    const writes = [this.#ns.put(KEYS.switch(sw.name)).value(JSON.stringify(sw)), this.#ns.put(KEYS.lastVersion(sw.name)).value(String(sw.version))];
    const res = await (requestId ? txn.then(...writes, this.#ns.delete().key(KEYS.request(requestId))) : txn.then(...writes)).commit();
    if (res.succeeded) this.#config.logger.info({ table: sw.name, version: sw.version, kind: sw.kind, assignment: sw.assignment.map((h) => h.join('+')) }, 'cluster switch started');
  }

  /** One above every version the table ever had (aborted ones included), so local copies are never confused. */
  #nextVersion(name: string, serving: number): number {
    const last = Number(this.#mirror.json<number>(KEYS.lastVersion(name)) ?? 0);
    return Math.max(last, serving) + 1;
  }
}

/** The table's shape alone, out of a serving or switch record. */
function shapeOf(record: TableShape): TableShape {
  const { name, source, etag, dim, shards, seed, keys, replicas, deltas } = record;
  return { name, source, ...(etag !== undefined ? { etag } : {}), dim, shards, seed, keys, replicas, ...(deltas !== undefined ? { deltas } : {}) };
}
