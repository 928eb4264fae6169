import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';

/**
 * Which file, in which boot of the machine, was read whole (index and values) and found to
 * match the header's checksums. A table file never changes once it is written (in-place
 * deltas go to the overlay file beside it), and within one boot a file's bytes change only
 * through writes, which move its ctime. So a recovery that finds the same boot and the same
 * file (device, inode, size, mtime and ctime, to the nanosecond) knows the checks would read
 * what they read before, and serves the table without reading it again: a daemon killed and
 * restarted answers its first lookup in the time it takes to map the file. After a reboot (a
 * power loss may have torn what was not yet on the device) or when the file was replaced or
 * touched, every byte is read again.
 */
export interface CheckStamp {
  /** The kernel's boot id (/proc/sys/kernel/random/boot_id). */
  readonly boot: string;
  readonly dev: string;
  readonly ino: string;
  readonly size: string;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
}

let bootId: string | null | undefined;

/** The running kernel's boot id; null where there is none to read (then nothing is stamped). */
function currentBoot(): string | null {
  if (bootId === undefined) {
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      bootId = null;
    }
  }
  return bootId;
}

/** The stamp of `path` as it is now; undefined when the boot or the file cannot be read. */
export async function checkStampOf(path: string): Promise<CheckStamp | undefined> {
  const boot = currentBoot();
  if (boot === null) return undefined;
  try {
    const s = await stat(path, { bigint: true });
    return { boot, dev: String(s.dev), ino: String(s.ino), size: String(s.size), mtimeNs: String(s.mtimeNs), ctimeNs: String(s.ctimeNs) };
  } catch {
    return undefined;
  }
}

/** Whether `recorded` (from the manifest) still describes the file whose stamp is `now`. */
export function unchangedSince(recorded: CheckStamp | undefined, now: CheckStamp | undefined): boolean {
  if (!recorded || !now) return false;
  return (
    recorded.boot === now.boot &&
    recorded.dev === now.dev &&
    recorded.ino === now.ino &&
    recorded.size === now.size &&
    recorded.mtimeNs === now.mtimeNs &&
    recorded.ctimeNs === now.ctimeNs
  );
}
