import picomatch from 'picomatch';
import type { ObjectReader } from '../cache/index.js';
import type { ObjectRef } from '../store/index.js';
import type { TierName } from '../cache/index.js';
import type { MountRoutes } from '../namespace/index.js';
import { untilAborted, WorkQueue } from '../async/index.js';
import { isStrataError } from '../errors/index.js';
import type { JobBody, JobProgress } from './job-manager.js';
import { JobError } from './job-error.js';
import { CacheError } from '../cache/index.js';

export interface PrefetchSource {
  /** The link table as it is now (links may change while a job runs). */
  readonly routes: () => MountRoutes;
  readonly reader: ObjectReader;
  /** Bytes read per request: the cache's block size, so each request fills one block. */
  readonly blockSize: number;
  /**
   * Puts block `index` of `ref` into `tier` (absent: wherever a read would cache it) and
   * says whether that tier has it now (BlockCache.warmBlock). Without it, the job reads
   * each block through `reader` and cannot honour `tier`.
   */
  readonly warmBlock?: (ref: ObjectRef, index: number, tier: TierName | undefined) => Promise<{ bytes: number; placed: boolean }>;
  /**
   * Resolves once the cache's write-through in progress has finished (BlockCache.writesSettled):
   * the job ends after it, so its files are in the persistent tiers, not only in DRAM, when it
   * reports done.
   */
  readonly writesSettled?: () => Promise<void>;
}

export interface PrefetchOptions {
  /** Mount paths: files, folders (recursively), or links' roots. */
  readonly paths: readonly string[];
  /** Only keys matching one of these globs (relative to the link root) are fetched. */
  readonly include?: readonly string[];
  readonly exclude?: readonly string[];
  /** Files fetched at once (default 32). */
  readonly parallelFiles?: number;
  /** The tier every block of the job must end up in (see BlockCache.warmBlock); needs `warmBlock`. */
  readonly tier?: TierName;
  /** Called with each file found, before it is fetched (pins use it to cover the file). */
  readonly onFile?: (root: string, ref: ObjectRef) => void;
}

/**
 * Files fetched at once by one job: 32. Small files are latency-bound, so fewer leaves the
 * store idle (measured: 16 gave 0.6-0.8x an SDK download with 16 in flight). The daemon's
 * fetch scheduler cuts a job to a few fetches while foreground reads wait on the store.
 */
const DEFAULT_PARALLEL_FILES = 32;

interface FileToFetch {
  readonly path: string;
  readonly ref: ObjectRef;
}

/**
 * A job body that walks `paths` and reads every matching file through the cache, so it
 * lands in the tiers. Files are discovered while earlier ones are fetched; totals grow
 * as they are found. A path that does not exist fails the job before anything is fetched.
 */
export function prefetchJob(source: PrefetchSource, options: PrefetchOptions): JobBody {
  return async (progress) => {
    if (options.tier !== undefined && source.warmBlock === undefined) {
      throw new JobError('API_BAD_REQUEST', `tier: this job cannot choose a tier (asked for ${options.tier})`);
    }
    const routes = source.routes();
    for (const path of options.paths) {
      if (!routes.route(path)) throw new JobError('API_BAD_REQUEST', `no such file or folder in the mount: ${path}`);
    }
    const matches = matcher(options.include, options.exclude);
    const queue = new WorkQueue<FileToFetch>();
    let root = '';
    const push = (file: FileToFetch) => {
      options.onFile?.(root, file.ref);
      progress.addTotal(1, file.ref.size);
      queue.push(file);
    };
    const walker = (async () => {
      try {
        for (const path of options.paths) {
          root = path;
          await walk(routes, path, matches, push, progress.signal);
        }
      } finally {
        queue.close();
      }
    })();
    const refused = { blocks: 0 };
    const worker = async () => {
      for (let file = await queue.take(progress.signal); file !== undefined; file = await queue.take(progress.signal)) {
        if (source.warmBlock) refused.blocks += await warmFile(source.warmBlock, source.blockSize, file, options.tier, progress);
        else await fetchFile(source, file, progress);
      }
    };
    await Promise.all([walker, ...Array.from({ length: options.parallelFiles ?? DEFAULT_PARALLEL_FILES }, worker)]);
    // A cancelled job does not wait for the write-through.
    if (source.writesSettled && !progress.signal.aborted) await untilAborted(source.writesSettled(), progress.signal);
    if (refused.blocks > 0 && !progress.signal.aborted) {
      throw new CacheError('CACHE_TIER_IO', `${refused.blocks} blocks could not be written to the ${options.tier ?? 'dram'} tier (full of pinned blocks, too small, or failing); the others are there`);
    }
  };
}

/** Warms every block of one file; answers how many blocks the target tier refused. */
async function warmFile(warmBlock: NonNullable<PrefetchSource['warmBlock']>, blockSize: number, file: FileToFetch, tier: TierName | undefined, progress: JobProgress): Promise<number> {
  let refused = 0;
  try {
    for (let index = 0; index * blockSize < file.ref.size; index += 1) {
      if (progress.signal.aborted) return refused;
      const block = await warmBlock(file.ref, index, tier);
      if (!block.placed) refused += 1;
      progress.addDone(0, block.bytes);
    }
    progress.addDone(1, 0);
  } catch (err) {
    // A file that changed or vanished since it was listed is skipped, not a failed job.
    if (!isStrataError(err, 'STORE_PRECONDITION_FAILED', 'STORE_NOT_FOUND')) throw err;
    progress.addDone(1, 0);
  }
  return refused;
}

async function fetchFile(source: PrefetchSource, file: FileToFetch, progress: JobProgress): Promise<void> {
  const session = source.reader.openSession(file.ref, { priority: 'background' });
  try {
    for (let offset = 0; offset < file.ref.size; offset += source.blockSize) {
      if (progress.signal.aborted) return;
      const bytes = await source.reader.read(session, offset, Math.min(source.blockSize, file.ref.size - offset));
      progress.addDone(0, bytes.length);
    }
    progress.addDone(1, 0);
  } catch (err) {
    // A file that changed or vanished since it was listed is skipped, not a failed job.
    if (!isStrataError(err, 'STORE_PRECONDITION_FAILED', 'STORE_NOT_FOUND')) throw err;
    progress.addDone(1, 0);
  } finally {
    source.reader.closeSession(session);
  }
}

async function walk(routes: MountRoutes, path: string, matches: (key: string) => boolean, push: (f: FileToFetch) => void, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  const route = routes.route(path);
  if (!route) return;
  const child = (name: string) => (path === '/' ? `/${name}` : `${path.replace(/\/+$/, '')}/${name}`);
  if (route.kind === 'virtual') {
    for (const name of route.children) await walk(routes, child(name), matches, push, signal);
    return;
  }
  const { namespace } = route.link;
  const entry = await namespace.lookup(route.innerPath);
  if (entry.kind === 'file') {
    if (matches(entry.ref.key)) push({ path, ref: entry.ref });
    return;
  }
  // One recursive listing (1,000 keys a request) instead of a LIST per folder.
  const base = path.replace(/\/+$/, '');
  for await (const file of namespace.walkFiles(route.innerPath)) {
    if (signal.aborted) return;
    if (matches(file.ref.key)) push({ path: `${base}${file.path.slice(route.innerPath === '/' ? 0 : route.innerPath.length)}`, ref: file.ref });
  }
}

/** include/exclude globs over keys relative to the link's root; no include means everything. */
export function matcher(include?: readonly string[], exclude?: readonly string[]): (key: string) => boolean {
  const yes = include && include.length > 0 ? picomatch([...include], { dot: true }) : () => true;
  const no = exclude && exclude.length > 0 ? picomatch([...exclude], { dot: true }) : () => false;
  return (key) => yes(key) && !no(key);
}
