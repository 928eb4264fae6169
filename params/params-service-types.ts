import type { OpenStoreOptions } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import type { ServedTable } from './served-table.js';
import type { ManifestEntry } from './table-manifest.js';
import type { TableMapper } from './table-mapper.js';

/** The params service's configuration and what it answers about tables and recoveries. */

export interface ParamsServiceConfig {
  /** Directory holding one file per table version and the manifest: the pmem tier's directory, normally. */
  readonly dir: string;
  /** The tier `dir` is on, as `GET /v1/params/tables` reports it. */
  readonly tier?: string;
  /**
   * Where a table goes when `dir` lacks room for it: the NVMe tier's directory. Its files
   * are mapped like the others; the kernel's page cache keeps the pages of hot keys in DRAM.
   * Lookups of tables there run on lookup threads (at least one), so a page read from the
   * device never stalls the event loop.
   */
  readonly overflow?: { readonly dir: string; readonly tier: string };
  readonly logger?: Logger;
  /** Endpoint and region for s3:// sources. */
  readonly store?: OpenStoreOptions;
  /** Default: mmap through the native addon, or plain reads without it. */
  readonly mapper?: TableMapper;
  /**
   * Worker threads answering `mgetAsync` (0: on the calling thread). Each maps the same
   * files, so threads add no memory. See docs/PARAMS.md for when they pay off.
   */
  readonly lookupThreads?: number;
}

export interface ParamsTableInfo {
  readonly name: string;
  readonly version: number;
  readonly keys: number;
  readonly dim: number;
  readonly shards: number;
  readonly tier: string;
  readonly bytes: number;
  readonly source: string;
  /** `mmap` when served from a mapping, `read` when copied into memory. */
  readonly mapping: string;
  /** `native` (the addon's kernel) or `js`. */
  readonly kernel: string;
  /** Bytes of the table now in DRAM (page cache), for tables on a device tier; all of it otherwise. */
  readonly residentBytes: number;
}

export interface LoadOptions {
  /** Put the table on this tier instead of the first with room (`pmem` or `nvme`, as configured). */
  readonly tier?: string;
}

export interface RecoverOptions {
  /**
   * With lookup threads, the recovered tables are answered on the main thread until this
   * settles, then on the threads: a daemon passes its start-up, so that the threads' boot
   * (a Node environment each, their modules, their mappings of the tables) does not take the
   * cores from the first lookups and the rest of start-up (bench/startup.ts). Default: at once.
   * Tables on a device tier (NVMe) move at once whatever this says: their lookups may wait on
   * the disk, which the event loop must not.
   */
  readonly threadsAfter?: PromiseLike<unknown>;
}

export interface RecoveryReport {
  readonly tables: number;
  /** Tables in the manifest that failed validation and are not served. */
  readonly failed: ReadonlyArray<{ name: string; message: string }>;
  readonly ms: number;
}

/** A served version of a table, inside the service (not exported from the folder). */
export interface Served {
  readonly table: ServedTable;
  readonly entry: ManifestEntry;
  /** The lookup threads have this version mapped. */
  readonly pooled: boolean;
}
