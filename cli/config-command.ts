import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';
import { readConfigFile, withConfigFile, type OptionValues } from './config-file.js';
import { daemonConfig, type DaemonConfig } from '../config/index.js';
import { DAEMON_OPTIONS, daemonOptions } from './daemon-options.js';
import { formatSize } from '../config/index.js';

/**
 * `strata config check FILE`: validates a config file through the daemon's schema, as
 * `strata mount --config FILE` would, without starting anything; prints the options it
 * would run with. A wrong option is one line naming it, exit 2.
 */
export async function runConfig(_values: OptionValues, positionals: string[]): Promise<number> {
  if (positionals[0] !== 'check' || positionals.length !== 2) throw new UsageError('USAGE', 'config takes one action: strata config check FILE');
  const file = positionals[1]!;
  const values = await readConfigFile(file);
  const mountPoint = values.mountpoint ?? values.mount;
  const config = daemonConfig({ ...daemonOptions(values), ...(typeof values.store === 'string' ? { store: values.store } : {}), mountPoint: typeof mountPoint === 'string' ? mountPoint : '/' });
  process.stdout.write(`strata: ${file} is valid\n${describe(config, typeof mountPoint === 'string')}`);
  return 0;
}

/** Validates a `strata mount` argument list (with its --config file) without mounting: the mount helper's `-f`. */
export async function checkDaemonOptions(args: readonly string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: args.slice(1) as string[], options: DAEMON_OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError('USAGE', `mount: ${(err as Error).message.split('. ')[0]}`);
  }
  const values = await withConfigFile(parsed.values);
  daemonConfig({ ...daemonOptions(values), store: parsed.positionals[0]!, mountPoint: parsed.positionals[1]! });
  process.stdout.write('strata: the mount options are valid (not mounted: -f)\n');
}

/** The effective options, one `name = value` line each, in the config file's own spelling. */
function describe(config: DaemonConfig, withMountPoint: boolean): string {
  const lines: Array<[string, string | number | boolean | undefined]> = [
    ['store', config.store],
    ['mountpoint', withMountPoint ? config.mountPoint : undefined],
    ['endpoint', config.endpoint],
    ['region', config.region],
    ['state-dir', config.stateDir],
    ['dram', formatSize(config.tiers.dramBytes)],
    ['pmem', config.tiers.pmem && `${config.tiers.pmem.path}:${formatSize(config.tiers.pmem.bytes)}`],
    ['nvme', config.tiers.nvme && `${config.tiers.nvme.path}${config.tiers.nvme.bytes ? `:${formatSize(config.tiers.nvme.bytes)}` : ''}`],
    ['memory', formatSize(config.memoryBudgetBytes)],
    ['api', `${config.api.host}:${config.api.port}`],
    ['close', config.close],
    ['read-only', config.readOnly],
    ['metadata-ttl', config.metadataTtlSeconds],
    ['allow-other', config.allowOther],
    ['lookup-threads', config.lookupThreads],
    ['params-wire', config.paramsWire && ('path' in config.paramsWire ? config.paramsWire.path : `${config.paramsWire.host.includes(':') ? `[${config.paramsWire.host}]` : config.paramsWire.host}:${config.paramsWire.port}`)],
    ['log-level', config.logLevel],
  ];
  return lines
    .filter(([, value]) => value !== undefined)
    .map(([name, value]) => `  ${name} = ${typeof value === 'string' ? JSON.stringify(value) : String(value)}\n`)
    .join('');
}
