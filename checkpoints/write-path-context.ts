import { join } from 'node:path';
import type { ObjectStore } from '../store/index.js';
import { KeyLock } from '../async/index.js';
import type { RetryOptions } from '../async/index.js';
import { realSleep } from '../async/index.js';
import { CacheAdoption } from './cache-adoption.js';
import { Commits } from './commit.js';
import { NewestPins } from './newest-pins.js';
import { PartStreaming } from './part-streaming.js';
import type { PendingUpload } from './pending-upload.js';
import { PendingVersions } from './pending-versions.js';
import { Recovery } from './recovery.js';
import { UploadSlots } from './slots.js';
import { StagingSpace } from './staging-space.js';
import { TreeRenames } from './tree-rename.js';
import { UploadRecords } from './upload-records.js';
import type { AdoptHook } from './write-handle.js';
import type { ResolvedWritePathConfig } from './write-path-config.js';

const STAGED_DIR = 'staged';
const JOURNAL_DIR = 'journal';
const PINS_FILE = 'pins.json';
const RENAMES_DIR = 'renames';

/**
 * What the parts of one write path share: its configuration and stores, the staging space and
 * upload slots, the per-key store locks, the shutdown flag, and each part (versions, records,
 * part streaming, commits, recovery, cache adoption), so that they can call one another. Built
 * once by the WritePath facade; nothing outside checkpoints/ sees it.
 */
export class WritePathContext {
  readonly config: ResolvedWritePathConfig;
  readonly stores: (storeId: string) => ObjectStore;
  readonly stagedDir: string;
  readonly space: StagingSpace;
  readonly slots: UploadSlots;
  readonly pins: NewestPins;
  readonly trees: TreeRenames;
  readonly versions: PendingVersions;
  readonly records: UploadRecords;
  readonly parts: PartStreaming;
  readonly commits: Commits;
  readonly recovery: Recovery;
  readonly adoption: CacheAdoption;
  /** Set by `close()`: no new work starts, retries stop. */
  closing = false;
  /** Aborted by `close()`: waits for commits (flush, fsync, sync release) end then. */
  readonly closed = new AbortController();
  /**
   * Orders, per key, the store calls that create or remove an object: a commit's PUT or
   * CompleteMultipartUpload (with its HEAD), an unlink's DELETE, a rename's copy and delete.
   * Those calls are never aborted once sent (an aborted PUT may still land in the store after
   * a later DELETE); an unlink or rename waits for the one in flight instead.
   */
  readonly #locks = new KeyLock();
  /** Whether a handle still writes `upload` (its staged file stays until that handle is released). */
  readonly hasOpenHandle: (upload: PendingUpload) => boolean;

  constructor(config: ResolvedWritePathConfig, stores: (storeId: string) => ObjectStore, adopt: AdoptHook | undefined, hasOpenHandle: (upload: PendingUpload) => boolean) {
    this.config = config;
    this.stores = stores;
    this.hasOpenHandle = hasOpenHandle;
    this.stagedDir = join(config.stagingDir, STAGED_DIR);
    this.space = new StagingSpace({ limitBytes: config.stagingLimitBytes, stallMs: config.stagingWaitMs, sleep: realSleep, logger: config.logger });
    this.slots = new UploadSlots(config.maxConcurrentParts, config.partSizeBytes);
    this.pins = new NewestPins(config.keepNewest, config.pins, join(config.stagingDir, PINS_FILE), config.logger);
    this.trees = new TreeRenames(join(config.stagingDir, RENAMES_DIR), stores, <T>(storeId: string, keys: readonly string[], work: () => Promise<T>) => this.locked(storeId, keys, work), config.logger);
    this.versions = new PendingVersions(this);
    this.records = new UploadRecords(this, join(config.stagingDir, JOURNAL_DIR));
    this.parts = new PartStreaming(this);
    this.commits = new Commits(this);
    this.recovery = new Recovery(this);
    this.adoption = new CacheAdoption(adopt, this.pins, config);
  }

  /** Runs `work` holding the locks of `keys` in `storeId`; `undefined` if `signal` aborts first. */
  locked<T>(storeId: string, keys: readonly string[], work: () => Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
    return this.#locks.with(keys.map((k) => `${storeId}\0${k}`), work, signal);
  }

  /**
   * How the write path retries a store call: backoff with equal jitter from `retryBaseDelayMs`
   * to `retryMaxDelayMs`, the configured sleep and random, given up once the path is closing.
   */
  retryOptions(signal?: AbortSignal): RetryOptions {
    const { retryBaseDelayMs, retryMaxDelayMs, sleep, random } = this.config;
    return { backoff: { baseMs: retryBaseDelayMs, maxMs: retryMaxDelayMs, jitter: 'equal' }, sleep, random, signal, stopped: () => this.closing };
  }
}
