import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/index.js';
import { makeFolders, removeFileDurably, TEMP_PREFIX, writeFileDurably } from '../durable/index.js';
import { parseRecord, type UploadRecord } from './upload-record.js';

const RECORD_SUFFIX = '.json';

/**
 * The crash-safe list of uploads: one small JSON record per upload in `<dir>`, each replaced
 * atomically (temp, fsync, rename, fsync of the folder). A `write` or `remove` resolves once
 * it is durable. Writes to one record are applied in call order; a write queued behind a
 * running one is coalesced with later writes (only the newest contents are written).
 */
export class UploadJournal {
  readonly #dir: string;
  readonly #logger: Logger;
  /** The last operation queued per record id, to apply them in order. */
  readonly #tails = new Map<string, Promise<void>>();
  /** Newest contents per id whose write has not started yet (coalescing). */
  readonly #queued = new Map<string, { record: UploadRecord | null; done: Promise<void> }>();

  private constructor(dir: string, logger: Logger) {
    this.#dir = dir;
    this.#logger = logger;
  }

  static async open(dir: string, logger: Logger): Promise<UploadJournal> {
    await makeFolders(dir);
    return new UploadJournal(dir, logger);
  }

  /** Every readable record. Leftover temp files are deleted; unreadable records are logged and moved aside. */
  async list(): Promise<UploadRecord[]> {
    const records: UploadRecord[] = [];
    for (const name of await readdir(this.#dir)) {
      const path = join(this.#dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await rm(path, { force: true });
        continue;
      }
      if (!name.endsWith(RECORD_SUFFIX)) continue;
      const record = parseRecord(await readFile(path, 'utf8'));
      if (record && `${record.id}${RECORD_SUFFIX}` === name) records.push(record);
      else this.#logger.error({ path }, 'unreadable upload journal record; left in place for inspection');
    }
    return records;
  }

  /** Stores `record` under its id, replacing the previous contents. */
  write(record: UploadRecord): Promise<void> {
    return this.#enqueue(record.id, record);
  }

  /** Deletes the record of `id` (a missing one is fine). */
  remove(id: string): Promise<void> {
    return this.#enqueue(id, null);
  }

  /** Resolves once every queued write and removal is durable. */
  async idle(): Promise<void> {
    await Promise.all([...this.#tails.values()]);
  }

  #enqueue(id: string, record: UploadRecord | null): Promise<void> {
    const queued = this.#queued.get(id);
    if (queued) {
      queued.record = record;
      return queued.done;
    }
    const entry: { record: UploadRecord | null; done: Promise<void> } = { record, done: Promise.resolve() };
    const before = this.#tails.get(id) ?? Promise.resolve();
    entry.done = before
      .catch(() => undefined)
      .then(async () => {
        this.#queued.delete(id);
        const path = join(this.#dir, `${id}${RECORD_SUFFIX}`);
        if (entry.record) await writeFileDurably(path, JSON.stringify(entry.record));
        else await removeFileDurably(path);
      });
    this.#queued.set(id, entry);
    this.#tails.set(id, entry.done);
    const done = entry.done;
    void done.then(
      () => this.#tails.get(id) === done && this.#tails.delete(id),
      () => this.#tails.get(id) === done && this.#tails.delete(id),
    );
    return done;
  }
}
