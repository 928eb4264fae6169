import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeFolders } from '../durable/index.js';

/** What a running daemon leaves for `strata unmount`: who serves a mount point. */
export interface MountRecord {
  readonly mountPoint: string;
  readonly pid: number;
  readonly api: string;
}

/**
 * Where daemons record their mounts: STRATA_RUN_DIR, else /run/strata for root (the
 * runtime folder systemd and the FHS give services), else $XDG_RUNTIME_DIR/strata, else a
 * per-user folder in the temp dir. A record is removed when its daemon stops; one left by a
 * killed daemon names a dead pid, which `strata unmount` recognises.
 */
export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STRATA_RUN_DIR) return env.STRATA_RUN_DIR;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return '/run/strata';
  return env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'strata') : join(tmpdir(), `strata-${uid}`);
}

/** One file per mount point, named by a hash of its path (paths may exceed a file name's 255 bytes). */
function recordPath(mountPoint: string): string {
  return join(runDir(), `mount-${createHash('sha256').update(mountPoint).digest('hex').slice(0, 32)}.json`);
}

export async function writeMountRecord(record: MountRecord): Promise<void> {
  await makeFolders(runDir(), 0o755);
  await writeFile(recordPath(record.mountPoint), `${JSON.stringify(record)}\n`);
}

export async function readMountRecord(mountPoint: string): Promise<MountRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(recordPath(mountPoint), 'utf8')) as MountRecord;
    return record.mountPoint === mountPoint ? record : undefined;
  } catch {
    return undefined; // none, or unreadable: treated as no daemon known
  }
}

/** Removes the record, only if it is still this process's (a newer daemon may own the path now). */
export async function removeMountRecord(mountPoint: string, pid = process.pid): Promise<void> {
  const record = await readMountRecord(mountPoint);
  if (record?.pid === pid) await rm(recordPath(mountPoint), { force: true });
}
