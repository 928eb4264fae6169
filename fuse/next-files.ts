import type { ObjectReader } from '../cache/index.js';
import { parentOf, searchName, type DirectoryEntry, type Namespace } from '../namespace/index.js';
import { counter } from '../telemetry/index.js';

/**
 * Readahead across the files of a folder. A job that reads a folder's files in name order
 * (`cat dir/*`, `cp -r`, `tar`, a data loader without shuffling) waits for one store GET
 * per file, one file after the other: the store is idle while the kernel and the daemon
 * pass the open and the first read. When a file is opened right after the name before it
 * in the folder (by any reader: several readers each going through their share of a folder
 * are each such a stream), the first blocks of the next `depth` files start loading, so
 * the reader finds them loading or cached.
 *
 * It only uses a listing the namespace already holds, however old (never asks the store; a
 * file changed since is fetched with its old ETag, which the store refuses), loads with
 * readahead's terms (spare cache memory only, `ObjectReader.readAhead`), and keeps at most
 * `maxLoads` such loads in flight: a shuffled epoch, where no open follows its neighbour,
 * costs nothing but the bookkeeping.
 */

const startedAhead = counter('strata_fuse_next_files_started_total', 'First blocks of the next files of a folder started loading ahead of a reader going through it in name order', []);

export interface NextFilesOptions {
  /** Files to load ahead of a stream; 0 turns this off. */
  readonly depth: number;
  /** Loads of files ahead in flight at once, over all folders. */
  readonly maxLoads: number;
}

/**
 * Opens remembered per folder: enough for the streams of 8-16 readers in one folder to each
 * find the open before theirs.
 */
const RECENT_PER_FOLDER = 32;
/** Folders whose recent opens are remembered (the least recently opened one is dropped). */
const FOLDERS = 64;

interface FolderState {
  /**
   * Names of recent opens, oldest first. Names, not listing indexes: the folder's listing may
   * change between two opens, and an index from the old one would point at another name (a
   * file opened twice would then look like a stream reaching its next neighbour).
   */
  readonly recent: string[];
}

export class NextFiles {
  readonly #reader: ObjectReader;
  readonly #options: NextFilesOptions;
  readonly #folders = new Map<string, FolderState>();
  #loads = 0;

  constructor(reader: ObjectReader, options: NextFilesOptions) {
    this.#reader = reader;
    this.#options = options;
  }

  /** A file at `innerPath` of `namespace` was opened for reading. */
  opened(namespace: Namespace, innerPath: string): void {
    if (this.#options.depth <= 0 || this.#reader.readAhead === undefined) return;
    const folder = parentOf(innerPath);
    const listing = namespace.lastListing(folder);
    if (listing === undefined) return;
    const name = innerPath.slice(innerPath.lastIndexOf('/') + 1);
    const { index, found } = searchName(listing, name, (e) => e.name);
    if (!found) return;
    const key = `${namespace.storeId}\0${folder}`;
    let state = this.#folders.get(key);
    if (state === undefined) {
      state = { recent: [] };
      if (this.#folders.size >= FOLDERS) this.#folders.delete(this.#folders.keys().next().value!);
    } else {
      this.#folders.delete(key); // re-inserted below: the map's order is the folders' last use
    }
    this.#folders.set(key, state);
    const inOrder = index > 0 && state.recent.includes(listing[index - 1]!.name);
    state.recent.push(name);
    if (state.recent.length > RECENT_PER_FOLDER) state.recent.shift();
    if (inOrder) this.#loadAhead(listing, index);
  }

  #loadAhead(listing: readonly DirectoryEntry[], index: number): void {
    const readAhead = this.#reader.readAhead!.bind(this.#reader);
    for (let i = index + 1; i < listing.length && i <= index + this.#options.depth; i++) {
      if (this.#loads >= this.#options.maxLoads) return;
      const { entry } = listing[i]!;
      if (entry.kind !== 'file') continue;
      const load = readAhead(entry.ref);
      if (load === undefined) continue;
      this.#loads += 1;
      startedAhead.inc();
      void load.finally(() => (this.#loads -= 1));
    }
  }
}
