import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { inParallel } from '../async/index.js';
import { makeFolders, TEMP_PREFIX, removeFileDurably, writeFileDurably } from '../durable/index.js';
import type { ObjectStore } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';

/** Runs `work` holding the write path's locks of `keys` in `storeId` (see WritePath #locks). */
export type LockedRunner = <T>(storeId: string, keys: readonly string[], work: () => Promise<T>) => Promise<T | undefined>;

/** `copying`: the old tree is whole. `deleting`: the new tree is whole. `rollback`: copies are being removed. */
type Phase = 'copying' | 'deleting' | 'rollback';

interface TreeRenameRecord {
  readonly version: 1;
  readonly id: string;
  readonly storeId: string;
  /** Both end with `/`. */
  readonly from: string;
  readonly to: string;
  readonly phase: Phase;
  /** The target folder had a marker object before the rename (kept by a rollback). */
  readonly targetMarker: boolean;
}

/** Copies in flight at once: S3 copies are server side, so the daemon only waits; 8 keeps a 1,000-file folder under a few seconds on the test gateway without crowding out reads. */
const COPY_CONCURRENCY = 8;
const RECORD_SUFFIX = '.json';
/** S3's page limit. */
const LIST_PAGE = 1000;

/**
 * Folder renames in an object store, which has no rename: every object under the old prefix
 * (folder markers included) is copied to the new prefix, then the old ones are deleted.
 *
 * Order, and what an interruption leaves:
 * 1. a record `renames/<id>.json` is written durably (`copying`);
 * 2. every object under the old prefix is copied; then pending (not yet uploaded) files move,
 *    and objects committed meanwhile are copied by a second listing;
 * 3. the record becomes `deleting`; the old objects are deleted; the record is removed.
 * - A store failure in step 2 removes the copies made and fails the rename: the old tree stays.
 * - A crash at any point leaves the record; the next start finishes the rename (the old tree
 *   is whole until step 3, so it can always be copied again), copying only objects missing
 *   at the new name (anything there is newer), and uploads journaled under the old prefix
 *   commit under the new one (`moved`).
 */
export class TreeRenames {
  readonly #dir: string;
  readonly #stores: (storeId: string) => ObjectStore;
  readonly #locked: LockedRunner;
  readonly #logger: Logger;
  /** Renames found at start that could not be finished yet; `moved` maps keys through them. */
  #unfinished: TreeRenameRecord[] = [];

  constructor(dir: string, stores: (storeId: string) => ObjectStore, locked: LockedRunner, logger: Logger) {
    this.#dir = dir;
    this.#stores = stores;
    this.#locked = locked;
    this.#logger = logger;
  }

  /** Finishes (or rolls back) every rename a crash interrupted. A failure is logged and kept for the next start. */
  async recover(): Promise<void> {
    await makeFolders(this.#dir);
    const unfinished: TreeRenameRecord[] = [];
    for (const name of await readdir(this.#dir)) {
      const path = join(this.#dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await removeFileDurably(path);
        continue;
      }
      if (!name.endsWith(RECORD_SUFFIX)) continue;
      const record = parseRecord(await readFile(path, 'utf8'));
      if (!record) {
        this.#logger.error({ path }, 'unreadable folder-rename record; left in place for inspection');
        continue;
      }
      try {
        if (record.phase === 'rollback') await this.#rollBack(record);
        else await this.#rollForward(record);
        await removeFileDurably(path);
        this.#logger.info({ from: record.from, to: record.to, phase: record.phase }, 'finished a folder rename interrupted by a crash');
      } catch (err) {
        this.#logger.error({ err, from: record.from, to: record.to }, 'could not finish a folder rename interrupted by a crash; trying again at the next start');
        if (record.phase !== 'rollback') unfinished.push(record);
      }
    }
    this.#unfinished = unfinished;
  }

  /** Where `key` lives now, after the renames `recover` could not finish. */
  moved(storeId: string, key: string): string {
    for (const r of this.#unfinished) if (r.storeId === storeId && key.startsWith(r.from)) return `${r.to}${key.slice(r.from.length)}`;
    return key;
  }

  /**
   * Renames the folder `from` to `to` (both ending in `/`); `movePending` moves the files not
   * yet in the store. Throws the store's error if the copy fails (nothing changed then).
   */
  async run(storeId: string, from: string, to: string, movePending: () => Promise<void>): Promise<void> {
    const store = this.#stores(storeId);
    const record: TreeRenameRecord = {
      version: 1,
      id: randomBytes(8).toString('hex'),
      storeId,
      from,
      to,
      phase: 'copying',
      targetMarker: (await store.head(to)) !== undefined,
    };
    const path = join(this.#dir, `${record.id}${RECORD_SUFFIX}`);
    await writeFileDurably(path, JSON.stringify(record));
    const copied = new Set<string>();
    try {
      await this.#copyAll(record, copied, false);
    } catch (err) {
      await this.#undo(record, path);
      throw err;
    }
    // From here on the rename completes: a failure leaves the record, finished at the next start.
    await movePending();
    await this.#copyAll(record, copied, false); // objects committed under the old name meanwhile
    await writeFileDurably(path, JSON.stringify({ ...record, phase: 'deleting' }));
    await this.#deleteSources(record);
    await removeFileDurably(path);
  }

  /** Copies every object under `from` not in `copied` yet; `ifAbsent` skips objects already at the new name. */
  async #copyAll(record: TreeRenameRecord, copied: Set<string>, ifAbsent: boolean): Promise<void> {
    const store = this.#stores(record.storeId);
    const todo: string[] = [];
    for await (const key of this.#keys(record.storeId, record.from)) if (!copied.has(key)) todo.push(key);
    await inParallel(todo, COPY_CONCURRENCY, async (key) => {
      const target = `${record.to}${key.slice(record.from.length)}`;
      await this.#locked(record.storeId, [key, target], async () => {
        if (ifAbsent && (await store.head(target))) return;
        await store.copy(key, target);
      });
      copied.add(key);
    });
  }

  async #deleteSources(record: TreeRenameRecord): Promise<void> {
    const keys: string[] = [];
    for await (const key of this.#keys(record.storeId, record.from)) keys.push(key);
    await this.#deleteAll(record.storeId, keys);
  }

  /**
   * Deletes `keys`: objects first, then folder markers deepest first (in the local store a
   * marker is a directory, which goes only once it is empty).
   */
  async #deleteAll(storeId: string, keys: readonly string[]): Promise<void> {
    const store = this.#stores(storeId);
    const remove = (key: string) => this.#locked(storeId, [key], () => store.delete(key)).then(() => undefined);
    await inParallel(keys.filter((k) => !k.endsWith('/')), COPY_CONCURRENCY, remove);
    for (const marker of keys.filter((k) => k.endsWith('/')).sort().reverse()) await remove(marker);
  }

  async #rollForward(record: TreeRenameRecord): Promise<void> {
    if (record.phase === 'copying') await this.#copyAll(record, new Set(), true);
    await this.#deleteSources(record);
  }

  /** Removes the copies of a failed rename; if that fails too, the record says `rollback` for the next start. */
  async #undo(record: TreeRenameRecord, path: string): Promise<void> {
    try {
      await this.#rollBack(record);
      await removeFileDurably(path);
    } catch (err) {
      this.#logger.error({ err, from: record.from, to: record.to }, 'could not remove the copies of a failed folder rename; removing them at the next start');
      await writeFileDurably(path, JSON.stringify({ ...record, phase: 'rollback' })).catch(() => undefined);
    }
  }

  async #rollBack(record: TreeRenameRecord): Promise<void> {
    const sources: string[] = [];
    for await (const key of this.#keys(record.storeId, record.from)) sources.push(key);
    await this.#removeCopies(record, sources);
  }

  async #removeCopies(record: TreeRenameRecord, sources: readonly string[]): Promise<void> {
    const targets = sources.map((key) => `${record.to}${key.slice(record.from.length)}`).filter((t) => !(record.targetMarker && t === record.to));
    await this.#deleteAll(record.storeId, targets);
  }

  /**
   * Every key under `prefix`, folder markers included. Walked one folder at a time with a
   * delimiter: the local store reports a folder's marker (its directory) in a delimiter
   * listing of the folder, not in a recursive one, and empty folders must move too.
   */
  async *#keys(storeId: string, prefix: string): AsyncGenerator<string> {
    const store = this.#stores(storeId);
    const folders = [prefix];
    for (let folder = folders.shift(); folder !== undefined; folder = folders.shift()) {
      let token: string | undefined;
      do {
        const page = await store.list(folder, { delimiter: '/', maxKeys: LIST_PAGE, ...(token ? { token } : {}) });
        for (const info of page.objects) yield info.key;
        folders.push(...page.prefixes);
        token = page.nextToken;
      } while (token);
    }
  }
}

function parseRecord(text: string): TreeRenameRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<TreeRenameRecord>;
    const ok =
      r.version === 1 &&
      typeof r.id === 'string' &&
      typeof r.storeId === 'string' &&
      typeof r.from === 'string' &&
      typeof r.to === 'string' &&
      r.from.endsWith('/') &&
      r.to.endsWith('/') &&
      (r.phase === 'copying' || r.phase === 'deleting' || r.phase === 'rollback') &&
      typeof r.targetMarker === 'boolean';
    return ok ? (r as TreeRenameRecord) : undefined;
  } catch {
    return undefined;
  }
}
