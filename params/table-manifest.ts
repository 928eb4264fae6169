import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurably } from '../durable/index.js';
import type { CheckStamp } from './check-stamp.js';

/** One served table as recorded for recovery. */
export interface ManifestEntry {
  readonly name: string;
  readonly version: number;
  /** File name inside the directory of its tier. */
  readonly file: string;
  /** The tier the file is on when it is not the service's first directory (`nvme`, normally). */
  readonly tier?: string;
  /** Where it was loaded from, for `GET /v1/params/tables` and the log. */
  readonly source: string;
  /**
   * The file as it was when it was last read whole and matched its index and values
   * checksums (check-stamp.ts): a recovery in the same boot that finds the file unchanged
   * serves it without reading it again. Absent for a version not read since it was written
   * (a delta's or a compaction's).
   */
  readonly checked?: CheckStamp;
}

export const MANIFEST_FILE = 'manifest.json';
const MANIFEST_FORMAT = 1;

/**
 * The list of served tables in `<dir>/manifest.json`, replaced atomically (temp, fsync,
 * rename). Written after a new version's file is complete and before the old file is
 * removed, so after a crash every listed file exists and is whole.
 */
export class TableManifest {
  readonly #path: string;
  #writing: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.#path = join(dir, MANIFEST_FILE);
  }

  /** The recorded entries; none when there is no manifest yet. A damaged manifest throws. */
  async read(): Promise<ManifestEntry[]> {
    let text: string;
    try {
      text = await readFile(this.#path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const parsed = JSON.parse(text) as { format?: number; tables?: ManifestEntry[] };
    return parsed.format === MANIFEST_FORMAT && Array.isArray(parsed.tables) ? parsed.tables : [];
  }

  /** Replaces the manifest with `entries`; writes run one at a time, in call order. */
  write(entries: readonly ManifestEntry[]): Promise<void> {
    const body = `${JSON.stringify({ format: MANIFEST_FORMAT, tables: entries }, null, 2)}\n`;
    const next = this.#writing.then(() => writeFileDurably(this.#path, body));
    this.#writing = next.catch(() => undefined);
    return next;
  }
}
