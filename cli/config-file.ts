import { readFile } from 'node:fs/promises';
import { ConfigError } from '../config/early/index.js';
import { DAEMON_OPTIONS } from './daemon-options.js';

/** Option values as node:util's parseArgs gives them, keyed by flag name without `--`. */
export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Keys a config file may hold besides the flags: the positional arguments of the daemon commands. */
const POSITIONAL_KEYS = { store: 'string', mountpoint: 'string', mount: 'string' } as const;
/** Flags that only make sense on a command line. */
const COMMAND_LINE_ONLY = new Set(['config']);

/**
 * Reads a daemon config file: TOML whose keys are the flag names of `strata mount` and
 * `strata serve` without `--` (`dram = "2GiB"`, `state-dir = "/var/lib/strata"`,
 * `allow-other = true`), plus `store` and `mountpoint` (`mount` for serve). Answers the same
 * values record the command line gives, so one schema (config.ts) validates both; numbers
 * become their decimal text (`lookup-threads = 4`). An unknown key, a wrong type or a
 * syntax error throws ConfigError naming the file, and the line where TOML knows it.
 */
export async function readConfigFile(path: string): Promise<OptionValues> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a folder, not a file' : code === 'EACCES' ? 'cannot be read (permission denied)' : `cannot be read (${code ?? (err as Error).message})`;
    throw new ConfigError('CONFIG_INVALID', `--config: ${path} ${why}`);
  }
  const { parse } = await import('smol-toml');
  let table: Record<string, unknown>;
  try {
    table = parse(text);
  } catch (err) {
    const first = ((err as Error).message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
    const line = (err as { line?: number }).line;
    throw new ConfigError('CONFIG_INVALID', `${path}${line ? `:${line}` : ''}: not valid TOML (${first})`);
  }
  const values: OptionValues = {};
  for (const [key, value] of Object.entries(table)) {
    const type = (DAEMON_OPTIONS as Record<string, { type: string }>)[key]?.type ?? (POSITIONAL_KEYS as Record<string, string>)[key];
    if (type === undefined || COMMAND_LINE_ONLY.has(key)) {
      const hint = key.includes('_') || /[A-Z]/.test(key) ? ` (options are written as on the command line, e.g. state-dir)` : '';
      throw new ConfigError('CONFIG_INVALID', `${path}: unknown option "${key}"${hint}; strata mount --help lists them`);
    }
    if (type === 'boolean') {
      if (typeof value !== 'boolean') throw new ConfigError('CONFIG_INVALID', `${path}: "${key}" must be true or false`);
      values[key] = value;
    } else if (typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value))) {
      values[key] = String(value);
    } else {
      throw new ConfigError('CONFIG_INVALID', `${path}: "${key}" must be a string${typeof value === 'object' ? ' (not a table or list)' : ''}`);
    }
  }
  return values;
}

/**
 * The command line over the config file named by `--config` (if any): a flag given on the
 * command line wins over the file's value.
 */
export async function withConfigFile(values: OptionValues): Promise<OptionValues> {
  const path = values.config;
  if (typeof path !== 'string') return values;
  const fromFile = await readConfigFile(path);
  const given = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
  return { ...fromFile, ...given };
}
