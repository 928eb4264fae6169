import { isAbsolute, resolve } from 'node:path';
import { parseSize } from '../sizes.js';
import { DEFAULT_API, DEFAULT_LOOKUP_THREADS, LOG_FORMATS, LOG_LEVELS, MIN_TOKEN_LENGTH, defaultStateDir, isLoopback, parseHostPort, parseLookupThreads, splitPathSize, type LogFormat, type LogLevel } from './option-rules.js';

/** The options as the command line, a config file or `mount -o` give them: text (flags) and booleans. */
type OptionsInput = Readonly<Record<string, unknown>>;

/**
 * What opening the parameter tables and answering their lookups needs (daemon/params-start.ts);
 * a `DaemonConfig` is one.
 */
export interface ParamsStartConfig {
  readonly stateDir: string;
  readonly tiers: { readonly pmem?: { readonly path: string }; readonly nvme?: { readonly path: string } };
  readonly api: { readonly host: string; readonly port: number };
  /** The admin API's token (STRATA_TOKEN); the wire protocol's too. */
  readonly secrets: { readonly token: string | undefined };
  readonly lookupThreads: number;
  readonly endpoint?: string;
  readonly region?: string;
  /** `--params-wire`; never set in the early reading (the daemon listens there once the schema has checked it). */
  readonly paramsWire?: { readonly host: string; readonly port: number } | { readonly path: string };
  /** `--cluster`; never set in the early reading (a cluster member starts no early lookups). */
  readonly cluster?: unknown;
}

/** The early reading: the tables' options and the logger's. */
export interface EarlyOptions extends ParamsStartConfig {
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly logFile?: string;
}

/**
 * The options the daemon's first step needs, read by the schema's rules, or undefined when the
 * early start is not for this daemon (`--cluster`) or any of those options does not read
 * cleanly: the daemon then validates everything first and starts as a whole, so a mistake is
 * reported exactly as the schema words it. A reading that succeeds says nothing of the other
 * options: the schema checks them (and these again) before anything else starts.
 */
export function earlyOptions(input: OptionsInput, env: NodeJS.ProcessEnv = process.env): EarlyOptions | undefined {
  const text = (name: string): string | undefined => {
    const value = input[name];
    return typeof value === 'string' ? value : undefined;
  };
  if (input.cluster !== undefined) return undefined;
  const present = (name: string) => input[name] !== undefined;
  // Every option read below must be text when given (the schema refuses anything else).
  for (const name of ['stateDir', 'pmem', 'nvme', 'api', 'lookupThreads', 'endpoint', 'region', 'logLevel', 'logFormat', 'logFile']) {
    if (present(name) && text(name) === undefined) return undefined;
  }
  const stateDir = text('stateDir');
  if (stateDir === '') return undefined;
  const api = parseHostPort(text('api') ?? DEFAULT_API);
  if (!api) return undefined;
  const token = env.STRATA_TOKEN || undefined;
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) return undefined;
  if (!isLoopback(api.host) && !token) return undefined;
  const pmemText = text('pmem');
  let pmem: { path: string } | undefined;
  if (pmemText !== undefined) {
    const { path, size } = splitPathSize(pmemText);
    const bytes = size === undefined ? undefined : parseSize(size);
    if (path.length === 0 || bytes === undefined || bytes <= 0) return undefined;
    pmem = { path: resolve(path) };
  }
  const nvmeText = text('nvme');
  let nvme: { path: string } | undefined;
  if (nvmeText !== undefined) {
    const { path, size } = splitPathSize(nvmeText);
    if (size !== undefined) {
      const bytes = parseSize(size);
      if (path.length === 0 || bytes === undefined || bytes <= 0) return undefined;
    }
    nvme = { path: resolve(path) };
  }
  const lookupThreads = text('lookupThreads') === undefined ? DEFAULT_LOOKUP_THREADS : parseLookupThreads(text('lookupThreads')!);
  if (lookupThreads === undefined) return undefined;
  const endpoint = text('endpoint') ?? env.AWS_ENDPOINT_URL;
  const region = text('region');
  if (region === '') return undefined;
  const logLevel = text('logLevel') ?? 'info';
  const logFormat = text('logFormat') ?? 'auto';
  const logFile = text('logFile');
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel) || !(LOG_FORMATS as readonly string[]).includes(logFormat) || logFile === '') return undefined;
  const mountPoint = text('mountPoint');
  if (!mountPoint || !isAbsolute(resolve(mountPoint))) return undefined;
  return {
    stateDir: stateDir === undefined ? defaultStateDir() : resolve(stateDir),
    tiers: { ...(pmem ? { pmem } : {}), ...(nvme ? { nvme } : {}) },
    api,
    secrets: { token },
    lookupThreads,
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    logLevel: logLevel as LogLevel,
    logFormat: logFormat as LogFormat,
    ...(logFile ? { logFile: resolve(logFile) } : {}),
  };
}

/**
 * The first option the early reading and the validated config (`daemonConfig` of the same
 * input and environment) disagree on, or undefined. They agree by construction (the schema
 * applies the rules above); a disagreement is a bug, which the daemon reports instead of
 * serving tables from the wrong place.
 */
export function earlyDisagreement(early: EarlyOptions, config: EarlyOptions): string | undefined {
  const pairs: Array<[string, unknown, unknown]> = [
    ['state-dir', early.stateDir, config.stateDir],
    ['pmem', early.tiers.pmem?.path, config.tiers.pmem?.path],
    ['nvme', early.tiers.nvme?.path, config.tiers.nvme?.path],
    ['api', `${early.api.host}:${early.api.port}`, `${config.api.host}:${config.api.port}`],
    ['STRATA_TOKEN', early.secrets.token, config.secrets.token],
    ['lookup-threads', early.lookupThreads, config.lookupThreads],
    ['endpoint', early.endpoint, config.endpoint],
    ['region', early.region, config.region],
    ['cluster', undefined, config.cluster],
    ['log-level', early.logLevel, config.logLevel],
    ['log-format', early.logFormat, config.logFormat],
    ['log-file', early.logFile, config.logFile],
  ];
  return pairs.find(([, a, b]) => a !== b)?.[0];
}
