import { readdirSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { makeFoldersSync, writeDurably, writeFileDurably } from '../durable/index.js';
import type { Logger } from '../telemetry/index.js';
import { hashId } from './block-key.js';

/**
 * Whole-object files of the pmem tier, in a folder beside the pool (`<pool>.whole/`, so on the
 * same tmpfs or DAX file system): one plain file per object version with its bytes at their own
 * offsets, which the native FUSE path hands to the kernel (passthrough), and a manifest beside
 * it. A whole file stands in for pool slots: the manifest names the slots whose memory the pool
 * gave back for it (pmem-tier.ts), so pool and files together never hold more than the tier's
 * capacity.
 *
 * Files, for object version id `objectId` (block-key.ts) hashed to `H` (SHA-256, hex):
 *   H.data   the object's bytes
 *   H.json   the manifest: objectId, size, blockSize, each block's CRC-32C, the slots
 * Making one: the data file is written durably (temporary name, fsync, rename, folder fsync),
 * then the manifest likewise; the manifest's rename commits it. Removing one: the manifest goes
 * first (that uncommits it), then the data file. At open, a data file without its manifest, a
 * manifest without its data file (or of another size), and temporary files are removed.
 */

/** One whole-object file, as its manifest records it. */
export interface PmemWhole {
  readonly objectId: string;
  readonly size: number;
  readonly blockSize: number;
  /** The CRC-32C of each block (the last one short), as the blocks had in the pool. */
  readonly checksums: readonly number[];
  /** The pool slots this file stands in for, one per block: off the free list while it exists. */
  readonly slots: readonly number[];
}

const DATA_SUFFIX = '.data';
const MANIFEST_SUFFIX = '.json';

export class PmemWholeFiles {
  readonly #dir: string;
  #tmpSeq = 0;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Opens (creating) the folder `dir` and answers the committed whole files of a pool of
   * `slotCount` slots of `blockSize` bytes. Anything else in the folder is removed: leftovers
   * of a crash, files of a pool made with another block size, manifests naming a slot out of
   * range or a slot another manifest names (the later one goes). `clear` empties it first
   * (the pool was re-initialised).
   */
  static open(dir: string, blockSize: number, slotCount: number, clear: boolean, logger: Logger): { files: PmemWholeFiles; wholes: PmemWhole[] } {
    if (clear) rmSync(dir, { recursive: true, force: true });
    makeFoldersSync(dir);
    const files = new PmemWholeFiles(dir);
    const names = new Set(readdirSync(dir));
    const wholes: PmemWhole[] = [];
    const claimed = new Set<number>();
    const keep = new Set<string>();
    for (const name of names) {
      if (!name.endsWith(MANIFEST_SUFFIX)) continue;
      const hash = name.slice(0, -MANIFEST_SUFFIX.length);
      const whole = readManifest(join(dir, name), blockSize, slotCount);
      const dataName = `${hash}${DATA_SUFFIX}`;
      let valid = whole !== undefined && hashId(whole.objectId) === hash && names.has(dataName) && whole.slots.every((slot) => !claimed.has(slot));
      if (valid) {
        try {
          valid = statSync(join(dir, dataName)).size === whole!.size;
        } catch {
          valid = false;
        }
      }
      if (!valid) continue;
      for (const slot of whole!.slots) claimed.add(slot);
      wholes.push(whole!);
      keep.add(name).add(dataName);
    }
    let removed = 0;
    for (const name of names) {
      if (keep.has(name)) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      removed += 1;
    }
    if (removed > 0) logger.info({ dir, removed }, 'pmem tier: removed whole-file leftovers');
    return { files, wholes };
  }

  /** The data file of `objectId` (whether or not it exists). */
  dataPath(objectId: string): string {
    return join(this.#dir, `${hashId(objectId)}${DATA_SUFFIX}`);
  }

  /**
   * Makes `whole`'s files: `fill` writes the object's bytes into the handle at their offsets;
   * then the data file and the manifest are made durable in that order. On failure nothing of
   * it is left and the error is rethrown.
   */
  async write(whole: PmemWhole, fill: (handle: FileHandle) => Promise<void>): Promise<void> {
    const hash = hashId(whole.objectId);
    const data = join(this.#dir, `${hash}${DATA_SUFFIX}`);
    try {
      await writeDurably(data, fill, { tempName: `.tmp-${hash}.${process.pid}.${this.#tmpSeq++}` });
      await writeFileDurably(join(this.#dir, `${hash}${MANIFEST_SUFFIX}`), JSON.stringify(whole));
    } catch (err) {
      this.remove(whole.objectId);
      throw err;
    }
  }

  /**
   * Uncommits `objectId`'s whole file (its manifest removed at once, synchronously: the slots it
   * named may be reused as soon as this returns) and removes its data. Opens the kernel holds
   * keep reading the data until they close. Throws only for an I/O error other than a missing file.
   */
  remove(objectId: string): void {
    const hash = hashId(objectId);
    try {
      unlinkSync(join(this.#dir, `${hash}${MANIFEST_SUFFIX}`));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    rmSync(join(this.#dir, `${hash}${DATA_SUFFIX}`), { force: true });
  }
}


/** A manifest that is well formed for this pool; undefined otherwise. */
function readManifest(path: string, blockSize: number, slotCount: number): PmemWhole | undefined {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { objectId, size, blockSize: fileBlockSize, checksums, slots } = value as Record<string, unknown>;
  if (typeof objectId !== 'string' || !Number.isSafeInteger(size) || (size as number) <= 0 || fileBlockSize !== blockSize) return undefined;
  const blocks = Math.ceil((size as number) / blockSize);
  const isUint32 = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
  if (!Array.isArray(checksums) || checksums.length !== blocks || !checksums.every(isUint32)) return undefined;
  if (!Array.isArray(slots) || slots.length !== blocks || !slots.every((slot) => isUint32(slot) && slot < slotCount) || new Set(slots).size !== blocks) return undefined;
  return { objectId, size: size as number, blockSize, checksums: checksums as number[], slots: slots as number[] };
}
