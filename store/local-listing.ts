import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ioError, isMissing, isReservedName, type LocalLayout } from './local-layout.js';

/** A name read from a directory, with the key it sorts by (folders end in `/`, as their keys do). */
export interface Candidate {
  readonly key: string;
  readonly sortKey: Buffer;
  readonly folder: boolean;
}

/**
 * One folder level as S3 groups it with delimiter `/`: the folder's own marker, files as
 * objects, subfolders as prefixes, sorted, the first `limit` after `after`.
 */
export async function levelCandidates(layout: LocalLayout, prefix: string, after: Buffer | undefined, limit: number): Promise<Candidate[]> {
  const cut = prefix.lastIndexOf('/') + 1;
  const base = prefix.slice(0, cut);
  const namePrefix = prefix.slice(cut);
  const found = await folderEntries(layout, base, namePrefix);
  if (found === undefined) return [];
  if (base !== '' && namePrefix === '') found.push(candidate(base, false));
  return sortCandidates(found)
    .filter((c) => after === undefined || Buffer.compare(c.sortKey, after) > 0)
    .slice(0, limit);
}

/**
 * Files under `prefix` at any depth, in key order, the first `limit` after `after`. The
 * walk visits folders in key order and skips those whose keys all sort before `after`,
 * so a page costs one readdir per level on its path, not a walk of the whole tree.
 */
export async function treeCandidates(layout: LocalLayout, prefix: string, after: Buffer | undefined, limit: number): Promise<Candidate[]> {
  const cut = prefix.lastIndexOf('/') + 1;
  const out: Candidate[] = [];
  const walk = async (base: string, namePrefix: string): Promise<void> => {
    const entries = await folderEntries(layout, base, namePrefix);
    if (entries === undefined) return;
    for (const entry of sortCandidates(entries)) {
      if (out.length >= limit) return;
      if (entry.folder) {
        // Every key below starts with the folder's key: all of them sort before `after`
        // when the folder's key does and is not a prefix of `after`.
        const before = after !== undefined && Buffer.compare(entry.sortKey, after) < 0 && !startsWith(after, entry.sortKey);
        if (!before) await walk(entry.key, '');
      } else if (after === undefined || Buffer.compare(entry.sortKey, after) > 0) {
        out.push(entry);
      }
    }
  };
  await walk(prefix.slice(0, cut), prefix.slice(cut));
  return out;
}

/** The visible entries of the folder `base` whose names start with `namePrefix`; undefined when there is no such folder. */
export async function folderEntries(layout: LocalLayout, base: string, namePrefix: string): Promise<Candidate[] | undefined> {
  const path = base === '' ? layout.root : layout.readPath(base);
  if (path === undefined) return undefined;
  let dirents: Dirent[];
  try {
    dirents = await readdir(path, { withFileTypes: true });
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw ioError(err, base);
  }
  const out: Candidate[] = [];
  for (const dirent of dirents) {
    const name = dirent.name;
    if (!name.startsWith(namePrefix) || isReservedName(name, base === '')) continue;
    let folder = dirent.isDirectory();
    if (dirent.isSymbolicLink()) {
      // A link to a folder is that folder; any other link (dangling ones too) is a link object.
      const target = await stat(join(path, name)).catch(() => undefined);
      folder = target?.isDirectory() ?? false;
    } else if (!folder && !dirent.isFile()) {
      continue; // sockets, fifos, devices are not objects
    }
    out.push(candidate(folder ? `${base}${name}/` : `${base}${name}`, folder));
  }
  return out;
}

function candidate(key: string, folder: boolean): Candidate {
  return { key, folder, sortKey: Buffer.from(key) };
}

/** UTF-8 byte order, as S3 lists keys. */
function sortCandidates(list: Candidate[]): Candidate[] {
  return list.sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
}

function startsWith(whole: Buffer, start: Buffer): boolean {
  return whole.length >= start.length && whole.subarray(0, start.length).equals(start);
}
