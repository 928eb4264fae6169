import { readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { makeFolders, syncDir, TEMP_PREFIX } from '../durable/index.js';
import type { Logger } from '../telemetry/index.js';
import { OVERLAY_SUFFIX } from './overlay-format.js';
import { ParamsError } from './params-error.js';
import { MANIFEST_FILE, type ManifestEntry } from './table-manifest.js';

/** Kept free on a tier when choosing it: the manifest, temp files and other users of a shared tmpfs. */
const TIER_RESERVE_BYTES = 16 * 1024 * 1024;
const TABLE_FILE = /^(.+)\.v(\d+)\.params$/;

/** A directory tables may be placed in. */
export interface Placement {
  readonly dir: string;
  readonly tier: string;
}

/**
 * The directories parameter tables live in, in order of preference (the service's `dir`
 * first, then the overflow tier): which one a new file goes to, where a manifest entry's
 * file is, room checks, and the removal of files no manifest entry names.
 */
export class TablePlacements {
  readonly #all: readonly Placement[];
  readonly #logger: Logger;

  constructor(all: readonly Placement[], logger: Logger) {
    this.#all = all;
    this.#logger = logger;
  }

  /** The tiers, in order of preference. */
  get tiers(): string[] {
    return this.#all.map((p) => p.tier);
  }

  /** The placement an entry's file is in: the one its tier names, else the first. */
  placementOf(entry: ManifestEntry): Placement {
    return (entry.tier !== undefined && this.#all.find((p) => p.tier === entry.tier)) || this.#all[0]!;
  }

  pathOf(entry: ManifestEntry): string {
    return join(this.placementOf(entry).dir, entry.file);
  }

  /** The manifest records a tier only for files outside the first directory (older manifests have none). */
  tierField(placement: Placement): { tier?: string } {
    return placement === this.#all[0] ? {} : { tier: placement.tier };
  }

  /**
   * The tier for a new table of `bytes`: the one asked for, or the first with room for it
   * beside what is there (the old version stays until the switch). PARAMS_NO_SPACE when none has.
   */
  async choose(bytes: number, tier: string | undefined): Promise<Placement> {
    const candidates = tier === undefined ? this.#all : this.#all.filter((p) => p.tier === tier);
    const free: string[] = [];
    for (const placement of candidates) {
      await makeFolders(placement.dir);
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
  async requireRoom(placement: Placement, bytes: number, name: string): Promise<void> {
    const { fits, available } = await this.#room(placement, bytes);
    if (!fits) {
      throw new ParamsError('PARAMS_NO_SPACE', `a delta of ${name} needs ${formatMiB(bytes)} on its ${placement.tier} tier beside the served version, which has ${formatMiB(available)} free; the served version is unchanged`);
    }
  }

  /** Removes temp files from interrupted loads and table versions the manifest no longer lists, on every tier. */
  async removeOrphans(entries: readonly ManifestEntry[]): Promise<void> {
    const listed = new Set(entries.map((e) => this.pathOf(e)));
    let removed = 0;
    for (const { dir } of this.#all) {
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
