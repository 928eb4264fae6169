import type { ObjectRef } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import { MAX_PART_BYTES } from './part-layout.js';
import { realSleep, type Sleep } from '../async/index.js';
import { WritePathError } from './write-path-error.js';

export type CloseMode = 'async' | 'sync';

/** Cancellable wait; tests inject a fake to make backoff and staging waits instant. */
export type { Sleep } from '../async/index.js';
export { realSleep } from '../async/index.js';

/** Cache hooks for the newest checkpoints; both may be called again for the same ref after a restart. */
export interface PinHooks {
  pin(ref: ObjectRef): void | Promise<void>;
  unpin(ref: ObjectRef): void | Promise<void>;
}

export interface WritePathConfig {
  /** Folder on a local tier (NVMe dir or state dir) for staged bytes and the journal. */
  readonly stagingDir: string;
  /** Staged bytes allowed at once; past it writes wait for uploads to free space (see `stagingWaitMs`). */
  readonly stagingLimitBytes: number;
  /** What `release` waits for unless the handle overrides it. */
  readonly closeMode: CloseMode;
  /**
   * Whether a handle may be handed to the kernel to write its staged file itself
   * (`WritePath.shareWithKernel`; the FUSE adapter asks when it can use passthrough). Default true.
   */
  readonly shareWithKernel?: boolean | undefined;
  /** First multipart part size; at least 5 MiB (S3's minimum for all but the last part). */
  readonly partSizeBytes?: number | undefined;
  /** Newest uploaded files per folder that stay pinned (default 1, 0 pins nothing). */
  readonly keepNewest?: number | undefined;
  /** Parts (or single PUTs) in flight to the store, over all uploads. */
  readonly maxConcurrentParts?: number | undefined;
  /**
   * Parts in flight per file while it is still being written (streaming); after release the file
   * may use all of `maxConcurrentParts`. Streaming competes with the writer for CPU and memory
   * bandwidth, and close waits for the writer: see DEFAULT_STREAMING_PARTS.
   */
  readonly streamingPartsPerFile?: number | undefined;
  /**
   * How long a write waiting for staging space tolerates uploads making no progress at all (no
   * part uploaded, no file committed) before failing with ENOSPC. While uploads progress it waits.
   */
  readonly stagingWaitMs?: number | undefined;
  /** How long `fsync` and a sync `release` wait for the store before failing with EIO (the upload goes on). */
  readonly commitWaitMs?: number | undefined;
  /** First retry delay after a failed store call; doubles per attempt up to `retryMaxDelayMs`, with jitter. */
  readonly retryBaseDelayMs?: number | undefined;
  readonly retryMaxDelayMs?: number | undefined;
  readonly pins?: PinHooks | undefined;
  readonly logger: Logger;
  readonly now?: (() => number) | undefined;
  /** Waits between retries (tests make them instant). Bounded waits (`stagingWaitMs`, `commitWaitMs`) use real timers. */
  readonly sleep?: Sleep | undefined;
  /** Uniform in [0, 1), for jitter. */
  readonly random?: (() => number) | undefined;
}

export interface ResolvedWritePathConfig {
  readonly stagingDir: string;
  readonly stagingLimitBytes: number;
  readonly closeMode: CloseMode;
  readonly shareWithKernel: boolean;
  readonly partSizeBytes: number;
  readonly keepNewest: number;
  readonly maxConcurrentParts: number;
  readonly streamingPartsPerFile: number;
  readonly stagingWaitMs: number;
  readonly commitWaitMs: number;
  readonly retryBaseDelayMs: number;
  readonly retryMaxDelayMs: number;
  readonly pins: PinHooks | undefined;
  readonly logger: Logger;
  readonly now: () => number;
  readonly sleep: Sleep;
  readonly random: () => number;
}

const MiB = 1024 * 1024;
/** S3 refuses parts below 5 MiB except the last one. */
export const MIN_PART_SIZE = 5 * MiB;
/**
 * 16 MiB parts: 8 in flight hold 128 MiB of buffers, the bench's 2 GiB file streams as 128 parts
 * (bench/checkpoint-write.ts matched or beat the SDK's upload with it), and 1,000 parts cover a
 * 16 GiB checkpoint before the part size has to grow (part-layout.ts).
 */
const DEFAULT_PART_SIZE = 16 * MiB;
/** 8 parts in flight (128 MiB of buffers at the default part size) keep a loopback or LAN store busy. */
const DEFAULT_CONCURRENT_PARTS = 8;
/**
 * 2 parts per file in flight while it is written, all 8 after release. In bench/checkpoint-write.ts
 * (2 GiB, RGW on the same 2 shared cores) close took 1.17x and 1.48x a local write + fsync with 2
 * streaming parts, 2.49x and 1.43x with 8, and the object reached the store as soon either way
 * (95-98% of the SDK's throughput): fewer parts never hurt, and leave the writer its CPU. Through
 * the mount (2 GiB `dd bs=4M`, one run), 1 part instead of 2 made close slower (6.0 s against
 * 5.0 s) and the upload much later (19.4 s against 12.0 s in the store): 1 is too few.
 */
const DEFAULT_STREAMING_PARTS = 2;
/**
 * A write waiting for space fails after 30 s without any upload progress: a part of 16 MiB takes
 * well under a second on a working link, and the kernel's FUSE request timeout (120 s) is far off.
 */
const DEFAULT_STAGING_WAIT_MS = 30_000;
/** fsync / sync close give up (EIO) after 10 minutes; a 10 GiB file at 20 MB/s still fits. */
const DEFAULT_COMMIT_WAIT_MS = 600_000;
/** Retries start at 200 ms (a restarting gateway) and settle at 30 s (a store down for a while). */
const DEFAULT_RETRY_BASE_MS = 200;
const DEFAULT_RETRY_MAX_MS = 30_000;

/** Validates once and fills defaults; a bad value fails with CONFIG_INVALID naming the option. */
export function resolveWritePathConfig(config: WritePathConfig): ResolvedWritePathConfig {
  const positive = (name: string, value: number | undefined, fallback: number, min = 1): number => {
    const v = value ?? fallback;
    if (!Number.isFinite(v) || !Number.isInteger(v) || v < min) {
      throw new WritePathError('CONFIG_INVALID', `${name} must be an integer of at least ${min} (got ${String(value)})`);
    }
    return v;
  };
  const atMost = (name: string, value: number, max: number): number => {
    if (value > max) throw new WritePathError('CONFIG_INVALID', `${name} must be at most ${max} (got ${value})`);
    return value;
  };
  if (!config.stagingDir) throw new WritePathError('CONFIG_INVALID', 'stagingDir is required');
  if (config.closeMode !== 'async' && config.closeMode !== 'sync') {
    throw new WritePathError('CONFIG_INVALID', `closeMode must be "async" or "sync" (got ${String(config.closeMode)})`);
  }
  return Object.freeze({
    stagingDir: config.stagingDir,
    stagingLimitBytes: positive('stagingLimitBytes', config.stagingLimitBytes, 0),
    closeMode: config.closeMode,
    shareWithKernel: config.shareWithKernel ?? true,
    partSizeBytes: atMost('partSizeBytes', positive('partSizeBytes', config.partSizeBytes, DEFAULT_PART_SIZE, MIN_PART_SIZE), MAX_PART_BYTES),
    keepNewest: positive('keepNewest', config.keepNewest, 1, 0),
    maxConcurrentParts: positive('maxConcurrentParts', config.maxConcurrentParts, DEFAULT_CONCURRENT_PARTS),
    streamingPartsPerFile: positive('streamingPartsPerFile', config.streamingPartsPerFile, DEFAULT_STREAMING_PARTS),
    stagingWaitMs: positive('stagingWaitMs', config.stagingWaitMs, DEFAULT_STAGING_WAIT_MS, 0),
    commitWaitMs: positive('commitWaitMs', config.commitWaitMs, DEFAULT_COMMIT_WAIT_MS, 0),
    retryBaseDelayMs: positive('retryBaseDelayMs', config.retryBaseDelayMs, DEFAULT_RETRY_BASE_MS, 0),
    retryMaxDelayMs: positive('retryMaxDelayMs', config.retryMaxDelayMs, DEFAULT_RETRY_MAX_MS, 0),
    pins: config.pins,
    logger: config.logger,
    now: config.now ?? Date.now,
    sleep: config.sleep ?? realSleep,
    random: config.random ?? Math.random,
  });
}
