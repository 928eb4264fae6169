import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import type { ObjectRef } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import { writeFileDurably } from '../durable/index.js';
import type { PinHooks } from './write-path-config.js';

interface PinnedEntry {
  readonly ref: ObjectRef;
  /** Commit time (ms since the epoch): the newest `keep` per folder stay pinned. */
  readonly at: number;
}

/**
 * Keeps the newest `keep` uploaded files of each folder pinned in the cache, so the latest
 * checkpoint survives eviction and a restart reads it from local tiers. The pinned set is
 * persisted in `file` and handed to the hooks again by `load` at start.
 */
export class NewestPins {
  readonly #keep: number;
  readonly #hooks: PinHooks | undefined;
  readonly #file: string;
  readonly #logger: Logger;
  /** `storeId\0folder` → entries, newest first. */
  readonly #folders = new Map<string, PinnedEntry[]>();
  #saving: Promise<void> = Promise.resolve();

  constructor(keep: number, hooks: PinHooks | undefined, file: string, logger: Logger) {
    this.#keep = keep;
    this.#hooks = hooks;
    this.#file = file;
    this.#logger = logger;
  }

  /** Reads the persisted set and pins each entry again. */
  async load(): Promise<void> {
    let doc: { entries?: PinnedEntry[] } = {};
    try {
      doc = JSON.parse(await readFile(this.#file, 'utf8')) as typeof doc;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#logger.warn({ err, file: this.#file }, 'pin list unreadable; starting with no pins');
    }
    for (const entry of doc.entries ?? []) {
      if (typeof entry?.ref?.key !== 'string' || typeof entry.at !== 'number') continue;
      const list = this.#list(entry.ref.storeId, entry.ref.key);
      list.push(entry);
      list.sort((a, b) => b.at - a.at);
      await this.#call('pin', entry.ref);
    }
  }

  pinned(): ObjectRef[] {
    return [...this.#folders.values()].flat().map((e) => e.ref);
  }

  /** A file was committed: pin it, replace an older version of the same key, unpin what falls out of the newest `keep`. */
  async committed(ref: ObjectRef, at: number): Promise<void> {
    if (this.#keep === 0) return;
    const list = this.#list(ref.storeId, ref.key);
    const dropped = list.filter((e) => e.ref.key === ref.key);
    const kept = list.filter((e) => e.ref.key !== ref.key);
    kept.push({ ref, at });
    kept.sort((a, b) => b.at - a.at);
    dropped.push(...kept.splice(this.#keep));
    list.splice(0, list.length, ...kept);
    if (kept.some((e) => e.ref === ref)) await this.#call('pin', ref);
    for (const e of dropped) await this.#call('unpin', e.ref);
    await this.#save();
  }

  /** The file at `key` is gone (unlinked) or moved: unpin it. */
  async forget(storeId: string, key: string): Promise<void> {
    const list = this.#list(storeId, key);
    const gone = list.filter((e) => e.ref.key === key);
    if (gone.length === 0) return;
    list.splice(0, list.length, ...list.filter((e) => e.ref.key !== key));
    for (const e of gone) await this.#call('unpin', e.ref);
    await this.#save();
  }

  #list(storeId: string, key: string): PinnedEntry[] {
    const id = `${storeId}\0${posix.dirname(key)}`;
    let list = this.#folders.get(id);
    if (!list) this.#folders.set(id, (list = []));
    return list;
  }

  async #call(which: 'pin' | 'unpin', ref: ObjectRef): Promise<void> {
    try {
      await this.#hooks?.[which](ref);
    } catch (err) {
      this.#logger.warn({ err, key: ref.key }, `${which} hook failed`);
    }
  }

  async #save(): Promise<void> {
    const body = JSON.stringify({ entries: [...this.#folders.values()].flat() });
    const run = this.#saving.then(() => writeFileDurably(this.#file, body));
    this.#saving = run.catch((err: unknown) => this.#logger.warn({ err }, 'could not persist the pin list'));
    await this.#saving;
  }
}
