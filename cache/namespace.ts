import type { ObjectInfo, ObjectStore } from '../store/index.js';
import type { ObjectRef } from './object-reader.js';
import { NamespaceError } from './namespace-error.js';

/** What a path in the mount is. */
export type NamespaceEntry =
  | { readonly kind: 'file'; readonly ref: ObjectRef; readonly lastModified: Date }
  | { readonly kind: 'dir' };

export interface DirectoryEntry {
  readonly name: string;
  readonly entry: NamespaceEntry;
}

export interface NamespaceConfig {
  /** How long metadata (positive and negative) is trusted before the store is asked again. */
  readonly metadataTtlMs: number;
  /**
   * Identity of the store in cached block keys; defaults to the store's URL. Give the
   * endpoint too when one URL may name different stores (`s3://b` on two endpoints).
   */
  readonly storeId?: string;
  /**
   * Wraps the store requests of lookups and folder listings, which a reader waits on, so the
   * daemon's fetch scheduler can hold background work back meanwhile. `walkFiles` (the
   * listing prefetch jobs use) is not wrapped.
   */
  readonly foreground?: <T>(work: () => Promise<T>) => Promise<T>;
  /** Injected clock (milliseconds), so TTL behaviour is testable without waiting. */
  readonly now?: () => number;
  /**
   * Told when what is known of `path` is dropped (`subtree`: everything under it too), or
   * a revalidation found a new ETag: the FUSE mount then drops the kernel's copy as well.
   */
  readonly onInvalidate?: (path: string, subtree: boolean) => void;
}

interface Cached<T> {
  readonly value: T;
  readonly expiresAt: number;
}

/** S3 answers at most 1,000 keys a page; asking for fewer only adds round trips. */
const LIST_PAGE_SIZE = 1000;
/** See `#expiry`. */
const FOLDER_TTL_MS = 30_000;

/**
 * Maps mount paths (`/a/b.txt`) to objects of one store, inferring folders from `/`
 * in keys. Metadata is cached for `metadataTtlMs`, including negative answers, so a
 * burst of `stat` calls costs one store request per path per TTL.
 *
 * Rules, as a user sees them:
 * - a folder exists when any key starts with `path/` (a folder that holds only
 *   folders, or only a folder marker `path/`, is still a folder);
 * - when a key `a` and keys under `a/` both exist, the folder shadows the file;
 * - keys whose name cannot be a file name (empty segment, `.`, `..`) are not shown;
 * - a key ending in `/` is a folder marker, never a file.
 */
export class Namespace {
  readonly #store: ObjectStore;
  readonly #storeId: string;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #foreground: <T>(work: () => Promise<T>) => Promise<T>;
  readonly #onInvalidate: ((path: string, subtree: boolean) => void) | undefined;
  readonly #entries = new Map<string, Cached<NamespaceEntry | null>>();
  readonly #listings = new Map<string, Cached<DirectoryEntry[]>>();
  readonly #pendingLookups = new Map<string, Promise<NamespaceEntry | null>>();
  readonly #pendingListings = new Map<string, Promise<DirectoryEntry[]>>();

  constructor(store: ObjectStore, config: NamespaceConfig) {
    this.#store = store;
    this.#storeId = config.storeId ?? store.url;
    this.#ttlMs = config.metadataTtlMs;
    this.#now = config.now ?? Date.now;
    this.#foreground = config.foreground ?? ((work) => work());
    this.#onInvalidate = config.onInvalidate;
  }

  get storeId(): string {
    return this.#storeId;
  }

  /**
   * What is at `path`. Throws `NamespaceError('FS_NOT_FOUND')` when nothing is.
   * Answers from metadata younger than the TTL; otherwise asks the store, so a file
   * opened after the TTL has passed always carries its current ETag (close-to-open).
   */
  async lookup(path: string): Promise<NamespaceEntry> {
    const normal = normalisePath(path);
    const entry = await this.#lookupNormal(normal);
    if (!entry) throw new NamespaceError('FS_NOT_FOUND', `no such file or folder: ${normal}`);
    return entry;
  }

  /** The entries of the folder at `path`, sorted by name. */
  async list(path: string): Promise<DirectoryEntry[]> {
    const normal = normalisePath(path);
    const entry = await this.lookup(normal);
    if (entry.kind !== 'dir') throw new NamespaceError('FS_NOT_A_DIRECTORY', `not a folder: ${normal}`);
    const cached = this.#fresh(this.#listings.get(normal));
    if (cached) return cached.value;
    return coalesce(this.#pendingListings, normal, () => this.#foreground(() => this.#listFromStore(normal)));
  }

  /** Forgets what is known about `path` and its parent's listing (after an ESTALE, an event, a write). */
  invalidate(path: string): void {
    const normal = normalisePath(path);
    this.#entries.delete(normal);
    this.#listings.delete(normal);
    this.#listings.delete(parentOf(normal));
    this.#onInvalidate?.(normal, false);
  }

  /**
   * Every file under the folder `path`, recursively, from a listing without delimiter
   * (1,000 keys a request, however many folders). Same naming rules as `list`.
   */
  async *walkFiles(path: string): AsyncGenerator<{ path: string; ref: ObjectRef }> {
    const normal = normalisePath(path);
    const prefix = normal === '/' ? '' : `${normal.slice(1)}/`;
    let token: string | undefined;
    do {
      const page = await this.#store.list(prefix, { maxKeys: LIST_PAGE_SIZE, ...(token ? { token } : {}) });
      for (const info of page.objects) {
        if (info.key.endsWith('/') || !isRepresentable(info.key)) continue;
        const entry = this.#fileEntry(info);
        yield { path: `/${info.key}`, ref: (entry as Extract<NamespaceEntry, { kind: 'file' }>).ref };
      }
      token = page.nextToken;
    } while (token);
  }

  /** The file versions this namespace has seen (from lookups and listings), by path. */
  knownFiles(): Array<{ path: string; ref: ObjectRef }> {
    const files: Array<{ path: string; ref: ObjectRef }> = [];
    for (const [path, cached] of this.#entries) if (cached.value?.kind === 'file') files.push({ path, ref: cached.value.ref });
    return files;
  }

  /** Forgets everything (a sync, a link change). */
  invalidateAll(): void {
    this.#entries.clear();
    this.#listings.clear();
    this.#onInvalidate?.('/', true);
  }

  async #lookupNormal(path: string): Promise<NamespaceEntry | null> {
    if (path === '/') return DIRECTORY;
    const known = this.#entries.get(path);
    const cached = this.#fresh(known);
    if (cached) return cached.value;
    // A fresh listing of the parent is complete, so a name absent from it is absent.
    const parentListing = this.#fresh(this.#listings.get(parentOf(path)));
    if (parentListing) {
      const name = path.slice(path.lastIndexOf('/') + 1);
      return parentListing.value.find((e) => e.name === name)?.entry ?? null;
    }
    return coalesce(this.#pendingLookups, path, () => this.#foreground(() => this.#lookupInStore(path, known?.value?.kind === 'file')));
  }

  async #lookupInStore(path: string, wasFile: boolean): Promise<NamespaceEntry | null> {
    const key = path.slice(1);
    if (!isRepresentable(key)) return this.#remember(path, null);
    if (wasFile) {
      // Revalidating a file (an open after the TTL): HEAD alone, the cheapest request a
      // store answers. A folder that appeared under the same name since shows at the
      // next listing of the parent.
      const info = await this.#store.head(key);
      if (info) return this.#remember(path, this.#fileEntry(info));
    }
    // A HEAD and a one-key LIST in parallel: the LIST tells whether `key/` is a folder,
    // the HEAD whether `key` is a file. A single LIST on `key` cannot tell both, because
    // keys such as `key-a` or `key.b` sort between `key` and `key/`. A file is answered as
    // soon as the HEAD finds it (a LIST costs a store more, and may be slower); should the
    // LIST then find a folder of the same name, the folder wins from then on.
    const listed = this.#store.list(`${key}/`, { delimiter: '/', maxKeys: 1 });
    const isFolder = listed.then((page) => page.objects.length > 0 || page.prefixes.length > 0);
    const info = await this.#store.head(key).catch(async (err: unknown) => {
      await isFolder.catch(() => undefined);
      throw err;
    });
    if (info && !info.key.endsWith('/')) {
      isFolder.then((folder) => folder && this.#remember(path, DIRECTORY), () => undefined);
      return this.#remember(path, this.#fileEntry(info));
    }
    return this.#remember(path, (await isFolder) ? DIRECTORY : null);
  }

  async #listFromStore(path: string): Promise<DirectoryEntry[]> {
    const prefix = path === '/' ? '' : `${path.slice(1)}/`;
    const byName = new Map<string, NamespaceEntry>();
    let token: string | undefined;
    do {
      const page = await this.#store.list(prefix, { delimiter: '/', maxKeys: LIST_PAGE_SIZE, ...(token ? { token } : {}) });
      for (const info of page.objects) {
        const name = info.key.slice(prefix.length);
        // The folder's own marker (`prefix` itself) and other markers are not files.
        if (!isFileName(name) || info.key.endsWith('/')) continue;
        if (!byName.has(name)) byName.set(name, this.#fileEntry(info));
      }
      for (const sub of page.prefixes) {
        const name = sub.slice(prefix.length, -1);
        if (isFileName(name)) byName.set(name, DIRECTORY); // a folder shadows a file of the same name
      }
      token = page.nextToken;
    } while (token);

    const entries = [...byName].map(([name, entry]) => ({ name, entry })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const expiresAt = this.#now() + this.#ttlMs;
    for (const { name, entry } of entries) this.#entries.set(path === '/' ? `/${name}` : `${path}/${name}`, { value: entry, expiresAt: this.#expiry(entry) });
    this.#listings.set(path, { value: entries, expiresAt });
    return entries;
  }

  #fileEntry(info: ObjectInfo): NamespaceEntry {
    return {
      kind: 'file',
      ref: { storeId: this.#storeId, key: info.key, etag: info.etag, size: info.size },
      lastModified: info.lastModified,
    };
  }

  #remember(path: string, value: NamespaceEntry | null): NamespaceEntry | null {
    const before = this.#entries.get(path)?.value;
    this.#entries.set(path, { value, expiresAt: this.#expiry(value) });
    if (before?.kind === 'file' && value?.kind === 'file' && before.ref.etag !== value.ref.etag) this.#onInvalidate?.(path, false);
    return value;
  }

  /**
   * When an entry must be checked again. That a folder exists is trusted for at least
   * FOLDER_TTL_MS: re-checking costs a LIST (the dearer request, and several ms on RGW),
   * and a folder whose keys all vanished merely lists empty meanwhile. Its contents
   * (the listing) still follow the metadata TTL.
   */
  #expiry(value: NamespaceEntry | null): number {
    return this.#now() + (value?.kind === 'dir' ? Math.max(this.#ttlMs, FOLDER_TTL_MS) : this.#ttlMs);
  }

  #fresh<T>(cached: Cached<T> | undefined): Cached<T> | undefined {
    return cached && cached.expiresAt > this.#now() ? cached : undefined;
  }
}

const DIRECTORY: NamespaceEntry = Object.freeze({ kind: 'dir' });

/** `/a//b/` → `/a/b`; the root is `/`. Paths from FUSE are already absolute and clean. */
export function normalisePath(path: string): string {
  const parts = path.split('/').filter((p) => p.length > 0);
  return `/${parts.join('/')}`;
}

function parentOf(path: string): string {
  const cut = path.lastIndexOf('/');
  return cut <= 0 ? '/' : path.slice(0, cut);
}

function isFileName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

function isRepresentable(key: string): boolean {
  return key.split('/').every(isFileName);
}

/** Runs `load` once per key at a time; concurrent callers share the result. */
function coalesce<T>(pending: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  const running = pending.get(key);
  if (running) return running;
  const started = load().finally(() => pending.delete(key));
  pending.set(key, started);
  return started;
}
