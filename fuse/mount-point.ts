import { execFile } from 'node:child_process';
import { readFile, readdir, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { StrataError } from '../errors/index.js';
import type { Logger } from '../telemetry/index.js';

const run = promisify(execFile);

export type MountPointErrorCode =
  | 'MOUNT_POINT_MISSING'
  | 'MOUNT_POINT_NOT_DIRECTORY'
  | 'MOUNT_POINT_NOT_EMPTY'
  | 'MOUNT_FAILED'
  | 'UNMOUNT_BUSY';

export class MountPointError extends StrataError<MountPointErrorCode> {}

/** errno names that mean "a FUSE daemon died and left its mount behind". */
const STALE_MOUNT_ERRORS = new Set(['ENOTCONN', 'ECONNABORTED', 'EIO']);

/**
 * Makes `mountPoint` ready for a new mount: an existing, empty directory. A stale
 * mount left by a crashed daemon ("Transport endpoint is not connected") is detached
 * first; a live mount of another process is refused.
 */
export async function prepareMountPoint(mountPoint: string, logger: Logger): Promise<void> {
  try {
    await statDirectory(mountPoint);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (!STALE_MOUNT_ERRORS.has(code)) throw err;
    logger.warn({ mountPoint, errno: code }, 'stale mount found (a daemon died without unmounting); detaching it');
    await fusermount(['-uz', mountPoint]).catch(() => undefined);
    await statDirectory(mountPoint);
  }
  if (await isMountPoint(mountPoint)) {
    throw new MountPointError('MOUNT_FAILED', `${mountPoint} is already a mount point; unmount it first (fusermount -u ${mountPoint})`);
  }
  const names = await readdir(mountPoint);
  if (names.length > 0) {
    throw new MountPointError('MOUNT_POINT_NOT_EMPTY', `mount point ${mountPoint} is not empty (${names.length} entries); use an empty folder`);
  }
}

async function statDirectory(mountPoint: string): Promise<void> {
  let info;
  try {
    info = await stat(mountPoint);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MountPointError('MOUNT_POINT_MISSING', `mount point ${mountPoint} does not exist; create it with mkdir -p ${mountPoint}`);
    }
    throw err;
  }
  if (!info.isDirectory()) throw new MountPointError('MOUNT_POINT_NOT_DIRECTORY', `mount point ${mountPoint} is not a folder`);
}

/** True when the kernel lists `path` as a mount point (field 5 of /proc/self/mountinfo). */
export async function isMountPoint(path: string): Promise<boolean> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  return table.split('\n').some((line) => unescapeMountPath(line.split(' ')[4] ?? '') === path);
}

/**
 * The file system type the kernel lists for a mount point (`fuse.strata` for a Strata
 * mount), or undefined when `path` is not one. The type follows the " - " separator.
 */
export async function mountedFsType(path: string): Promise<string | undefined> {
  return (await mountEntries()).filter((e) => e.mountPoint === path).pop()?.fsType;
}

/** One line of /proc/self/mountinfo: what is mounted where. */
export interface MountEntry {
  /** The folder of the mounted file system that appears here (`/` unless a bind mount of a subfolder). */
  readonly root: string;
  readonly mountPoint: string;
  /** Per-mount options (`ro` or `rw` first). */
  readonly options: readonly string[];
  readonly fsType: string;
}

/** The mounts this process sees, in mount order (a later entry on the same path covers an earlier one). */
export async function mountEntries(): Promise<MountEntry[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  return table.split('\n').flatMap((line) => {
    const fields = line.split(' ');
    // After the optional fields, " - " separates the file system type.
    const separator = fields.indexOf('-', 6);
    if (fields.length < 7 || separator < 0) return [];
    return [{ root: unescapeMountPath(fields[3]!), mountPoint: unescapeMountPath(fields[4]!), options: fields[5]!.split(','), fsType: fields[separator + 1] ?? 'unknown' }];
  });
}

/** mountinfo escapes space, tab, newline and backslash as octal `\ooo`. */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export interface UnmountPolicy {
  /** Tries of a clean unmount while the mount point is busy. */
  readonly attempts: number;
  /** Pause between tries: long enough for a shell to `cd` away or a job to close its files. */
  readonly delayMs: number;
}

/** Five tries half a second apart: a busy mount gets ~2 s to settle before the lazy detach. */
export const DEFAULT_UNMOUNT_POLICY: UnmountPolicy = { attempts: 5, delayMs: 500 };

/**
 * Unmounts cleanly, retrying while the mount point is busy, and falls back to a lazy
 * detach (`fusermount -uz`) so no "Transport endpoint is not connected" is left behind.
 * Answers how it ended.
 */
export async function unmountPath(
  mountPoint: string,
  logger: Logger,
  policy: UnmountPolicy = DEFAULT_UNMOUNT_POLICY,
): Promise<'clean' | 'lazy' | 'not-mounted'> {
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    try {
      await fusermount(['-u', mountPoint]);
      return 'clean';
    } catch (err) {
      const message = String((err as { stderr?: string }).stderr ?? (err as Error).message);
      if (/not mounted|not found in/i.test(message)) return 'not-mounted';
      const busy = /busy/i.test(message);
      logger.warn({ mountPoint, attempt, of: policy.attempts, reason: message.trim() }, busy ? 'mount point is busy; retrying unmount' : 'unmount failed; retrying');
      if (attempt < policy.attempts) await sleep(policy.delayMs);
    }
  }
  logger.warn({ mountPoint }, 'mount point still busy; detaching lazily (open files keep working until closed)');
  await fusermount(['-uz', mountPoint]);
  return 'lazy';
}

/** fusermount from Debian's fuse3 (`fusermount` is its compatibility link). */
async function fusermount(args: string[]): Promise<void> {
  await run('fusermount', args, { timeout: 10_000 });
}
