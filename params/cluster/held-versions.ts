import type { Logger } from '../../telemetry/index.js';
import { ParamsError } from '../params-error.js';
import type { ParamsService } from '../params-service.js';
import { ClusterError } from './cluster-error.js';
import type { Held } from './shard-materialiser.js';

/**
 * A member keeps a replaced version this long after it stopped serving before dropping
 * it, for requests routed by members that saw the switch a little later (a watch event
 * reaches every member within milliseconds). A request arriving after the drop is told
 * CLUSTER_VERSION_GONE and its router starts it again on the new version.
 */
const DROP_GRACE_MS = 2000;

/** What HeldVersions needs of its cluster member. */
export interface HeldVersionsHost {
  readonly node: string;
  readonly params: ParamsService;
  readonly logger: Logger;
  /** The member left the cluster: nothing is dropped any more. */
  closed(): boolean;
  /** The version of `name` the cluster serves now, if any. */
  servingVersion(name: string): number | undefined;
  /** Removes this member's ready record of `name@version`. */
  forgetReady(name: string, version: number): Promise<void>;
}

/**
 * The versions of cluster tables this member holds shards of (`name@version` keys), the
 * requests using each, and their retirement: a version no longer served is dropped from
 * the params service once no request here uses it and DROP_GRACE_MS passed.
 */
export class HeldVersions {
  readonly #host: HeldVersionsHost;
  /** `name@version` -> what this member holds of it. */
  readonly #held = new Map<string, Held>();
  /** `name@version` -> requests using it now, here. */
  readonly #uses = new Map<string, number>();
  readonly #retiring = new Set<string>();

  constructor(host: HeldVersionsHost) {
    this.#host = host;
  }

  get(key: string): Held | undefined {
    return this.#held.get(key);
  }

  has(key: string): boolean {
    return this.#held.has(key);
  }

  set(key: string, held: Held): void {
    this.#held.set(key, held);
  }

  keys(): IterableIterator<string> {
    return this.#held.keys();
  }

  entries(): IterableIterator<[string, Held]> {
    return this.#held.entries();
  }

  /** Drops a held version once no request here uses it and DROP_GRACE_MS passed. */
  retire(key: string): void {
    if (this.#retiring.has(key)) return;
    this.#retiring.add(key);
    const since = Date.now();
    const check = () => {
      if (this.#host.closed()) return;
      const [name, version] = splitKey(key);
      // It may be serving again (an abort right after the switch record went): keep it then.
      if (this.#host.servingVersion(name) === version) {
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
    await this.#host.forgetReady(name, version).catch(() => undefined);
    const shared = [...this.#held.values()].some((h) => h.localName === held.localName);
    if (!shared) {
      await this.#host.params.unload(held.localName).catch((err: unknown) => this.#host.logger.warn({ err, table: held.localName }, 'could not drop an old shard table'));
    }
    this.#host.logger.info({ table: name, version }, 'dropped an unused cluster version');
  }

  // ---- lookups ---------------------------------------------------------------------

  pin(key: string): () => void {
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

  async localMget(name: string, version: number, keys: Buffer): Promise<Buffer> {
    const held = this.#held.get(`${name}@${version}`);
    if (!held) {
      throw new ClusterError('CLUSTER_VERSION_GONE', `this member holds no shards of version ${version} of ${name}`);
    }
    try {
      return await this.#host.params.mgetAsync(held.localName, keys);
    } catch (err) {
      if (err instanceof ParamsError && err.code === 'PARAMS_TABLE_NOT_FOUND') throw new ClusterError('CLUSTER_VERSION_GONE', `version ${version} of ${name} was dropped here`);
      throw err;
    }
  }
}

/** `name@version` split into its parts. */
export function splitKey(key: string): [string, number] {
  const at = key.lastIndexOf('@');
  return [key.slice(0, at), Number(key.slice(at + 1))];
}
