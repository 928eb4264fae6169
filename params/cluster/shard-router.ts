import { keyHash, shardOf } from '../key-hash.js';
import { ParamsError } from '../params-error.js';
import { MAX_BATCH_KEYS } from '../request-checks.js';
import { mgetAnswerBytes } from '../served-table.js';
import { ClusterError } from './cluster-error.js';
import { noReplica, ShardRequestError } from './shard-client.js';

/** One serving version of a cluster table as a router sees it: immutable, swapped whole. */
export interface TableView {
  readonly name: string;
  readonly version: number;
  readonly dim: number;
  readonly shards: number;
  readonly seed: number;
  /** replicas[s]: the live members holding shard s of this version, in assignment order. */
  readonly replicas: readonly (readonly string[])[];
}

/** What the router needs from its cluster member. */
export interface RouterHost {
  readonly self: string;
  /** The current serving view of `name`; undefined when the cluster serves no such table. */
  view(name: string): TableView | undefined;
  /** Counts a request as using `view` until the returned function is called (old versions are dropped only when unused). */
  pin(view: TableView): () => void;
  /** Answers the keys from shard data on `node` (this member: in process; another: over HTTP). */
  ask(node: string, view: TableView, keys: Buffer): Promise<Buffer>;
  /** A member that failed to answer: routed around until the membership says otherwise. */
  suspect(node: string): void;
  isSuspect(node: string): boolean;
}

/** A member this many requests busier than the least busy replica is not asked just to save a sub-request. */
const GROUP_SLACK = 2;
/** A request whose version went away under it starts again on the new one, at most this often. */
const MAX_RESTARTS = 3;

/**
 * Routes an mget of a cluster table: splits the keys by shard, asks one replica of each
 * shard (this member when it holds the shard, else the replica with the fewest requests in
 * flight from this member, grouped into few sub-requests), asks another
 * replica for the keys of any that fails, and merges the answers in request order. The
 * whole request reads one version: if a member no longer holds it (a switch completed
 * meanwhile), the request starts over on the version now serving, so no answer mixes two.
 */
export class ShardRouter {
  readonly #host: RouterHost;
  readonly #inFlight = new Map<string, number>();

  constructor(host: RouterHost) {
    this.#host = host;
  }

  /** Requests in flight from this member to each member. */
  inFlight(): Record<string, number> {
    return Object.fromEntries(this.#inFlight);
  }

  async mget(name: string, keys: Buffer): Promise<{ answer: Buffer; version: number }> {
    if (keys.length % 8 !== 0) throw new ParamsError('PARAMS_BAD_KEYS', `the body is ${keys.length} bytes, not a multiple of 8 (one little-endian uint64 per key)`);
    if (keys.length / 8 > MAX_BATCH_KEYS) throw new ParamsError('PARAMS_BATCH_TOO_LARGE', `${keys.length / 8} keys in one request; at most ${MAX_BATCH_KEYS}`);
    for (let attempt = 0; ; attempt++) {
      const view = this.#host.view(name);
      if (!view) throw new ParamsError('PARAMS_TABLE_NOT_FOUND', `no parameter table named "${name}" is loaded or published`);
      const unpin = this.#host.pin(view);
      try {
        return { answer: await this.#mgetIn(view, keys), version: view.version };
      } catch (err) {
        const gone = err instanceof ClusterError && err.code === 'CLUSTER_VERSION_GONE';
        if (!gone || attempt >= MAX_RESTARTS || this.#host.view(name)?.version === view.version) throw err;
      } finally {
        unpin();
      }
    }
  }

  async #mgetIn(view: TableView, keys: Buffer): Promise<Buffer> {
    const n = keys.length / 8;
    const words = new Uint32Array(keys.buffer.slice(keys.byteOffset, keys.byteOffset + keys.length));
    const shardOfKey = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      const h = keyHash(words[2 * i]!, words[2 * i + 1]!, view.seed);
      shardOfKey[i] = view.shards === 1 ? 0 : shardOf(h, view.shards);
    }
    const out = Buffer.alloc(mgetAnswerBytes(n, view.dim));
    const tried = new Map<number, Set<string>>(); // shard -> members already asked
    let pending: number[] = Array.from({ length: n }, (_, i) => i);
    while (pending.length > 0) {
      // Choose a member per shard still pending, then one sub-request per member.
      const chosen = new Map<number, string>();
      const picked = new Set<string>();
      for (const i of pending) {
        const s = shardOfKey[i]!;
        if (chosen.has(s)) continue;
        const node = this.#choose(view, s, tried.get(s), picked);
        chosen.set(s, node);
        picked.add(node);
      }
      const byNode = new Map<string, number[]>();
      for (const i of pending) {
        const node = chosen.get(shardOfKey[i]!)!;
        let list = byNode.get(node);
        if (!list) byNode.set(node, (list = []));
        list.push(i);
      }
      const failed: number[] = [];
      await Promise.all(
        [...byNode].map(async ([node, positions]) => {
          const body = Buffer.allocUnsafe(positions.length * 8);
          positions.forEach((p, k) => keys.copy(body, k * 8, p * 8, p * 8 + 8));
          this.#inFlight.set(node, (this.#inFlight.get(node) ?? 0) + 1);
          try {
            const answer = await this.#host.ask(node, view, body);
            mergeInto(out, n, view.dim, answer, positions);
          } catch (err) {
            const gone = (err instanceof ShardRequestError && err.kind === 'version-gone') || (err instanceof ClusterError && err.code === 'CLUSTER_VERSION_GONE');
            // Gone because a newer version serves now: the request starts again on it. Gone
            // while this version still serves (a member restarted and lost its copy): another replica answers.
            if (gone && this.#host.view(view.name)?.version !== view.version) throw new ClusterError('CLUSTER_VERSION_GONE', `${node} no longer holds version ${view.version} of ${view.name}`);
            this.#host.suspect(node);
            for (const p of positions) {
              const s = shardOfKey[p]!;
              let set = tried.get(s);
              if (!set) tried.set(s, (set = new Set()));
              set.add(node);
              failed.push(p);
            }
          } finally {
            this.#inFlight.set(node, this.#inFlight.get(node)! - 1);
          }
        }),
      );
      pending = failed;
    }
    return out;
  }

  /**
   * The replica of shard `s` to ask: not tried yet, not suspect if possible. This member
   * first when it holds the shard (no network hop: bench/params-cluster measured each hop
   * as a second and third HTTP exchange of CPU). Otherwise the member with the fewest
   * requests in flight from here, preferring one this batch already asks (`picked`) unless
   * it is GROUP_SLACK busier: one sub-request per member, not one per shard.
   */
  #choose(view: TableView, s: number, tried: Set<string> | undefined, picked: ReadonlySet<string>): string {
    const candidates = view.replicas[s]!.filter((node) => !tried?.has(node));
    if (candidates.length === 0) throw noReplica(view.name, s, tried && tried.size > 0 ? `asked ${[...tried].join(', ')}` : 'no live replica');
    const healthy = candidates.filter((node) => !this.#host.isSuspect(node));
    const pool = healthy.length > 0 ? healthy : candidates;
    if (pool.includes(this.#host.self)) return this.#host.self;
    const least = Math.min(...pool.map((node) => this.#load(node)));
    const grouped = pool.find((node) => picked.has(node) && this.#load(node) <= least + GROUP_SLACK);
    return grouped ?? pool.find((node) => this.#load(node) === least)!;
  }

  #load(node: string): number {
    return this.#inFlight.get(node) ?? 0;
  }
}

/** Copies the found keys of a sub-answer (its keys at `positions` of the request) into the whole answer. */
function mergeInto(out: Buffer, n: number, dim: number, answer: Buffer, positions: readonly number[]): void {
  const m = positions.length;
  if (answer.length !== mgetAnswerBytes(m, dim)) throw new ShardRequestError('failed', `a shard answer of ${answer.length} bytes for ${m} keys of dim ${dim}`);
  const rowBytes = dim * 4;
  const outRows = ((n + 31) >>> 5) * 4;
  const inRows = ((m + 31) >>> 5) * 4;
  for (let k = 0; k < m; k++) {
    if ((answer[k >>> 3]! & (1 << (k & 7))) === 0) continue;
    const p = positions[k]!;
    out[p >>> 3] = out[p >>> 3]! | (1 << (p & 7));
    answer.copy(out, outRows + p * rowBytes, inRows + k * rowBytes, inRows + (k + 1) * rowBytes);
  }
}
