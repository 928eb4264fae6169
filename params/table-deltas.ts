import { randomBytes } from 'node:crypto';
import { rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { TEMP_PREFIX } from '../durable/index.js';
import type { Logger } from '../telemetry/index.js';
import { carryOverDeltas } from './compaction-carry-over.js';
import { decodeDelta, type DeltaBody } from './delta-body.js';
import { lookupBinding } from './lookup-binding.js';
import type { LookupPool } from './lookup-pool.js';
import { createOverlay, overlayLayout, OVERLAY_SUFFIX } from './overlay-format.js';
import { ParamsError } from './params-error.js';
import type { ParamsTableInfo, Served } from './params-service-types.js';
import { startCompaction, type RunningCompaction } from './table-compactor.js';
import type { ManifestEntry } from './table-manifest.js';
import type { TableMapper } from './table-mapper.js';
import { TableOverlay } from './table-overlay.js';
import type { TablePlacements } from './table-placements.js';
import { writeRewritten } from './table-rewrite.js';

/** What TableDeltas needs of the service that owns the tables. */
export interface DeltaHost {
  readonly placements: TablePlacements;
  readonly mapper: TableMapper;
  readonly logger: Logger;
  /** The served version of `name`; PARAMS_TABLE_NOT_FOUND (or _VERIFYING) when there is none. */
  served(name: string): Served;
  /** The served version of `name`, if any. */
  current(name: string): Served | undefined;
  /** Runs `work` in `name`'s turn (one load, delta or switch of a name at a time). */
  serialised<T>(name: string, work: () => Promise<T>): Promise<T>;
  switchTo(name: string, entry: ManifestEntry, options: { verifyValues: boolean }): Promise<ParamsTableInfo>;
  nextVersion(name: string, dir: string): Promise<{ version: number; file: string; temp: string }>;
  poolFor(entry: ManifestEntry): LookupPool | undefined;
  info(served: Served): ParamsTableInfo;
  /** A delta went into `served` in place: its version number is used now. */
  noteVersion(name: string, served: Served): void;
}

/** A compaction of one table: its thread, and the switch to its result (see #startCompaction). */
interface Compaction {
  readonly running: RunningCompaction;
  switched(): Promise<ParamsTableInfo>;
}

/**
 * The delta path of the params service: a delta goes in place into the table's overlay
 * when it can, else into a compaction (overlay full) or a copy-on-write rewrite (no addon);
 * compactions fold the overlay into a new version in the background.
 */
export class TableDeltas {
  readonly #host: DeltaHost;
  /** Compactions in progress, by table name (one at a time per table). */
  readonly #compactions = new Map<string, Compaction>();
  /** Background compactions between the decision and their thread's start (a room check). */
  readonly #compactionsStarting = new Set<string>();

  constructor(host: DeltaHost) {
    this.#host = host;
  }

  /** Applies a delta body to `name`; the caller runs it in the table's turn (see ParamsService.applyDelta). */
  async apply(name: string, body: Buffer): Promise<ParamsTableInfo> {
    const current = this.#host.served(name);
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
      const now = this.#host.served(name);
      const again = await this.#applyInPlace(name, now, body, delta);
      if (again) return again;
      if (now.table.overlay) return (await this.#startCompaction(name, now, { body, delta })).switched();
      return this.#rewrite(name, now, delta);
    }
    if (current.table.overlay) return (await this.#startCompaction(name, current, { body, delta })).switched();
    return this.#rewrite(name, current, delta);
  }

  /** Cancels the compactions in progress (the service is closing). */
  async close(): Promise<void> {
    await Promise.all([...this.#compactions.values()].map((c) => c.running.cancel()));
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
      await this.#host.poolFor(current.entry)?.open(table.path);
    }
    const overlay = table.overlay!;
    if (!overlay.fits(changes)) return undefined;
    await overlay.apply(body, delta);
    this.#host.noteVersion(name, current);
    if (overlay.wantsCompaction()) this.compactInBackground(name);
    return this.#host.info(current);
  }

  /** The whole table rewritten with the delta (copy-on-write): without the addon, or for a table with no overlay yet and a delta larger than one. */
  async #rewrite(name: string, current: Served, delta: DeltaBody): Promise<ParamsTableInfo> {
    const { header } = current.table;
    const placement = this.#host.placements.placementOf(current.entry);
    // The new version is written beside the old one on the same tier: at most the old file plus the
    // upserts, and as much again for its values while the writer regroups them by shard.
    const grown = (await stat(this.#host.placements.pathOf(current.entry))).size + delta.records.length;
    await this.#host.placements.requireRoom(placement, grown + header.valuesBytes + delta.records.length, name);
    const { version, file, temp } = await this.#host.nextVersion(name, placement.dir);
    try {
      writeRewritten(current.table, delta, temp);
      await rename(temp, join(placement.dir, file));
    } catch (err) {
      await rm(temp, { force: true });
      const code = (err as { code?: string }).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw new ParamsError('PARAMS_NO_SPACE', `the ${placement.tier} tier filled up while the delta for ${name} was written; the served version is unchanged`, { cause: err });
      throw err;
    }
    const source = `${current.entry.source} + delta`;
    return this.#host.switchTo(name, { name, version, file, source, ...this.#host.placements.tierField(placement) }, { verifyValues: false });
  }

  /** Starts a background compaction of `name` unless one runs; its switch waits its turn behind deltas. */
  compactInBackground(name: string): void {
    if (this.#compactions.has(name) || this.#compactionsStarting.has(name)) return;
    const current = this.#host.current(name);
    if (!current) return;
    const started = performance.now();
    this.#compactionsStarting.add(name);
    void this.#startCompaction(name, current)
      .finally(() => this.#compactionsStarting.delete(name))
      .then((compaction) =>
        compaction.running.done.then(
          () => this.#host.serialised(name, () => compaction.switched()),
          (err: unknown) => {
            if (this.#compactions.get(name) === compaction) this.#compactions.delete(name);
            throw err;
          },
        ),
      )
      .then(
        (info) => this.#host.logger.info({ table: name, version: info.version, keys: info.keys, ms: performance.now() - started }, 'compacted the in-place deltas into a new version'),
        (err: unknown) => this.#host.logger.warn({ err, table: name }, 'compaction failed; the deltas stay in the overlay'),
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
    const placement = this.#host.placements.placementOf(current.entry);
    const path = this.#host.placements.pathOf(current.entry);
    // The new file is at most the old one plus the records; its values once more while the writer regroups them by shard.
    const added = records * (16 + 4 * current.table.dim) + (extra?.delta.records.length ?? 0);
    await this.#host.placements.requireRoom(placement, (await stat(path)).size + added + current.table.header.valuesBytes + added, name);
    const temp = join(placement.dir, `${TEMP_PREFIX}${name}.compact-${randomBytes(4).toString('hex')}`);
    const running = startCompaction({ basePath: path, ...(overlay ? { overlayPath: overlay.path } : {}), records, logCrc, ...(extra ? { extra: extra.body } : {}), temp });
    const finish = async (): Promise<ParamsTableInfo> => {
      if (this.#host.current(name)?.table !== current.table) {
        await rm(temp, { force: true });
        throw new ParamsError('INTERNAL', `table ${name} was replaced while its compaction ran; the compaction is dropped`);
      }
      const { version, file } = await this.#host.nextVersion(name, placement.dir);
      const target = join(placement.dir, file);
      await rename(temp, target);
      if (overlay) await carryOverDeltas(overlay, records, target, this.#host.mapper);
      return this.#host.switchTo(name, { ...current.entry, version, file, ...this.#host.placements.tierField(placement) }, { verifyValues: false });
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
}
