import { mountHelperArgs } from './mount-helper.js';
import { checkDaemonOptions } from './config-command.js';

/**
 * `strata SOURCE MOUNTPOINT -o opt=value,...`, the form mount(8) uses (through mount.fuse3 or
 * /sbin/mount.fuse.strata): the same as `strata mount SOURCE MOUNTPOINT --background --opt
 * value ...`, so mount(8) returns once the file system is up. `-f` only checks the options.
 * `run` is the command line's own entry point (handed in, so this module does not import it).
 */
export async function runMountHelper(argv: readonly string[], run: (argv: readonly string[]) => Promise<number>): Promise<number> {
  const { args, fake } = mountHelperArgs(argv);
  if (fake) {
    await checkDaemonOptions(['mount', ...args]);
    return 0;
  }
  return run(['mount', ...args]);
}
