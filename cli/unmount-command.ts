import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { StrataError } from '../errors/index.js';
import { mountedFsType as mountType } from '../fuse/index.js';
import { UsageError } from './usage-error.js';
import { readMountRecord } from './mount-records.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** How long `strata unmount` waits by default: uploads in flight are finished or journaled first. */
const DEFAULT_TIMEOUT_SECONDS = 120;
/** Poll interval while waiting for the daemon to exit and the kernel to drop the mount. */
const POLL_MS = 50;

const run = promisify(execFile);

export class UnmountError extends StrataError<'NOT_MOUNTED' | 'UNMOUNT_TIMEOUT'> {}

/**
 * `strata unmount PATH`: sends SIGTERM to the daemon serving PATH (found through the record
 * it left in the run dir) and waits until it has exited and the kernel no longer lists the
 * mount: the same clean stop as Ctrl-C on a foreground mount. A mount whose daemon is gone
 * (killed) is detached lazily. A path that is no Strata mount is an error.
 */
export async function runUnmount(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('USAGE', 'unmount needs one mount point: strata unmount /mnt/x');
  const timeoutText = typeof values.timeout === 'string' ? values.timeout : String(DEFAULT_TIMEOUT_SECONDS);
  const timeoutSeconds = Number(timeoutText);
  if (!/^\d+(\.\d+)?$/.test(timeoutText) || timeoutSeconds <= 0) throw new UsageError('USAGE', `--timeout: "${timeoutText}" is not a positive number of seconds`);
  const mountPoint = resolve(positionals[0]!);
  const fsType = await mountType(mountPoint);
  const record = await readMountRecord(mountPoint);
  const pid = record && alive(record.pid) ? record.pid : undefined;
  if (pid === undefined) {
    if (fsType === undefined) throw new UnmountError('NOT_MOUNTED', `${mountPoint} is not mounted`);
    if (fsType !== 'fuse.strata') throw new UnmountError('NOT_MOUNTED', `${mountPoint} is a ${fsType} mount, not a Strata one; use umount`);
    // The daemon died without unmounting: only the kernel's side is left.
    await run('fusermount', ['-uz', mountPoint]);
    process.stdout.write(`strata: detached ${mountPoint} (its daemon had exited)\n`);
    return 0;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutSeconds * 1000;
  while (alive(pid) || (await mountType(mountPoint)) === 'fuse.strata') {
    if (Date.now() > deadline) {
      throw new UnmountError('UNMOUNT_TIMEOUT', `the daemon (pid ${pid}) did not stop within ${timeoutSeconds} s; it may still be uploading (strata status --api ${record!.api}); run strata unmount again to keep waiting`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  process.stdout.write(`strata: unmounted ${mountPoint}\n`);
  return 0;
}

/** True while a process with that pid exists (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
