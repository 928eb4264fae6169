import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { makeFolders, writeFileDurably } from '../durable/index.js';
import type { ObjectRef } from '../store/index.js';
import { objectVersionId, splitBlockId } from './block-key.js';

/** The group of single pinned versions; not a path (paths start with `/`), never persisted. */
const VERSIONS = '#versions';

/**
 * Pinned paths and the object versions they cover. The persistent tiers ask `isPinned`
 * for a block id before evicting it. Paths are persisted in `<stateDir>/pins.json`; the
 * object versions under them are found again by re-reading the paths at start (which
 * also refreshes them when a checkpoint was rewritten).
 */
export class PinSet {
  readonly #file: string;
  readonly #objects = new Map<string, Set<string>>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(file: string, paths: string[]) {
    this.#file = file;
    for (const path of paths) this.#objects.set(path, new Set());
  }

  static async open(stateDir: string): Promise<PinSet> {
    const file = join(stateDir, 'pins.json');
    let paths: string[] = [];
    try {
      const doc = JSON.parse(await readFile(file, 'utf8')) as { paths?: unknown };
      if (Array.isArray(doc.paths)) paths = doc.paths.filter((p): p is string => typeof p === 'string');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return new PinSet(file, paths);
  }

  paths(): string[] {
    return [...this.#objects.keys()].filter((p) => p !== VERSIONS).sort();
  }

  /** Pins `path` (persisted before this resolves); its objects are added with `cover`. */
  async add(path: string): Promise<void> {
    if (!this.#objects.has(path)) this.#objects.set(path, new Set());
    await this.#save();
  }

  /** Records that `ref` is under the pinned `path`, so its blocks stay cached. */
  cover(path: string, ref: ObjectRef): void {
    this.#objects.get(path)?.add(objectVersionId(ref));
  }

  /** Pins one object version outside any path (the write path's newest checkpoints; it persists its own list). */
  pinVersion(ref: ObjectRef): void {
    let versions = this.#objects.get(VERSIONS);
    if (!versions) this.#objects.set(VERSIONS, (versions = new Set()));
    versions.add(objectVersionId(ref));
  }

  unpinVersion(ref: ObjectRef): void {
    this.#objects.get(VERSIONS)?.delete(objectVersionId(ref));
  }

  /** Unpins `path`; answers whether it was pinned. */
  async remove(path: string): Promise<boolean> {
    const had = this.#objects.delete(path);
    if (had) await this.#save();
    return had;
  }

  /** Whether block `id` (a `blockId`) belongs to a pinned object version. */
  readonly isPinned = (id: string): boolean => {
    if (this.#objects.size === 0) return false;
    const object = splitBlockId(id)?.objectId;
    if (object === undefined) return false;
    for (const set of this.#objects.values()) if (set.has(object)) return true;
    return false;
  };

  async #save(): Promise<void> {
    const body = `${JSON.stringify({ paths: this.paths() }, null, 2)}\n`;
    const write = this.#writing.then(async () => {
      await makeFolders(dirname(this.#file));
      await writeFileDurably(this.#file, body);
    });
    this.#writing = write.catch(() => undefined);
    await write;
  }

}
