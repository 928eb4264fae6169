import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { KeyLock } from '../async/index.js';
import { makeFolders, TEMP_PREFIX } from '../durable/index.js';
import type { OpenStoreOptions } from '../store/index.js';
import { counter, silentLogger, type Logger } from '../telemetry/index.js';
import { ParamsError } from './params-error.js';
import { mgetAnswerBytes, ServedTable } from './served-table.js';
import { TableManifest, type ManifestEntry } from './table-manifest.js';
import { defaultTableMapper, type TableMapper } from './table-mapper.js';
import { openTableSource } from './table-source.js';
import { AnswerBuffers, type AnswerLease } from './answer-buffers.js';
import { LookupPool } from './lookup-pool.js';
import { TablePlacements } from './table-placements.js';
import { batchSize, checkName, keyWords, MAX_BATCH_KEYS, parseKey } from './request-checks.js';
import type { LoadOptions, ParamsServiceConfig, ParamsTableInfo, RecoverOptions, RecoveryReport, Served } from './params-service-types.js';
import { OVERLAY_SUFFIX } from './overlay-format.js';
import { TableDeltas } from './table-deltas.js';
import { checkStampOf, unchangedSince } from './check-stamp.js';
import { ParamsWireServer, type ParamsWireAddress } from './wire-server.js';

const verificationFailures = counter('strata_params_values_check_failures_total', 'Recovered parameter tables whose values failed their checksum (not served)');

/** Tiers whose pages may have to come from a device: their lookups never run on the event loop. */
const DEVICE_TIERS = new Set(['nvme']);

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
  readonly #placements: TablePlacements;
  readonly #logger: Logger;
  readonly #store: OpenStoreOptions;
  readonly #mapper: TableMapper;
  readonly #manifest: TableManifest;
  readonly #tables = new Map<string, Served>();
  /** Recovered tables whose values are still to be checked: not served yet (see recover). */
  readonly #verifying = new Map<string, Served>();
  #verified: Promise<void> = Promise.resolve();
  readonly #failedVerification: Array<{ name: string; message: string }> = [];
  /**
   * Manifest entries whose tables failed recovery or their values check: not served, but kept
   * in the manifest with their files (for a look at what went wrong, and to be reported again
   * at the next start) until the name is loaded again (#switchTo drops it) or unloaded. A name
   * is never here and in #tables at once.
   */
  readonly #unserved = new Map<string, ManifestEntry>();
  /** Highest version ever used per name, so a version number is never reused. */
  readonly #versions = new Map<string, number>();
  /** Loads and deltas of one name run one at a time. */
  readonly #turns = new KeyLock();
  readonly #lookupThreads: number;
  /** Started after recovery (or at the first load), so booting threads never slow recovery down. */
  #pool: LookupPool | undefined;
  /** Recovered tables move to the lookup threads once this settles (recover's `threadsAfter`). */
  #threadsAfter: Promise<void> = Promise.resolve();
  #ready: Promise<void> | undefined;
  /** Deltas and compactions. */
  readonly #deltas: TableDeltas;
  /** Reused answers of mgetLease on this thread. */
  readonly #answers = new AnswerBuffers((bytes) => new ArrayBuffer(bytes));
  readonly #baseLogger: Logger | undefined;
  /** The binary protocol's server and where it listens, once listenWire was called. */
  #wire: { readonly server: ParamsWireServer; readonly address: ParamsWireAddress } | undefined;

  constructor(config: ParamsServiceConfig) {
    this.#dir = config.dir;
    this.#logger = (config.logger ?? silentLogger()).child({ component: 'params' });
    this.#baseLogger = config.logger;
    this.#placements = new TablePlacements([{ dir: config.dir, tier: config.tier ?? 'pmem' }, ...(config.overflow ? [config.overflow] : [])], this.#logger);
    this.#store = config.store ?? {};
    this.#mapper = config.mapper ?? defaultTableMapper();
    this.#manifest = new TableManifest(config.dir);
    this.#lookupThreads = config.lookupThreads ?? 0;
    this.#deltas = new TableDeltas({
      placements: this.#placements,
      mapper: this.#mapper,
      logger: this.#logger,
      served: (name) => this.#served(name),
      current: (name) => this.#tables.get(name),
      serialised: (name, work) => this.#serialised(name, work),
      switchTo: (name, entry, options) => this.#switchTo(name, entry, options),
      nextVersion: (name, dir) => this.#nextVersion(name, dir),
      poolFor: (entry) => this.#poolFor(entry),
      info: (served) => this.#info(served),
      noteVersion: (name, served) => this.#versions.set(name, Math.max(this.#versionOf(served), this.#versions.get(name) ?? 0)),
    });
  }

  /**
   * Serves again every table the manifest lists, validating header and index checksum
   * but not reading the values (they are mapped, not loaded). A table that fails is
   * logged, left out and reported; the others are served. Leftover temp files and
   * versions no longer listed are removed afterwards. With lookup threads, the tables move
   * to them once `options.threadsAfter` settles (at once without it).
   */
  async recover(options: RecoverOptions = {}): Promise<RecoveryReport> {
    const started = performance.now();
    if (options.threadsAfter) this.#threadsAfter = Promise.resolve(options.threadsAfter).then(() => undefined, () => undefined);
    await this.#ensureDir();
    const entries = await this.#manifest.read();
    const failed: Array<{ name: string; message: string }> = [];
    const opened: Served[] = [];
    const unchanged: Served[] = [];
    for (const entry of entries) {
      this.#versions.set(entry.name, Math.max(entry.version, this.#versions.get(entry.name) ?? 0));
      try {
        const path = this.#placements.pathOf(entry);
        const stamp = await checkStampOf(path);
        // With lookup threads the recovered table is answered from their own mappings once they
        // have it: this one is not populated, which takes its page-table fill off the recovery.
        // Read whole and found intact in this boot, and the very same file since: neither its
        // index nor its values are read again (check-stamp.ts).
        const alreadyChecked = unchangedSince(entry.checked, stamp);
        const table = ServedTable.open(path, this.#mapper, { populate: this.#lookupThreads === 0, alreadyChecked });
        const served: Served = { table, entry, pooled: false };
        (alreadyChecked ? unchanged : opened).push(served);
        this.#versions.set(entry.name, Math.max(this.#versionOf(served), this.#versions.get(entry.name) ?? 0));
        if (table.overlay?.rolledBack) this.#logger.warn({ table: entry.name, records: table.overlay.rolledBack }, 'undid an in-place delta a crash cut short');
      } catch (err) {
        this.#unserved.set(entry.name, entry);
        failed.push({ name: entry.name, message: (err as Error).message });
        this.#logger.error({ err, table: entry.name }, 'parameter table failed validation at recovery; not served until reloaded');
      }
    }
    for (const served of unchanged) this.#serve(served);
    // The other tables' values are checked before they answer (it reads every value: the
    // recovery itself reads only the index): one table at a time, on the addon's threads,
    // right after recovery. Until then a lookup answers 503 PARAMS_TABLE_VERIFYING; a table
    // that fails is not served and is reported (`failedVerification`).
    for (const served of opened) this.#verifying.set(served.entry.name, served);
    const ms = performance.now() - started;
    // With no table there is nothing to tell an operator: a `strata mount` that then fails
    // (a missing bucket, a busy mount point) answers with its one line of error only.
    const level = opened.length + unchanged.length > 0 || failed.length > 0 ? 'info' : 'debug';
    this.#logger[level]({ tables: opened.length + unchanged.length, checking: opened.length, failed: failed.length, ms }, 'parameter tables recovered');
    this.#verified = this.#verifyRecovered(opened);
    await this.#placements.removeOrphans(entries);
    return { tables: opened.length + unchanged.length, failed, ms };
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
        const message = `${this.#placements.pathOf(served.entry)}: values checksum mismatch after restart`;
        this.#failedVerification.push({ name, message });
        this.#unserved.set(name, served.entry);
        verificationFailures.inc();
        this.#logger.error({ table: name, version: served.entry.version }, 'parameter table values failed their checksum after restart; not served until reloaded');
        served.table.close();
        continue;
      }
      this.#serve(served);
      await this.#stampChecked(served);
    }
  }

  /** A recovered table whose values are known whole: answers lookups from here on. */
  #serve(served: Served): void {
    const { name } = served.entry;
    this.#tables.set(name, served);
    this.#startPooled(served);
    if (served.table.overlay?.wantsCompaction()) this.#deltas.compactInBackground(name);
  }

  /**
   * Records in the manifest that a recovered table's values were just read and found whole,
   * so that the next recovery in this boot need not read them (check-stamp.ts). A failure
   * costs only that: the next recovery reads them again.
   */
  async #stampChecked(served: Served): Promise<void> {
    const { name } = served.entry;
    const checked = await checkStampOf(served.table.path);
    if (!checked) return;
    await this.#serialised(name, async () => {
      const current = this.#tables.get(name);
      if (current?.table !== served.table) return; // replaced or unloaded meanwhile
      this.#tables.set(name, { ...current, entry: { ...current.entry, checked } });
      await this.#writeManifest();
    }).catch((err: unknown) => this.#logger.warn({ err, table: name }, 'could not record that a recovered table was checked; the next recovery checks it again'));
  }

  /** Removes a version's table file and its in-place deltas (overlay file). */
  async #removeFiles(entry: ManifestEntry): Promise<void> {
    await rm(this.#placements.pathOf(entry), { force: true });
    await rm(this.#placements.pathOf(entry) + OVERLAY_SUFFIX, { force: true });
  }

  /** Replaces the manifest with the served tables, those still being checked after a recovery and those that failed. */
  #writeManifest(): Promise<void> {
    return this.#manifest.write([...[...this.#tables.values(), ...this.#verifying.values()].map((s) => s.entry), ...this.#unserved.values()]);
  }

  #startPooled(served: Served): void {
    const current = () => this.#tables.get(served.entry.name) === served;
    // A table on a device tier at once: its lookups may wait on the disk, which the event loop must not.
    const after = DEVICE_TIERS.has(this.#placements.placementOf(served.entry).tier) ? Promise.resolve() : this.#threadsAfter;
    void after.then(() => {
      if (!current()) return; // replaced, unloaded or closed meanwhile
      return this.#poolFor(served.entry)
        ?.open(served.table.path)
        .then(
          () => {
            if (current()) this.#tables.set(served.entry.name, { ...served, pooled: true });
          },
          (err: unknown) => this.#logger.warn({ err, table: served.entry.name }, 'lookup threads could not map a recovered table; serving it on the main thread'),
        );
    });
  }

  /**
   * Loads (or replaces) table `name` from `source` (a local path, file:// or s3:// URL):
   * copies it into the directory as a new version, validates it fully (header, index
   * and values checksums) and switches the name to it. Answers the new table's info.
   */
  async load(name: string, source: string, options: LoadOptions = {}): Promise<ParamsTableInfo> {
    checkName(name);
    if (options.tier !== undefined && !this.#placements.tiers.includes(options.tier)) {
      throw new ParamsError('PARAMS_BAD_INPUT', `tier "${options.tier}" holds no parameter tables here; configured: ${this.#placements.tiers.join(', ')}`);
    }
    return this.#serialised(name, async () => {
      const found = await openTableSource(source, this.#store);
      const placement = await this.#placements.choose(found.size, options.tier);
      const { version, file, temp } = await this.#nextVersion(name, placement.dir);
      try {
        await found.copyTo(temp);
        await rename(temp, join(placement.dir, file));
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      return this.#switchTo(name, { name, version, file, source, ...this.#placements.tierField(placement) }, { verifyValues: true });
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
    return this.#serialised(name, () => this.#deltas.apply(name, body));
  }

  /**
   * Stops serving `name` and removes its file (after lookups already queued on the lookup
   * threads); for a table that failed its checks at recovery, drops it from the manifest and
   * removes its file. PARAMS_TABLE_NOT_FOUND when it is neither. Runs after the name's
   * pending loads and deltas.
   */
  unload(name: string): Promise<void> {
    return this.#serialised(name, async () => {
      const failed = this.#unserved.get(name);
      if (failed) {
        // A table that failed recovery or its check: unloading drops it from the manifest, and its files.
        this.#unserved.delete(name);
        await this.#writeManifest();
        await this.#removeFiles(failed);
        this.#logger.info({ table: name, version: failed.version }, 'parameter table that failed its checks unloaded');
        return;
      }
      const served = this.#served(name);
      this.#tables.delete(name);
      this.#pool?.close(served.table.path);
      served.table.close();
      await this.#writeManifest();
      await this.#removeFiles(served.entry);
      this.#logger.info({ table: name, version: served.entry.version }, 'parameter table unloaded');
    });
  }

  /** Names the manifest lists whose tables failed recovery or their values check (not served; `unload` drops them). */
  unservedNames(): string[] {
    return [...this.#unserved.keys()].sort();
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

  /**
   * Answers mget over the binary protocol too (wire-server.ts, docs/PARAMS.md "Binary
   * protocol"), at `address`, with the answers of mgetLease. With `token`, a connection's first
   * frame must be AUTH with it. Answers the bound address; close() stops it first.
   */
  async listenWire(address: ParamsWireAddress, token?: string): Promise<ParamsWireAddress> {
    if (this.#wire) throw new ParamsError('INTERNAL', 'the params binary protocol already listens');
    const server = new ParamsWireServer({ mget: (name, keys) => this.mgetLease(name, keys), token, ...(this.#baseLogger ? { logger: this.#baseLogger } : {}) });
    const bound = await server.listen(address);
    this.#wire = { server, address: bound };
    return bound;
  }

  /** Where the binary protocol listens (the port bound when 0 was asked for); undefined when it does not. */
  get wireAddress(): ParamsWireAddress | undefined {
    return this.#wire?.address;
  }

  /** Stops the binary protocol, serving and the lookup threads, and releases the tables' mappings. */
  async close(): Promise<void> {
    const wire = this.#wire;
    this.#wire = undefined;
    // Its connections go first: no lookup of theirs may start on a table being closed.
    await wire?.server.close();
    await this.#deltas.close();
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
    const tier = this.#placements.placementOf(entry).tier;
    const residentBytes = DEVICE_TIERS.has(tier) ? table.residentBytes() : h.fileBytes;
    return { name: entry.name, version: this.#versionOf({ table, entry }), keys: table.keyCount, dim: h.dim, shards: h.shardCount, tier, bytes: h.fileBytes, source: entry.source, mapping: table.mapping, kernel: table.kernel, residentBytes };
  }

  /** A served table's version: its file's, plus the deltas applied to that file in place. */
  #versionOf({ table, entry }: Pick<Served, 'table' | 'entry'>): number {
    return entry.version + (table.overlayState()?.epoch ?? 0);
  }

  /** The lookup threads a table of this entry is served on, if any (started on first need). */
  #poolFor(entry: ManifestEntry): LookupPool | undefined {
    const onDevice = DEVICE_TIERS.has(this.#placements.placementOf(entry).tier);
    if (this.#lookupThreads === 0 && !onDevice) return undefined;
    this.#pool ??= new LookupPool(Math.max(1, this.#lookupThreads));
    return this.#pool;
  }

  async #switchTo(name: string, given: ManifestEntry, options: { verifyValues: boolean }): Promise<ParamsTableInfo> {
    const { checked: _previousFile, ...unstamped } = given; // a delta's entry is its base's, spread
    const path = this.#placements.pathOf(unstamped);
    let table: ServedTable;
    try {
      table = ServedTable.open(path, this.#mapper, options);
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    // Stamped only when its values were read just now; a delta's new version is read at its first recovery.
    const checked = options.verifyValues ? await checkStampOf(path) : undefined;
    const entry: ManifestEntry = checked ? { ...unstamped, checked } : unstamped;
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
    const failed = this.#unserved.get(name);
    this.#unserved.delete(name); // a version that failed its checks is replaced
    if (previous) {
      // Lookups on this thread are synchronous, so none is still in the old version; the
      // threads drop theirs after the lookups queued before. Its mappings go at once.
      this.#pool?.close(previous.table.path);
      previous.table.close();
    }
    await this.#writeManifest(); // tables still being checked after a recovery stay listed
    for (const old of [previous?.entry, failed]) if (old && this.#placements.pathOf(old) !== path) await this.#removeFiles(old);
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
    this.#ready ??= makeFolders(this.#dir);
    return this.#ready;
  }

  /** Runs `work` in `name`'s turn: loads, deltas, compaction switches and unloads of one name run one at a time. */
  async #serialised<T>(name: string, work: () => Promise<T>): Promise<T> {
    return (await this.#turns.with([name], work)) as T;
  }


}

