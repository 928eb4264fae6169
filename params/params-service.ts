import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { syncDir, TEMP_PREFIX } from '../durable/index.js';
import type { OpenStoreOptions } from '../store/index.js';
import { counter, silentLogger, type Logger } from '../telemetry/index.js';
import { decodeDelta, type DeltaBody } from './delta-body.js';
import { KeySet } from './key-set.js';
import { ParamsError } from './params-error.js';
import { mgetAnswerBytes, ServedTable } from './served-table.js';
import { MANIFEST_FILE, TableManifest, type ManifestEntry } from './table-manifest.js';
import { defaultTableMapper, type TableMapper } from './table-mapper.js';
import { openTableSource } from './table-source.js';
import { AnswerBuffers, type AnswerLease } from './answer-buffers.js';
import { LookupPool } from './lookup-pool.js';
import { TableWriter } from './table-writer.js';
import { lookupBinding } from './lookup-binding.js';
import { createOverlay, foldToDelta, overlayLayout, OVERLAY_SUFFIX, readOverlayLog } from './overlay-format.js';
import { TableOverlay } from './table-overlay.js';
import { startCompaction, type RunningCompaction } from './table-compactor.js';

/** Most keys one mget or lookup may ask for: 800 KB of keys, an answer of 6.4 MB at dim 16. */
export const MAX_BATCH_KEYS = 100_000;

/** Table names: a file-name-safe word, so `<name>.v<version>.params` is a plain file name. */
const TABLE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const TABLE_FILE = /^(.+)\.v(\d+)\.params$/;
const verificationFailures = counter('strata_params_values_check_failures_total', 'Recovered parameter tables whose values failed their checksum (not served)');

/** Tiers whose pages may have to come from a device: their lookups never run on the event loop. */
const DEVICE_TIERS = new Set(['nvme']);
/** Kept free on a tier when choosing it: the manifest, temp files and other users of a shared tmpfs. */
const TIER_RESERVE_BYTES = 16 * 1024 * 1024;

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

export interface RecoveryReport {
  readonly tables: number;
  /** Tables in the manifest that failed validation and are not served. */
  readonly failed: ReadonlyArray<{ name: string; message: string }>;
  readonly ms: number;
}

interface Served {
  readonly table: ServedTable;
  readonly entry: ManifestEntry;
  /** The lookup threads have this version mapped. */
  readonly pooled: boolean;
}

/** A compaction of one table: its thread, and the switch to its result (see #startCompaction). */
interface Compaction {
  readonly running: RunningCompaction;
  switched(): Promise<ParamsTableInfo>;
}

/** A directory tables may be placed in. */
interface Placement {
  readonly dir: string;
  readonly tier: string;
}

/**
 * Serves parameter tables: loads versions into its directory, switches names to new
 * versions atomically, answers lookups, and recovers what it served after a crash.
 *
 * Atomic switch: a name points at one immutable ServedTable; a load or delta builds the
 * new version beside the old one and replaces that one reference. Lookups are synchronous
 * and read the reference once, so each sees one version whole. The old file is removed
 * after the manifest names the new one, and its mappings are released at the switch.
 */
export class ParamsService {
  readonly #dir: string;
  /** Where tables may go, in order of preference: `dir` first, then the overflow tier. */
  readonly #placements: readonly Placement[];
  readonly #logger: Logger;
  readonly #store: OpenStoreOptions;
  readonly #mapper: TableMapper;
  readonly #manifest: TableManifest;
  readonly #tables = new Map<string, Served>();
  /** Recovered tables whose values are still to be checked: not served yet (see recover). */
  readonly #verifying = new Map<string, Served>();
  #verified: Promise<void> = Promise.resolve();
  readonly #failedVerification: Array<{ name: string; message: string }> = [];
  /** Highest version ever used per name, so a version number is never reused. */
  readonly #versions = new Map<string, number>();
  /** Loads and deltas of one name run one at a time. */
  readonly #queues = new Map<string, Promise<unknown>>();
  readonly #lookupThreads: number;
  /** Started after recovery (or at the first load), so booting threads never slow recovery down. */
  #pool: LookupPool | undefined;
  #ready: Promise<void> | undefined;
  /** Compactions in progress, by table name (one at a time per table). */
  readonly #compactions = new Map<string, Compaction>();
  /** Background compactions between the decision and their thread's start (a room check). */
  readonly #compactionsStarting = new Set<string>();
  /** Reused answers of mgetLease on this thread. */
  readonly #answers = new AnswerBuffers((bytes) => new ArrayBuffer(bytes));

  constructor(config: ParamsServiceConfig) {
    this.#dir = config.dir;
    this.#placements = [{ dir: config.dir, tier: config.tier ?? 'pmem' }, ...(config.overflow ? [config.overflow] : [])];
    this.#logger = (config.logger ?? silentLogger()).child({ component: 'params' });
    this.#store = config.store ?? {};
    this.#mapper = config.mapper ?? defaultTableMapper();
    this.#manifest = new TableManifest(config.dir);
    this.#lookupThreads = config.lookupThreads ?? 0;
  }

  /**
   * Serves again every table the manifest lists, validating header and index checksum
   * but not reading the values (they are mapped, not loaded). A table that fails is
   * logged, left out and reported; the others are served. Leftover temp files and
   * versions no longer listed are removed afterwards.
   */
  async recover(): Promise<RecoveryReport> {
    const started = performance.now();
    await this.#ensureDir();
    const entries = await this.#manifest.read();
    const failed: Array<{ name: string; message: string }> = [];
    const opened: Served[] = [];
    for (const entry of entries) {
      this.#versions.set(entry.name, Math.max(entry.version, this.#versions.get(entry.name) ?? 0));
      try {
        const table = ServedTable.open(this.#pathOf(entry), this.#mapper);
        const served: Served = { table, entry, pooled: false };
        opened.push(served);
        this.#versions.set(entry.name, Math.max(this.#versionOf(served), this.#versions.get(entry.name) ?? 0));
        if (table.overlay?.rolledBack) this.#logger.warn({ table: entry.name, records: table.overlay.rolledBack }, 'undid an in-place delta a crash cut short');
      } catch (err) {
        failed.push({ name: entry.name, message: (err as Error).message });
        this.#logger.error({ err, table: entry.name }, 'parameter table failed validation at recovery; not served until reloaded');
      }
    }
    // The values are checked before a table answers (it reads every value: the recovery
    // itself reads only the index): one table at a time, on the addon's threads, right
    // after recovery. Until then a lookup answers 503 PARAMS_TABLE_VERIFYING; a table that
    // fails is not served and is reported (`failedVerification`).
    for (const served of opened) this.#verifying.set(served.entry.name, served);
    const ms = performance.now() - started;
    this.#logger.info({ tables: opened.length, failed: failed.length, ms }, 'parameter tables recovered; checking their values');
    this.#verified = this.#verifyRecovered(opened);
    await this.#removeOrphans(entries);
    return { tables: opened.length, failed, ms };
  }

  /** Resolves once every recovered table's values were checked (tests, the CLI's status). */
  get valuesChecked(): Promise<void> {
    return this.#verified;
  }

  /** Tables whose values failed their check after recovery: name and why, for status and logs. */
  get failedVerification(): ReadonlyArray<{ name: string; message: string }> {
    return this.#failedVerification;
  }

  async #verifyRecovered(opened: readonly Served[]): Promise<void> {
    for (const served of opened) {
      await new Promise((resolve) => setImmediate(resolve)); // lookups of tables already checked go first
      const { name } = served.entry;
      if (this.#verifying.get(name) !== served) continue; // replaced by a load meanwhile
      this.#verifying.delete(name);
      let intact = false;
      try {
        intact = served.table.valuesIntact();
      } catch (err) {
        this.#logger.error({ err, table: name }, 'cannot read a recovered parameter table\'s values');
      }
      if (!intact) {
        const message = `${this.#pathOf(served.entry)}: values checksum mismatch after restart`;
        this.#failedVerification.push({ name, message });
        verificationFailures.inc();
        this.#logger.error({ table: name, version: served.entry.version }, 'parameter table values failed their checksum after restart; not served until reloaded');
        served.table.close();
        continue;
      }
      this.#tables.set(name, served);
      this.#startPooled(served);
      if (served.table.overlay?.wantsCompaction()) this.#compactInBackground(name);
    }
  }

  #startPooled(served: Served): void {
    const pool = this.#poolFor(served.entry);
    pool?.open(served.table.path).then(
      () => {
        if (this.#tables.get(served.entry.name) === served) this.#tables.set(served.entry.name, { ...served, pooled: true });
      },
      (err: unknown) => this.#logger.warn({ err, table: served.entry.name }, 'lookup threads could not map a recovered table; serving it on the main thread'),
    );
  }

  /**
   * Loads (or replaces) table `name` from `source` (a local path, file:// or s3:// URL):
   * copies it into the directory as a new version, validates it fully (header, index
   * and values checksums) and switches the name to it. Answers the new table's info.
   */
  async load(name: string, source: string, options: LoadOptions = {}): Promise<ParamsTableInfo> {
    checkName(name);
    if (options.tier !== undefined && !this.#placements.some((p) => p.tier === options.tier)) {
      throw new ParamsError('PARAMS_BAD_INPUT', `tier "${options.tier}" holds no parameter tables here; configured: ${this.#placements.map((p) => p.tier).join(', ')}`);
    }
    return this.#serialised(name, async () => {
      const found = await openTableSource(source, this.#store);
      const placement = await this.#choosePlacement(found.size, options.tier);
      const { version, file, temp } = await this.#nextVersion(name, placement.dir);
      try {
        await found.copyTo(temp);
        await rename(temp, join(placement.dir, file));
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      return this.#switchTo(name, { name, version, file, source, ...this.#tierField(placement) }, { verifyValues: true });
    });
  }

  /**
   * Applies a delta body (see delta-body.ts) to `name` and answers the table's info once
   * lookups see it; every lookup sees the table before or after the whole delta. With the
   * native addon the delta goes in place, into the table file's overlay (docs/PARAMS.md,
   * "In-place deltas"): it costs what it changes, and a compaction folds the overlay into a
   * new version in the background once it is half full. A delta the overlay has no room for
   * is folded in by a compaction at once; without the addon a delta rewrites the table
   * copy-on-write. Deltas of one table run one at a time.
   */
  applyDelta(name: string, body: Buffer): Promise<ParamsTableInfo> {
    return this.#serialised(name, async () => {
      const current = this.#served(name);
      const delta = decodeDelta(body);
      const { header } = current.table;
      if (delta.dim !== header.dim) throw new ParamsError('PARAMS_BAD_DELTA', `delta has dim ${delta.dim}, table ${name} has dim ${header.dim}`);
      const inPlace = await this.#applyInPlace(name, current, body, delta);
      if (inPlace) return inPlace;
      const running = this.#compactions.get(name);
      if (running) {
        // The overlay is full and a compaction is under way: switch to its version in this
        // turn and try again in its fresh overlay.
        await running.switched().catch(() => undefined);
        const now = this.#served(name);
        const again = await this.#applyInPlace(name, now, body, delta);
        if (again) return again;
        if (now.table.overlay) return (await this.#startCompaction(name, now, { body, delta })).switched();
        return this.#rewrite(name, now, delta);
      }
      if (current.table.overlay) return (await this.#startCompaction(name, current, { body, delta })).switched();
      return this.#rewrite(name, current, delta);
    });
  }

  /**
   * The delta into the table's overlay (made on the first delta), or undefined when it
   * cannot go in place: no addon mapping, or more changes than the overlay has room for.
   */
  async #applyInPlace(name: string, current: Served, body: Buffer, delta: DeltaBody): Promise<ParamsTableInfo | undefined> {
    const { table } = current;
    const binding = lookupBinding();
    const handle = table.nativeHandle;
    if (!binding || !handle) return undefined;
    const changes = delta.upserts + delta.deletes;
    if (!table.overlay) {
      const layout = overlayLayout(table.dim, table.header.keyCount, table.overlayTag);
      if (changes > layout.recordCapacity / 2) return undefined; // a fresh overlay would be past its compaction point at once
      await createOverlay(table.path, layout);
      table.attachOverlay(TableOverlay.open(table.path + OVERLAY_SUFFIX, binding, handle, table.overlayTag, { writer: true }));
      // The lookup threads map the file again, with its overlay, before any delta is in it.
      await this.#poolFor(current.entry)?.open(table.path);
    }
    const overlay = table.overlay!;
    if (!overlay.fits(changes)) return undefined;
    await overlay.apply(body, delta);
    this.#versions.set(name, Math.max(this.#versionOf(current), this.#versions.get(name) ?? 0));
    if (overlay.wantsCompaction()) this.#compactInBackground(name);
    return this.#info(current);
  }

  /** The whole table rewritten with the delta (copy-on-write): without the addon, or for a table with no overlay yet and a delta larger than one. */
  async #rewrite(name: string, current: Served, delta: DeltaBody): Promise<ParamsTableInfo> {
    const { header } = current.table;
    const placement = this.#placementOf(current.entry);
    // The new version is written beside the old one on the same tier: at most the old file plus the
    // upserts, and as much again for its values while the writer regroups them by shard.
    const grown = (await stat(this.#pathOf(current.entry))).size + delta.records.length;
    await this.#requireRoom(placement, grown + header.valuesBytes + delta.records.length, name);
    const { version, file, temp } = await this.#nextVersion(name, placement.dir);
    const writer = new TableWriter(temp, { dim: header.dim, shards: header.shardCount, seed: header.seed, maxRecords: header.keyCount + delta.upserts });
    try {
      const deleted = delta.deletes > 0 ? new KeySet(delta.deleteKeys) : undefined;
      current.table.forEachEntry((lo, hi, bytes, offset) => {
        if (!deleted?.has(lo, hi)) writer.add(lo, hi, bytes, offset);
      });
      const recordBytes = 8 + 4 * header.dim;
      for (let at = 0; at < delta.records.length; at += recordBytes) {
        writer.add(delta.records.readUInt32LE(at), delta.records.readUInt32LE(at + 4), delta.records, at + 8);
      }
      writer.finish();
      await rename(temp, join(placement.dir, file));
    } catch (err) {
      writer.abort();
      await rm(temp, { force: true });
      const code = (err as { code?: string }).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw new ParamsError('PARAMS_NO_SPACE', `the ${placement.tier} tier filled up while the delta for ${name} was written; the served version is unchanged`, { cause: err });
      throw err;
    }
    const source = `${current.entry.source} + delta`;
    return this.#switchTo(name, { name, version, file, source, ...this.#tierField(placement) }, { verifyValues: false });
  }

  /** Starts a background compaction of `name` unless one runs; its switch waits its turn behind deltas. */
  #compactInBackground(name: string): void {
    if (this.#compactions.has(name) || this.#compactionsStarting.has(name)) return;
    const current = this.#tables.get(name);
    if (!current) return;
    const started = performance.now();
    this.#compactionsStarting.add(name);
    void this.#startCompaction(name, current)
      .finally(() => this.#compactionsStarting.delete(name))
      .then((compaction) =>
        compaction.running.done.then(
          () => this.#serialised(name, () => compaction.switched()),
          (err: unknown) => {
            if (this.#compactions.get(name) === compaction) this.#compactions.delete(name);
            throw err;
          },
        ),
      )
      .then(
        (info) => this.#logger.info({ table: name, version: info.version, keys: info.keys, ms: performance.now() - started }, 'compacted the in-place deltas into a new version'),
        (err: unknown) => this.#logger.warn({ err, table: name }, 'compaction failed; the deltas stay in the overlay'),
      );
  }

  /**
   * Starts folding the overlay of the served version (and `extra`, a delta that did not fit)
   * into a new table file on a compaction thread; lookups and in-place deltas go on meanwhile.
   * `switched()`, called in the table's turn, waits for the file, carries over the deltas
   * committed since into the new file's overlay, and switches to it (once, whoever calls it).
   */
  async #startCompaction(name: string, current: Served, extra?: { body: Buffer; delta: DeltaBody }): Promise<Compaction> {
    const overlay = current.table.overlay;
    const { records, logCrc } = overlay?.state() ?? { records: 0, logCrc: 0 };
    const placement = this.#placementOf(current.entry);
    const path = this.#pathOf(current.entry);
    // The new file is at most the old one plus the records; its values once more while the writer regroups them by shard.
    const added = records * (16 + 4 * current.table.dim) + (extra?.delta.records.length ?? 0);
    await this.#requireRoom(placement, (await stat(path)).size + added + current.table.header.valuesBytes + added, name);
    const temp = join(placement.dir, `${TEMP_PREFIX}${name}.compact-${randomBytes(4).toString('hex')}`);
    const running = startCompaction({ basePath: path, ...(overlay ? { overlayPath: overlay.path } : {}), records, logCrc, ...(extra ? { extra: extra.body } : {}), temp });
    const finish = async (): Promise<ParamsTableInfo> => {
      if (this.#tables.get(name)?.table !== current.table) {
        await rm(temp, { force: true });
        throw new ParamsError('INTERNAL', `table ${name} was replaced while its compaction ran; the compaction is dropped`);
      }
      const { version, file } = await this.#nextVersion(name, placement.dir);
      const target = join(placement.dir, file);
      await rename(temp, target);
      // Deltas committed while the compaction thread ran: one delta into the new file's overlay.
      const now = overlay?.state().records ?? 0;
      if (now > records) {
        const body = foldToDelta(readOverlayLog(overlay!.path, records, now));
        const next = ServedTable.open(target, this.#mapper, { trusted: true });
        try {
          const binding = lookupBinding()!;
          const handle = next.nativeHandle!;
          await createOverlay(target, overlayLayout(next.dim, next.header.keyCount, next.overlayTag));
          next.attachOverlay(TableOverlay.open(target + OVERLAY_SUFFIX, binding, handle, next.overlayTag, { writer: true }));
          await next.overlay!.apply(body, decodeDelta(body));
        } catch (err) {
          await rm(target, { force: true });
          await rm(target + OVERLAY_SUFFIX, { force: true });
          throw err;
        } finally {
          next.close();
        }
      }
      return this.#switchTo(name, { ...current.entry, version, file, ...this.#tierField(placement) }, { verifyValues: false });
    };
    let switching: Promise<ParamsTableInfo> | undefined;
    const compaction: Compaction = {
      running,
      switched: () =>
        (switching ??= running.done.then(finish).finally(() => {
          if (this.#compactions.get(name) === compaction) this.#compactions.delete(name);
        })),
    };
    this.#compactions.set(name, compaction);
    return compaction;
  }

  /**
   * Stops serving `name` and removes its file (after lookups already queued on the lookup
   * threads). PARAMS_TABLE_NOT_FOUND when it is not served. Runs after the name's pending
   * loads and deltas.
   */
  unload(name: string): Promise<void> {
    return this.#serialised(name, async () => {
      const served = this.#served(name);
      this.#tables.delete(name);
      this.#pool?.close(served.table.path);
      served.table.close();
      await this.#manifest.write([...this.#tables.values(), ...this.#verifying.values()].map((s) => s.entry));
      await rm(this.#pathOf(served.entry), { force: true });
      await rm(this.#pathOf(served.entry) + OVERLAY_SUFFIX, { force: true });
      this.#logger.info({ table: name, version: served.entry.version }, 'parameter table unloaded');
    });
  }

  /** The served tables, by name. */
  list(): ParamsTableInfo[] {
    return [...this.#tables.values()].map((s) => this.#info(s)).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The served version of `name`; PARAMS_TABLE_NOT_FOUND when there is none. */
  table(name: string): ServedTable {
    return this.#served(name).table;
  }

  /**
   * Looks up little-endian uint64 keys (raw bytes or a BigUint64Array) in `name` and
   * answers the mget body: found-bitmap padded to 4 bytes, then one dim-float32 row per
   * key (zeros when missing), in one buffer allocated for this answer.
   */
  mget(name: string, keys: Uint8Array | BigUint64Array): Buffer {
    const table = this.#served(name).table;
    const n = batchSize(keys);
    const out = Buffer.allocUnsafeSlow(mgetAnswerBytes(n, table.dim));
    table.mgetInto(keyWords(keys, n), n, new Uint32Array(out.buffer, out.byteOffset, out.length / 4));
    return out;
  }

  /**
   * mgetAsync into a reused buffer: what the HTTP route uses. The caller releases the lease
   * once the answer has been sent (and must not touch its bytes after that).
   */
  async mgetLease(name: string, keys: Uint8Array): Promise<AnswerLease> {
    const served = this.#served(name);
    const n = batchSize(keys);
    if (this.#pool?.healthy && served.pooled) return this.#pool.mgetLease(served.table.path, served.table.dim, keys);
    const bytes = mgetAnswerBytes(n, served.table.dim);
    const { slab, release } = this.#answers.acquire(bytes);
    served.table.mgetInto(keyWords(keys, n), n, new Uint32Array(slab, 0, bytes / 4));
    return { bytes: Buffer.from(slab, 0, bytes), release };
  }

  /**
   * mget on the lookup threads when there are any (and they have the table mapped), else
   * on this thread. The version is chosen when the call is made, so a switch during
   * the lookup does not change the answer.
   */
  async mgetAsync(name: string, keys: Uint8Array): Promise<Buffer> {
    const served = this.#served(name);
    batchSize(keys);
    if (!this.#pool?.healthy || !served.pooled) return this.mget(name, keys);
    return this.#pool.mget(served.table.path, served.table.dim, keys);
  }

  /** Whether `name`'s lookups run on lookup threads (configured, or its tier is a device). */
  runsOnThreads(name: string): boolean {
    return this.#served(name).pooled;
  }

  /** The JSON twin of mget: decimal key strings in, `{found, vectors}` out (null vector when missing). */
  lookup(name: string, keys: readonly string[]): { found: boolean[]; vectors: Array<number[] | null> } {
    const table = this.#served(name).table;
    if (keys.length > MAX_BATCH_KEYS) throw new ParamsError('PARAMS_BATCH_TOO_LARGE', `${keys.length} keys in one request; at most ${MAX_BATCH_KEYS}`);
    const packed = new BigUint64Array(keys.length);
    keys.forEach((k, i) => (packed[i] = parseKey(k)));
    const answer = this.mget(name, packed);
    const dim = table.dim;
    const bitmapBytes = ((keys.length + 31) >>> 5) * 4;
    const floats = new Float32Array(answer.buffer, answer.byteOffset + bitmapBytes, keys.length * dim);
    const found = keys.map((_, i) => (answer[i >>> 3]! & (1 << (i & 7))) !== 0);
    return { found, vectors: found.map((f, i) => (f ? Array.from(floats.subarray(i * dim, (i + 1) * dim)) : null)) };
  }

  /** Stops serving and the lookup threads, and releases the tables' mappings. */
  async close(): Promise<void> {
    await Promise.all([...this.#compactions.values()].map((c) => c.running.cancel()));
    const tables = [...this.#tables.values(), ...this.#verifying.values()];
    this.#tables.clear();
    this.#verifying.clear();
    await this.#pool?.terminate();
    for (const served of tables) served.table.close();
  }

  #served(name: string): Served {
    const served = this.#tables.get(name);
    if (!served && this.#verifying.has(name)) throw new ParamsError('PARAMS_TABLE_VERIFYING', `parameter table "${name}" was recovered and its values are being checked; retry in a moment`);
    if (!served) throw new ParamsError('PARAMS_TABLE_NOT_FOUND', `no parameter table named "${name}" is loaded`);
    return served;
  }

  #info({ table, entry }: Served): ParamsTableInfo {
    const h = table.header;
    const tier = this.#placementOf(entry).tier;
    const residentBytes = DEVICE_TIERS.has(tier) ? table.residentBytes() : h.fileBytes;
    return { name: entry.name, version: this.#versionOf({ table, entry }), keys: table.keyCount, dim: h.dim, shards: h.shardCount, tier, bytes: h.fileBytes, source: entry.source, mapping: table.mapping, kernel: table.kernel, residentBytes };
  }

  /** A served table's version: its file's, plus the deltas applied to that file in place. */
  #versionOf({ table, entry }: Pick<Served, 'table' | 'entry'>): number {
    return entry.version + (table.overlayState()?.epoch ?? 0);
  }

  /** The placement an entry's file is in: the one its tier names, else the first. */
  #placementOf(entry: ManifestEntry): Placement {
    return (entry.tier !== undefined && this.#placements.find((p) => p.tier === entry.tier)) || this.#placements[0]!;
  }

  #pathOf(entry: ManifestEntry): string {
    return join(this.#placementOf(entry).dir, entry.file);
  }

  /** The manifest records a tier only for files outside the first directory (older manifests have none). */
  #tierField(placement: Placement): { tier?: string } {
    return placement === this.#placements[0] ? {} : { tier: placement.tier };
  }

  /**
   * The tier for a new table of `bytes`: the one asked for, or the first with room for it
   * beside what is there (the old version stays until the switch). PARAMS_NO_SPACE when none has.
   */
  async #choosePlacement(bytes: number, tier: string | undefined): Promise<Placement> {
    const candidates = tier === undefined ? this.#placements : this.#placements.filter((p) => p.tier === tier);
    const free: string[] = [];
    for (const placement of candidates) {
      await mkdir(placement.dir, { recursive: true });
      const { fits, available } = await this.#room(placement, bytes);
      if (fits) return placement;
      free.push(`${placement.tier} has ${formatMiB(available)} free`);
    }
    throw new ParamsError('PARAMS_NO_SPACE', `the table is ${formatMiB(bytes)} and no parameter tier has room for it (${free.join(', ')})`);
  }

  /** The free bytes of `placement`'s file system, and whether `bytes` more fit there beside the reserve. */
  async #room(placement: Placement, bytes: number): Promise<{ fits: boolean; available: number }> {
    const fs = await statfs(placement.dir);
    const available = fs.bavail * fs.bsize;
    return { fits: bytes + TIER_RESERVE_BYTES <= available, available };
  }

  /** PARAMS_NO_SPACE unless `placement` has room for `bytes` more beside its reserve. */
  async #requireRoom(placement: Placement, bytes: number, name: string): Promise<void> {
    const { fits, available } = await this.#room(placement, bytes);
    if (!fits) {
      throw new ParamsError('PARAMS_NO_SPACE', `a delta of ${name} needs ${formatMiB(bytes)} on its ${placement.tier} tier beside the served version, which has ${formatMiB(available)} free; the served version is unchanged`);
    }
  }

  /** The lookup threads a table of this entry is served on, if any (started on first need). */
  #poolFor(entry: ManifestEntry): LookupPool | undefined {
    const onDevice = DEVICE_TIERS.has(this.#placementOf(entry).tier);
    if (this.#lookupThreads === 0 && !onDevice) return undefined;
    this.#pool ??= new LookupPool(Math.max(1, this.#lookupThreads));
    return this.#pool;
  }

  async #switchTo(name: string, entry: ManifestEntry, options: { verifyValues: boolean }): Promise<ParamsTableInfo> {
    const path = this.#pathOf(entry);
    let table: ServedTable;
    try {
      table = ServedTable.open(path, this.#mapper, options);
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    const pool = this.#poolFor(entry);
    if (pool) {
      try {
        await pool.open(path);
      } catch (err) {
        await rm(path, { force: true });
        throw err;
      }
    }
    const previous = this.#tables.get(name);
    const unchecked = this.#verifying.get(name);
    if (unchecked) {
      // A recovered version not yet checked is replaced without ever answering.
      this.#verifying.delete(name);
      unchecked.table.close();
    }
    const served: Served = { table, entry, pooled: pool !== undefined };
    this.#tables.set(name, served); // the switch: one reference
    if (previous) {
      // Lookups on this thread are synchronous, so none is still in the old version; the
      // threads drop theirs after the lookups queued before. Its mappings go at once.
      this.#pool?.close(previous.table.path);
      previous.table.close();
    }
    // Tables still being checked after a recovery stay listed.
    await this.#manifest.write([...this.#tables.values(), ...[...this.#verifying.values()].filter((v) => v.entry.name !== name)].map((s) => s.entry));
    if (previous && this.#pathOf(previous.entry) !== path) {
      await rm(this.#pathOf(previous.entry), { force: true });
      await rm(this.#pathOf(previous.entry) + OVERLAY_SUFFIX, { force: true });
    }
    this.#logger.info({ table: name, version: entry.version, keys: table.keyCount, source: entry.source }, 'parameter table switched to a new version');
    return this.#info(served);
  }

  async #nextVersion(name: string, dir: string): Promise<{ version: number; file: string; temp: string }> {
    await this.#ensureDir(); // `dir` itself exists: chosen by #choosePlacement, or holding the current version
    const version = (this.#versions.get(name) ?? 0) + 1;
    this.#versions.set(name, version);
    const file = `${name}.v${version}.params`;
    return { version, file, temp: join(dir, `${TEMP_PREFIX}${file}-${randomBytes(4).toString('hex')}`) };
  }

  #ensureDir(): Promise<void> {
    this.#ready ??= mkdir(this.#dir, { recursive: true }).then(() => undefined);
    return this.#ready;
  }

  #serialised<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => undefined);
    this.#queues.set(name, settled);
    void settled.then(() => {
      if (this.#queues.get(name) === settled) this.#queues.delete(name);
    });
    return next;
  }

  /** Removes temp files from interrupted loads and table versions the manifest no longer lists, on every tier. */
  async #removeOrphans(entries: readonly ManifestEntry[]): Promise<void> {
    const listed = new Set(entries.map((e) => this.#pathOf(e)));
    let removed = 0;
    for (const { dir } of this.#placements) {
      let files: string[];
      try {
        files = await readdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      let here = 0;
      for (const file of files) {
        const tableFile = file.endsWith(OVERLAY_SUFFIX) ? file.slice(0, -OVERLAY_SUFFIX.length) : file; // an overlay goes with its table file
        if (file === MANIFEST_FILE || listed.has(join(dir, tableFile))) continue;
        if (!file.startsWith(TEMP_PREFIX) && !TABLE_FILE.test(tableFile)) continue;
        await rm(join(dir, file), { force: true });
        here++;
      }
      if (here > 0) await syncDir(dir);
      removed += here;
    }
    if (removed > 0) this.#logger.info({ removed }, 'removed leftover parameter table files');
  }
}

function formatMiB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Keys in a raw batch; PARAMS_BAD_KEYS or PARAMS_BATCH_TOO_LARGE when it cannot be one. */
function batchSize(keys: Uint8Array | BigUint64Array): number {
  const bytes = keys.byteLength;
  if (bytes % 8 !== 0) throw new ParamsError('PARAMS_BAD_KEYS', `the body is ${bytes} bytes, not a multiple of 8 (one little-endian uint64 per key)`);
  const n = bytes / 8;
  if (n > MAX_BATCH_KEYS) throw new ParamsError('PARAMS_BATCH_TOO_LARGE', `${n} keys in one request; at most ${MAX_BATCH_KEYS}`);
  return n;
}

/** The keys as uint32 halves; typed-array views need 4-byte alignment, so a body at an odd offset is copied once. */
function keyWords(keys: Uint8Array | BigUint64Array, n: number): Uint32Array {
  if (keys.byteOffset % 4 === 0) return new Uint32Array(keys.buffer, keys.byteOffset, n * 2);
  return new Uint32Array(new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength).slice().buffer);
}

function checkName(name: string): void {
  if (!TABLE_NAME.test(name)) throw new ParamsError('PARAMS_BAD_INPUT', `table name "${name}" must be 1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit`);
}

const UINT64_MAX = 2n ** 64n - 1n;

/** A key as the JSON routes take it: a decimal string of a uint64. */
export function parseKey(text: string): bigint {
  if (typeof text !== 'string' || !/^[0-9]{1,20}$/.test(text)) throw new ParamsError('PARAMS_BAD_KEYS', `key ${JSON.stringify(text)} is not a decimal uint64`);
  const key = BigInt(text);
  if (key > UINT64_MAX) throw new ParamsError('PARAMS_BAD_KEYS', `key ${text} is above 2^64 - 1`);
  return key;
}
