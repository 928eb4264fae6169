import { LRUCache } from 'lru-cache';
import { outcomeOf } from '../async/index.js';
import type { ObjectInfo, ObjectMeta, ObjectRef, ObjectStore } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import { coalesce, type Pending } from './coalesce.js';
import { NamespaceError } from './namespace-error.js';
import { KEY_MAX_BYTES, NAME_MAX_BYTES, abbreviate, compareNames, isFileName, isRepresentable, keyOfPath, keyPrefixBytes, normalisePath, parentOf, searchName } from './names.js';
import { DEFAULT_REVALIDATE_DEADLINE_MS, DEFAULT_STALE_ON_ERROR_MS, StaleAnswers, type Cached } from './stale-answers.js';

/** What a path in the mount is. */
export type NamespaceEntry =
  | {
      readonly kind: 'file';
      readonly ref: ObjectRef;
      readonly lastModified: Date;
      /** POSIX attributes stored with the object, when known (a HEAD saw them; listings carry none). */
      readonly meta?: ObjectMeta;
    }
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
  /**
   * How long past its TTL a known entry or listing is still served when the store fails
   * (unreachable, 5xx) or does not answer within `revalidateDeadlineMs`: a cache keeps
   * serving what it holds through an outage. 0 turns the fallback off. Default 24 h.
   */
  readonly staleOnErrorMs?: number;
  /**
   * How long a revalidation of a known entry waits for the store before the known entry is
   * served (and the store's answer, when it comes, is kept for the next caller). Default 2 s.
   */
  readonly revalidateDeadlineMs?: number;
  /** Logs the stale answers served through an outage (one line per path per minute at most). */
  readonly logger?: Logger;
  /** Injected clock (milliseconds), so TTL behaviour is testable without waiting. */
  readonly now?: () => number;
  /**
   * Look up the attributes of files seen only in a listing with a HEAD, once per object
   * version (S3 listings carry no user metadata). Off: such files show the mount's defaults
   * until a lookup by path (or a write through the mount) tells their attributes.
   */
  readonly metadataFromHead?: boolean;
  /**
   * Told when what is known of `path` is dropped (`subtree`: everything under it too), or
   * a revalidation found a new ETag: the FUSE mount then drops the kernel's copy as well.
   */
  readonly onInvalidate?: (path: string, subtree: boolean) => void;
}

/** S3 answers at most 1,000 keys a page; asking for fewer only adds round trips. */
const LIST_PAGE_SIZE = 1000;
/** See `#expiry`. */
const FOLDER_TTL_MS = 30_000;
/** Object versions whose attributes are remembered (about 100 bytes each): a 10 MB bound. */
const KNOWN_META_VERSIONS = 100_000;
/** Paths whose invalidation epoch is remembered: far more than lookups in flight at once. */
const INVALIDATIONS_TRACKED = 4096;

/**
 * A lookup in a folder listed before whose listing has expired lists the folder again instead
 * of sending a HEAD for the one name, when the folder fit one LIST page: one request then
 * answers every name in it. In bench/cold-read.ts (8 readers going through 2,000 files in 10
 * folders, for longer than the metadata TTL) the per-file HEADs took as long as the GETs.
 */
const RELIST_MAX_ENTRIES = LIST_PAGE_SIZE;

/**
 * Folders listed ahead of a walk. `find`, `ls -R`, `os.walk` and data loaders indexing a
 * dataset list a folder's subfolders one after another in name order, and each waits for its
 * LIST. After a folder is listed, its first LIST_AHEAD subfolders and the LIST_AHEAD folders
 * after it in its parent's listing are listed in the background, unless known or being listed:
 * the walk then finds them listed (or joins the listing in flight). A wasted guess costs a LIST
 * or two; a walk gets each folder's listing without waiting for it (bench/cold-read.ts).
 */
const LIST_AHEAD = 2;

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
  readonly #pendingLookups = new Map<string, Pending<NamespaceEntry | null>>();
  readonly #pendingListings = new Map<string, Pending<DirectoryEntry[]>>();
  /** The names of the folders in a listing, in its order (for #listAhead; listings are never changed once made). */
  readonly #foldersOf = new WeakMap<readonly DirectoryEntry[], string[]>();
  readonly #revalidateDeadlineMs: number;
  readonly #stale: StaleAnswers;
  /** Bytes the store URL's prefix adds to every key (`s3://bucket/a/b` adds `a/b/`). */
  readonly #keyPrefixBytes: number;
  /** Attributes per object version (`key` NUL `etag`); `0`: that version has none. */
  readonly #knownMeta = new LRUCache<string, ObjectMeta | 0>({ max: KNOWN_META_VERSIONS });
  readonly #pendingHeads = new Map<string, Pending<ObjectInfo | undefined>>();
  readonly #metadataFromHead: boolean;
  /**
   * Bumped by every invalidation: a lookup or listing that started before one does not cache
   * what it found (it may predate the change), and later callers do not join it.
   */
  #epoch = 0;
  /**
   * The epoch at which each path was last invalidated, itself or as the parent of an invalidated
   * path: a store answer for it that started before is answered but not kept. Per path, so that
   * writes elsewhere in the mount (an upload committing, say) do not keep lookups and listings
   * of other paths out of the cache, which --stale-on-error serves from during an outage.
   */
  readonly #invalidatedAt = new Map<string, number>();
  /** The epoch of the last invalidation of everything (and of forgetting #invalidatedAt). */
  #allInvalidatedAt = 0;

  constructor(store: ObjectStore, config: NamespaceConfig) {
    this.#store = store;
    this.#storeId = config.storeId ?? store.url;
    this.#ttlMs = config.metadataTtlMs;
    this.#revalidateDeadlineMs = config.revalidateDeadlineMs ?? DEFAULT_REVALIDATE_DEADLINE_MS;
    this.#keyPrefixBytes = keyPrefixBytes(store.url);
    this.#now = config.now ?? Date.now;
    this.#stale = new StaleAnswers({
      storeId: this.#storeId,
      staleOnErrorMs: config.staleOnErrorMs ?? DEFAULT_STALE_ON_ERROR_MS,
      deadlineMs: this.#revalidateDeadlineMs,
      logger: config.logger,
      now: this.#now,
    });
    this.#foreground = config.foreground ?? ((work) => work());
    this.#metadataFromHead = config.metadataFromHead ?? false;
    this.#onInvalidate = config.onInvalidate;
  }

  get storeId(): string {
    return this.#storeId;
  }

  /** Whether a lookup asks the store (a HEAD) for the attributes of a file a listing showed (`metadataFromHead`). */
  get attributesFromHead(): boolean {
    return this.#metadataFromHead;
  }

  /**
   * What is at `path`. Throws `NamespaceError('FS_NOT_FOUND')` when nothing is.
   * Answers from metadata younger than the TTL; otherwise asks the store, so a file
   * opened after the TTL has passed always carries its current ETag (close-to-open).
   */
  async lookup(path: string): Promise<NamespaceEntry> {
    const normal = normalisePath(path);
    this.checkName(normal);
    const entry = await this.#lookupNormal(normal);
    if (!entry) throw new NamespaceError('FS_NOT_FOUND', `no such file or folder: ${normal}`);
    if (entry.kind === 'file' && entry.meta === undefined && this.#metadataFromHead) {
      const version = versionOf(entry.ref);
      let known = this.#knownMeta.get(version);
      if (known === undefined) {
        // Attributes are worth a request, not an error: a failed HEAD shows the defaults this time.
        const info = await coalesce(this.#pendingHeads, version, () => this.#foreground(() => this.#store.head(entry.ref.key)), this.#now(), this.#revalidateDeadlineMs).catch(() => undefined);
        // A changed object's attributes belong to its new version: learnt at its next lookup.
        if (info?.etag !== entry.ref.etag) return entry;
        known = info.meta ?? 0;
        this.#knownMeta.set(version, known);
      }
      if (known) return { ...entry, meta: known };
    }
    return entry;
  }

  /** Remembers the attributes of one object version (written through the mount, so known without a HEAD). */
  learn(ref: ObjectRef, meta: ObjectMeta | undefined): void {
    this.#knownMeta.set(versionOf(ref), meta ?? 0);
  }

  /** The entries of the folder at `path`, sorted by name (`compareNames`). */
  async list(path: string): Promise<DirectoryEntry[]> {
    const normal = normalisePath(path);
    const entry = await this.lookup(normal);
    if (entry.kind !== 'dir') throw new NamespaceError('FS_NOT_A_DIRECTORY', `not a folder: ${normal}`);
    if (normal !== '/') this.#listAhead(parentOf(normal), this.#listings.get(parentOf(normal))?.value, normal.slice(normal.lastIndexOf('/') + 1));
    const known = this.#listings.get(normal);
    const cached = this.#fresh(known);
    if (cached) {
      this.#listAhead(normal, cached.value);
      return cached.value;
    }
    const load = coalesce(this.#pendingListings, normal, () => this.#foreground(() => this.#listFromStore(normal)), this.#now(), this.#revalidateDeadlineMs);
    const entries = await this.#stale.orStale(load, known, normal);
    this.#listAhead(normal, entries);
    return entries;
  }

  /**
   * Lists in the background (LIST_AHEAD) the first folders in `entries`, the listing of
   * `folder`, that come after the name `after` (from the start without it).
   */
  #listAhead(folder: string, entries: readonly DirectoryEntry[] | undefined, after?: string): void {
    if (!entries) return;
    let folders = this.#foldersOf.get(entries);
    if (!folders) this.#foldersOf.set(entries, (folders = entries.filter((e) => e.entry.kind === 'dir').map((e) => e.name)));
    let index = 0;
    if (after !== undefined) {
      const at = searchName(folders, after, (name) => name);
      index = at.found ? at.index + 1 : at.index;
    }
    for (const name of folders.slice(index, index + LIST_AHEAD)) {
      const path = folder === '/' ? `/${name}` : `${folder}/${name}`;
      if (this.#fresh(this.#listings.get(path)) || this.#pendingListings.has(path)) continue;
      void coalesce(this.#pendingListings, path, () => this.#listFromStore(path), this.#now(), this.#revalidateDeadlineMs).catch(() => undefined);
    }
  }

  /**
   * The last listing of the folder at `path` known, however old, sorted by name; never asks
   * the store. A hint (readahead of the next files), not an answer: it may be out of date.
   */
  lastListing(path: string): readonly DirectoryEntry[] | undefined {
    return this.#listings.get(normalisePath(path))?.value;
  }

  /**
   * Throws `NamespaceError('FS_NAME_TOO_LONG')` when a name in `path` is longer than
   * NAME_MAX (255 bytes) or its object key would pass the store's 1,024-byte limit: such a
   * path can be neither found nor created, and the store is not asked.
   */
  checkName(path: string): void {
    const key = keyOfPath(path);
    if (this.#keyPrefixBytes + Buffer.byteLength(key) + 1 > KEY_MAX_BYTES) {
      // +1: the key of a folder marker (`key/`) must fit as well.
      throw new NamespaceError('FS_NAME_TOO_LONG', `the object key for ${abbreviate(path)} would be longer than the store's ${KEY_MAX_BYTES} bytes`);
    }
    for (const name of key.split('/')) {
      if (Buffer.byteLength(name) > NAME_MAX_BYTES) throw new NamespaceError('FS_NAME_TOO_LONG', `a name in ${abbreviate(path)} is longer than ${NAME_MAX_BYTES} bytes`);
    }
  }

  /** Forgets what is known about `path` and its parent's listing (after an ESTALE, an event, a write). */
  invalidate(path: string): void {
    const normal = normalisePath(path);
    this.#epoch++;
    this.#markInvalidated(normal);
    this.#markInvalidated(parentOf(normal));
    // Listings expire rather than vanish: the next lookup asks the store, and should the store
    // be down, what was known is still there to serve stale (`--stale-on-error`).
    this.#entries.delete(normal); // its next lookup asks the store by name (a HEAD), not a listing
    this.#expire(this.#listings, normal);
    this.#expire(this.#listings, parentOf(normal));
    this.#pendingLookups.delete(normal);
    this.#pendingListings.delete(normal);
    this.#pendingListings.delete(parentOf(normal));
    this.#onInvalidate?.(normal, false);
  }

  /**
   * Every file under the folder `path`, recursively, from a listing without delimiter
   * (1,000 keys a request, however many folders). Same naming rules as `list`.
   */
  async *walkFiles(path: string): AsyncGenerator<{ path: string; ref: ObjectRef }> {
    const prefix = keyOfPath(path, true);
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

  #markInvalidated(path: string): void {
    // Bounded: past the cap, everything in flight counts as invalidated (only costs a store call).
    if (this.#invalidatedAt.size >= INVALIDATIONS_TRACKED) {
      this.#invalidatedAt.clear();
      this.#allInvalidatedAt = this.#epoch;
    }
    this.#invalidatedAt.set(path, this.#epoch);
  }

  /** Whether a store answer for `path` that started at `epoch` may be kept: nothing invalidated it since. */
  #keepable(path: string, epoch: number): boolean {
    return this.#allInvalidatedAt <= epoch && (this.#invalidatedAt.get(path) ?? 0) <= epoch;
  }

  #expire<T>(cache: Map<string, Cached<T>>, path: string): void {
    const cached = cache.get(path);
    const now = this.#now();
    if (cached && cached.expiresAt > now) cache.set(path, { value: cached.value, expiresAt: now });
  }

  /** Forgets everything (a sync, a link change). */
  invalidateAll(): void {
    this.#epoch++;
    this.#allInvalidatedAt = this.#epoch;
    this.#invalidatedAt.clear();
    this.#entries.clear();
    this.#listings.clear();
    this.#pendingLookups.clear();
    this.#pendingListings.clear();
    this.#onInvalidate?.('/', true);
  }

  async #lookupNormal(path: string): Promise<NamespaceEntry | null> {
    if (path === '/') return DIRECTORY;
    const known = this.#entries.get(path);
    const cached = this.#fresh(known);
    if (cached) return cached.value;
    // A listing of the parent is complete, so a name absent from it is absent; a fresh one
    // answers, an expired one is what is known should the store fail.
    const parent = parentOf(path);
    const listing = this.#listings.get(parent);
    const name = path.slice(path.lastIndexOf('/') + 1);
    const fromListing = listing && { value: listing.value.find((e) => e.name === name)?.entry ?? null, expiresAt: listing.expiresAt };
    if (fromListing && this.#fresh(fromListing)) return fromListing.value;
    // Only for a name seen in that listing: one invalidated since (written, renamed, its
    // attributes changed) is asked for by name, which also brings its attributes.
    if (known && listing && listing.value.length <= RELIST_MAX_ENTRIES) {
      const entries = await this.list(parent).catch(() => undefined);
      if (entries) return entries.find((e) => e.name === name)?.entry ?? null;
    }
    const load = coalesce(this.#pendingLookups, path, () => this.#foreground(() => this.#lookupInStore(path, known?.value?.kind === 'file')), this.#now(), this.#revalidateDeadlineMs);
    return this.#stale.orStale(load, newest(known, fromListing), path);
  }

  async #lookupInStore(path: string, wasFile: boolean): Promise<NamespaceEntry | null> {
    const epoch = this.#epoch;
    const remember = (value: NamespaceEntry | null): NamespaceEntry | null => (this.#keepable(path, epoch) ? this.#remember(path, value) : value);
    const key = keyOfPath(path);
    if (!isRepresentable(key)) return remember(null);
    if (wasFile) {
      // Revalidating a file (an open after the TTL): HEAD alone, the cheapest request a
      // store answers. A folder that appeared under the same name since shows at the
      // next listing of the parent.
      const info = await this.#store.head(key);
      if (info) return remember(this.#fileEntry(info));
    }
    // A HEAD and a one-key LIST in parallel: the LIST tells whether `key/` is a folder,
    // the HEAD whether `key` is a file. A single LIST on `key` cannot tell both, because
    // keys such as `key-a` or `key.b` sort between `key` and `key/`. A file is answered as
    // soon as the HEAD finds it (a LIST costs a store more, and may be slower); should the
    // LIST then find a folder of the same name, the folder wins from then on.
    // Both requests become outcomes at once, promises that never reject: whichever fails
    // first, and whether or not the other is ever awaited, no rejection goes unhandled.
    const isFolder = outcomeOf(this.#store.list(`${key}/`, { delimiter: '/', maxKeys: 1 }).then((page) => page.objects.length > 0 || page.prefixes.length > 0));
    const head = await outcomeOf(this.#store.head(key));
    if (!head.ok) {
      await isFolder;
      throw head.error;
    }
    const info = head.value;
    if (info && !info.key.endsWith('/')) {
      void isFolder.then((folder) => folder.ok && folder.value && remember(DIRECTORY));
      return remember(this.#fileEntry(info));
    }
    const folder = await isFolder;
    if (!folder.ok) throw folder.error;
    return remember(folder.value ? DIRECTORY : null);
  }

  async #listFromStore(path: string): Promise<DirectoryEntry[]> {
    const epoch = this.#epoch;
    const prefix = keyOfPath(path, true);
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

    const entries = [...byName].map(([name, entry]) => ({ name, entry })).sort((a, b) => compareNames(a.name, b.name));
    if (!this.#keepable(path, epoch)) {
      // Invalidated meanwhile: answered, but not kept as fresh. When no listing is known at
      // all, it is kept as expired, like a listing `invalidate` expires: the next list asks
      // the store, and should the store be down by then, this is what is known to serve.
      if (!this.#listings.has(path)) this.#listings.set(path, { value: entries, expiresAt: this.#now() });
      return entries;
    }
    const expiresAt = this.#now() + this.#ttlMs;
    for (const { name, entry } of entries) this.#entries.set(path === '/' ? `/${name}` : `${path}/${name}`, { value: entry, expiresAt: this.#expiry(entry) });
    this.#listings.set(path, { value: entries, expiresAt });
    return entries;
  }

  #fileEntry(info: ObjectInfo): NamespaceEntry {
    const ref = { storeId: this.#storeId, key: info.key, etag: info.etag, size: info.size };
    if (info.meta) this.#knownMeta.set(versionOf(ref), info.meta);
    const meta = info.meta ?? (this.#knownMeta.get(versionOf(ref)) || undefined);
    return { kind: 'file', ref, lastModified: info.lastModified, ...(meta ? { meta } : {}) };
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

function newest<T>(a: Cached<T> | undefined, b: Cached<T> | undefined): Cached<T> | undefined {
  if (!a || !b) return a ?? b;
  return a.expiresAt >= b.expiresAt ? a : b;
}

/** The cache key of one version of an object. */
function versionOf(ref: ObjectRef): string {
  return `${ref.key}\0${ref.etag}`;
}

