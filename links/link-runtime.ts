import { MountRoutes, Namespace, type NamespaceConfig } from '../namespace/index.js';
import { openStore, StoreError, type ObjectStore } from '../store/index.js';
import type { Link } from './link-schema.js';
import type { Logger } from '../telemetry/index.js';

/** A link with its open store and namespace. */
export interface LiveLink {
  readonly link: Link;
  readonly storeId: string;
  readonly store: ObjectStore;
  readonly namespace: Namespace;
}

/**
 * Identity of a store in block keys: the URL, plus the endpoint when one is given, since
 * `s3://models` on two endpoints are two different buckets.
 */
export function storeIdOf(url: string, endpoint?: string): string {
  return endpoint ? `${url}@${endpoint}` : url;
}

/** The mount path of `inner` (a path inside the link mounted at `linkPath`). */
function mountPathOf(linkPath: string, inner: string): string {
  if (linkPath === '/') return inner;
  return inner === '/' ? linkPath : `${linkPath}${inner}`;
}

/**
 * The live links of the daemon: opens a store and namespace per link, rebuilds the
 * mount's route table on every change, and finds the store of a cached block.
 */
export class LinkRuntime {
  readonly #links = new Map<string, LiveLink>();
  readonly #stores = new Map<string, ObjectStore>();
  readonly #logger: Logger;
  readonly #metadataTtlMs: number;
  readonly #onRoutes: (routes: MountRoutes) => void;
  readonly #foreground: NamespaceConfig['foreground'];
  readonly #metadataFromHead: boolean;
  readonly #staleOnErrorMs: number | undefined;
  readonly #onInvalidate: ((mountPath: string, subtree: boolean) => void) | undefined;

  /**
   * `foreground` marks the store requests of lookups as work a reader waits on
   * (FetchScheduler.foreground); `staleOnErrorMs` is the namespace's fallback to known metadata
   * through a store outage; `metadataFromHead`: see NamespaceConfig; `onInvalidate` hears every
   * path (in the mount) whose metadata a link's namespace dropped, so the kernel can drop its
   * copy too.
   */
  constructor(options: {
    logger: Logger;
    metadataTtlMs: number;
    staleOnErrorMs?: number;
    onRoutes: (routes: MountRoutes) => void;
    foreground?: NamespaceConfig['foreground'];
    metadataFromHead?: boolean;
    onInvalidate?: (mountPath: string, subtree: boolean) => void;
  }) {
    this.#logger = options.logger;
    this.#metadataTtlMs = options.metadataTtlMs;
    this.#staleOnErrorMs = options.staleOnErrorMs;
    this.#onRoutes = options.onRoutes;
    this.#foreground = options.foreground;
    this.#metadataFromHead = options.metadataFromHead ?? false;
    this.#onInvalidate = options.onInvalidate;
  }

  /** Opens the link's store and checks it (bucket exists, credentials work) before it appears. */
  async add(link: Link, options: { check: boolean } = { check: true }): Promise<LiveLink> {
    if (options.check) await this.check(link);
    const store = openStore(link.store, { endpoint: link.endpoint, region: link.region, logger: this.#logger });
    const storeId = storeIdOf(store.url, link.endpoint);
    const onInvalidate = this.#onInvalidate;
    const namespace = new Namespace(store, {
      metadataTtlMs: this.#metadataTtlMs,
      storeId,
      logger: this.#logger,
      metadataFromHead: this.#metadataFromHead,
      ...(this.#staleOnErrorMs !== undefined ? { staleOnErrorMs: this.#staleOnErrorMs } : {}),
      ...(this.#foreground ? { foreground: this.#foreground } : {}),
      ...(onInvalidate ? { onInvalidate: (inner: string, subtree: boolean) => onInvalidate(mountPathOf(link.path, inner), subtree) } : {}),
    });
    const live: LiveLink = { link, storeId, store, namespace };
    const previous = this.#links.get(link.name);
    this.#links.set(link.name, live);
    this.#stores.set(storeId, store);
    this.#publish();
    if (previous) await this.#release(previous);
    return live;
  }

  /**
   * Opens the link's store, checks the bucket and credentials, and closes it again. Its
   * retry warnings are not logged: a failed check is reported once, as one clear error.
   */
  async check(link: Link): Promise<void> {
    const store = openStore(link.store, { endpoint: link.endpoint, region: link.region, logger: this.#logger.child({}, { level: 'error' }) });
    try {
      await store.check();
    } finally {
      await store.close();
    }
  }

  async remove(name: string): Promise<void> {
    const live = this.#links.get(name);
    if (!live) return;
    this.#links.delete(name);
    this.#publish();
    await this.#release(live);
  }

  get(name: string): LiveLink | undefined {
    return this.#links.get(name);
  }

  all(): LiveLink[] {
    return [...this.#links.values()];
  }

  /**
   * The store a block's or a staged file's `storeId` names, for work that must reach it (a
   * cache miss, an upload): one map lookup, so a removed link fails the work that needed it
   * with `STORE_NOT_FOUND` (ENOENT at the file system) instead of reaching a closed store.
   * Refs keep the id rather than the store object because peers and the upload journal name
   * stores by id as well.
   */
  storeFor(storeId: string): ObjectStore {
    const store = this.#stores.get(storeId);
    if (store === undefined) throw new StoreError('STORE_NOT_FOUND', `no link serves ${storeId} now: it was removed`);
    return store;
  }

  async close(): Promise<void> {
    for (const live of this.#links.values()) await live.store.close().catch(() => undefined);
    this.#links.clear();
    this.#stores.clear();
  }

  #publish(): void {
    this.#onRoutes(this.routes());
  }

  /** The mount's route table for the links as they are now. */
  routes(): MountRoutes {
    return new MountRoutes(
      this.all().map((l) => ({
        path: l.link.path,
        name: l.link.name,
        namespace: l.namespace,
        store: l.store,
        storeId: l.storeId,
        readOnly: l.link.readOnly || l.link.export.mode === 'none',
        closeMode: l.link.export.mode === 'sync' ? ('sync' as const) : ('async' as const),
      })),
    );
  }

  async #release(live: LiveLink): Promise<void> {
    const stillUsed = this.all().some((l) => l.storeId === live.storeId && l.store === live.store);
    if (!stillUsed) {
      if (this.#stores.get(live.storeId) === live.store) this.#stores.delete(live.storeId);
      await live.store.close().catch((err: unknown) => this.#logger.warn({ err }, 'closing a store failed'));
    }
  }
}
