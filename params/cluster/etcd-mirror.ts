import { EventEmitter } from 'node:events';
import type { Namespace, Watcher } from 'etcd3';
import type { Logger } from '../../telemetry/index.js';

/**
 * A copy in memory of every key under a namespace, kept current by one watch. Members
 * read the cluster's state from here (synchronously, on the request path) instead of
 * asking etcd. Emits `change` after each batch of events; `revision` is the etcd revision
 * the copy reflects.
 */
export class EtcdMirror extends EventEmitter {
  readonly #ns: Namespace;
  readonly #logger: Logger;
  readonly #values = new Map<string, { value: string; modRevision: string; lease: string }>();
  #watcher: Watcher | undefined;
  #revision = 0n;

  constructor(ns: Namespace, logger: Logger) {
    super();
    this.#ns = ns;
    this.#logger = logger;
  }

  /** Reads every key, then watches from the next revision, so no event falls between. */
  async start(): Promise<void> {
    const all = await this.#ns.getAll().exec();
    for (const kv of all.kvs) this.#values.set(kv.key.toString(), { value: kv.value.toString(), modRevision: kv.mod_revision, lease: kv.lease });
    this.#revision = BigInt(all.header.revision);
    const watcher = await this.#ns.watch().prefix('').startRevision(String(this.#revision + 1n)).create();
    this.#watcher = watcher;
    watcher.on('put', (kv) => {
      this.#values.set(kv.key.toString(), { value: kv.value.toString(), modRevision: kv.mod_revision, lease: kv.lease });
      this.#noteRevision(kv.mod_revision);
    });
    watcher.on('delete', (kv) => {
      this.#values.delete(kv.key.toString());
      this.#noteRevision(kv.mod_revision);
    });
    watcher.on('data', () => this.emit('change'));
    watcher.on('disconnected', (err: Error) => this.#logger.warn({ err: err.message }, 'etcd watch disconnected; reconnecting'));
    watcher.on('error', (err: Error) => this.#logger.error({ err: err.message }, 'etcd watch failed'));
    this.emit('change');
  }

  get revision(): bigint {
    return this.#revision;
  }

  /** The value of `key` parsed as JSON; undefined when absent or not JSON. */
  json<T>(key: string): T | undefined {
    const entry = this.#values.get(key);
    if (!entry) return undefined;
    try {
      return JSON.parse(entry.value) as T;
    } catch {
      return undefined;
    }
  }

  /** The revision `key` was last written at (for compare-and-swap transactions). */
  modRevision(key: string): string | undefined {
    return this.#values.get(key)?.modRevision;
  }

  /** Keys under `prefix`, in key order. */
  keys(prefix: string): string[] {
    return [...this.#values.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async close(): Promise<void> {
    await this.#watcher?.cancel();
  }

  #noteRevision(rev: string): void {
    const r = BigInt(rev);
    if (r > this.#revision) this.#revision = r;
  }
}
