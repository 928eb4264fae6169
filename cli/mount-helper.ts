import { UsageError } from './usage-error.js';
import { DAEMON_OPTIONS } from './daemon-options.js';

/**
 * Options mount(8), fstab and mount.fuse3 pass that concern the kernel's generic mount
 * flags or the tools around it, not Strata: accepted and ignored. (`nodev`/`nosuid` are
 * what a FUSE mount has anyway; `_netdev`, `nofail`, `noauto` and `x-systemd.*` are for
 * systemd and mount(8) themselves.)
 */
const IGNORED = new Set([
  'rw', 'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', '_netdev', 'nofail',
  'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'relatime', 'norelatime',
  'strictatime', 'nostrictatime', 'lazytime', 'nolazytime', 'diratime', 'nodiratime', 'async', 'silent', 'loud',
]);

/** Flags with no mount-option spelling: they belong to the command line or to this translation. */
const NOT_MOUNT_OPTIONS = new Set(['background']);

/**
 * The argument list of a mount helper, as mount(8) runs `/sbin/mount.fuse.strata` and as
 * mount.fuse3 runs `strata` for a `fuse.strata` file system:
 * `SOURCE MOUNTPOINT [-o opt[=value],...] [-sfnvrw] [-t type] [-N namespace]`, turned into
 * the arguments of `strata mount SOURCE MOUNTPOINT --background --opt value ...`.
 * `opt=value` options take the flag names (`_` may stand for `-`: `state_dir`); `ro` is
 * `--read-only`; generic mount options are ignored; an unknown one is a usage error (or
 * ignored with `-s`, mount's "sloppy"). `-f` (fake) checks the options without mounting:
 * the answer's `fake` is then true.
 */
export function mountHelperArgs(argv: readonly string[]): { args: string[]; fake: boolean } {
  const positionals: string[] = [];
  const options: string[] = [];
  let sloppy = false;
  let fake = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-o') {
      const list = argv[++i];
      if (list === undefined) throw new UsageError('USAGE', 'mount: -o needs a list of options (-o endpoint=URL,dram=2GiB)');
      options.push(...list.split(',').filter((o) => o.length > 0));
    } else if (arg.startsWith('-o') && arg.length > 2) {
      options.push(...arg.slice(2).split(',').filter((o) => o.length > 0));
    } else if (arg === '-t' || arg === '-N') {
      i++; // the type (fuse.strata) and a namespace are mount(8)'s business
    } else if (/^-[sfnvrw]+$/.test(arg)) {
      if (arg.includes('s')) sloppy = true;
      if (arg.includes('f')) fake = true;
      if (arg.includes('r')) options.push('ro');
    } else if (arg.startsWith('-')) {
      throw new UsageError('USAGE', `mount: unknown mount helper flag ${arg}; options go in -o opt=value,...`);
    } else {
      positionals.push(arg);
    }
  }
  if (positionals.length !== 2) {
    throw new UsageError('USAGE', 'mount: give a store URL and a mount point: mount -t fuse.strata s3://bucket/prefix /mnt/x -o endpoint=URL');
  }
  const flags: string[] = [];
  for (const option of options) {
    const cut = option.indexOf('=');
    const name = (cut < 0 ? option : option.slice(0, cut)).replace(/_/g, '-');
    const value = cut < 0 ? undefined : option.slice(cut + 1);
    if (cut < 0 && (IGNORED.has(option) || option.startsWith('x-'))) continue;
    if (cut >= 0 && (name.startsWith('x-') || name === 'comment')) continue;
    if (option === 'ro') {
      flags.push('--read-only');
      continue;
    }
    const spec = (DAEMON_OPTIONS as Record<string, { type: string }>)[name];
    if (!spec || NOT_MOUNT_OPTIONS.has(name)) {
      if (sloppy) continue;
      throw new UsageError('USAGE', `mount: unknown option "${option}"; Strata takes its flags as -o name=value (strata mount --help lists them)`);
    }
    if (spec.type === 'boolean') {
      if (value !== undefined) throw new UsageError('USAGE', `mount: option "${name}" takes no value (write -o ${name})`);
      flags.push(`--${name}`);
    } else {
      if (value === undefined || value === '') throw new UsageError('USAGE', `mount: option "${name}" needs a value (-o ${name}=...)`);
      flags.push(`--${name}`, value);
    }
  }
  return { args: [positionals[0]!, positionals[1]!, '--background', ...flags], fake };
}
