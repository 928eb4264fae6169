import { hostname, totalmem } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_BLOCK_SIZE, DEFAULT_SCRUB_BYTES_PER_SECOND } from '../cache/index.js';
import { parsePeerSource, type PeerSource } from '../p2p/index.js';
import { endpointSchema, httpUrlSchema, storeUrlSchema } from '../store/index.js';
import { parseClusterUrl, type ClusterAddress } from '../params/cluster/index.js';
import { formatSize, parseSize } from './sizes.js';
import { ConfigError, DEFAULT_API, DEFAULT_LOOKUP_THREADS, LOG_FORMATS, LOG_LEVELS, MAX_LOOKUP_THREADS, MIN_TOKEN_LENGTH, defaultStateDir, isLoopback, parseHostPort, parseLookupThreads, splitPathSize, type LogFormat, type LogLevel } from './early/index.js';

export { ConfigError, isLoopback };

/**
 * DRAM tier when no tier is given: 1 GiB, or a quarter of the machine's memory if that
 * is less, so a default install neither thrashes on a 1 GiB model nor crowds out a job.
 */
export function defaultDramBytes(): number {
  return Math.min(1024 ** 3, Math.floor(totalmem() / 4));
}

/** Readahead and in-flight fetch buffers on top of the DRAM tier: 16 blocks of 4 MiB. */
const DEFAULT_IO_BUFFER_BYTES = 64 * 1024 ** 2;

const sizeText = (option: string) =>
  z.string().transform((text, ctx) => {
    const bytes = parseSize(text);
    if (bytes === undefined || bytes <= 0) {
      ctx.addIssue({ code: 'custom', message: `${option}: "${text}" is not a size (use e.g. 512MiB, 4GiB)` });
      return z.NEVER;
    }
    return bytes;
  });

/** A rate in bytes per second given as a size (`16MiB`); `0` turns the thing it paces off. */
const rateText = (option: string) =>
  z.string().transform((text, ctx) => {
    const bytes = /^0+$/.test(text.trim()) ? 0 : parseSize(text);
    if (bytes === undefined || bytes < 0) {
      ctx.addIssue({ code: 'custom', message: `${option}: "${text}" is not a size per second (use e.g. 16MiB, or 0 for off)` });
      return z.NEVER;
    }
    return bytes;
  });

/** `PATH[:SIZE]`; the path is made absolute. */
const pathWithSize = (option: string, sizeRequired: boolean) =>
  z.string().transform((text, ctx) => {
    const { path, size: sizePart } = splitPathSize(text);
    if (sizePart === undefined && !sizeRequired) return { path: resolve(path) } as { path: string; bytes?: number };
    const bytes = sizePart === undefined ? undefined : parseSize(sizePart);
    if (path.length === 0) {
      ctx.addIssue({ code: 'custom', message: `${option}: a path is needed, as in ${option} /path:64GiB` });
      return z.NEVER;
    }
    if (bytes === undefined || bytes <= 0) {
      ctx.addIssue({ code: 'custom', message: `${option}: "${sizePart ?? ''}" is not a size; give PATH:SIZE such as /nvme/strata:500GiB` });
      return z.NEVER;
    }
    return { path: resolve(path), bytes } as { path: string; bytes?: number };
  });

const hostPort = z.string().transform((text, ctx) => {
  const address = parseHostPort(text);
  if (!address) {
    ctx.addIssue({ code: 'custom', message: `--api: "${text}" is not HOST:PORT (e.g. 127.0.0.1:7070)` });
    return z.NEVER;
  }
  return address;
});

/** Where the params binary protocol listens: TCP or a unix socket. */
export type ParamsWireListen = { readonly host: string; readonly port: number } | { readonly path: string };

/**
 * Longest unix socket path: `sun_path` holds 108 bytes on Linux, the terminating zero included.
 */
const MAX_SOCKET_PATH_BYTES = 107;

/** `--params-wire HOST:PORT` or an absolute unix socket path. */
const paramsWireAddress = z.string().transform((text, ctx): ParamsWireListen => {
  if (text.startsWith('/')) {
    if (Buffer.byteLength(text) > MAX_SOCKET_PATH_BYTES) {
      ctx.addIssue({ code: 'custom', message: `--params-wire: a unix socket path has at most ${MAX_SOCKET_PATH_BYTES} bytes; "${text}" is longer` });
      return z.NEVER;
    }
    return { path: text };
  }
  const address = parseHostPort(text);
  if (!address) {
    ctx.addIssue({ code: 'custom', message: `--params-wire: "${text}" is neither HOST:PORT (e.g. 127.0.0.1:7071) nor an absolute unix socket path` });
    return z.NEVER;
  }
  return address;
});

const peerList = z.string().transform((text, ctx) => {
  try {
    return parsePeerSource(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** Default wait for a block from its owner peer before reading it from the store (see p2p/peer-node.ts). */
const DEFAULT_PEER_TIMEOUT_SECONDS = 5;
/** The peer secret is an HMAC key guarding the same daemon the admin token does: the same minimum. */
const MIN_PEER_SECRET_LENGTH = MIN_TOKEN_LENGTH;

/** Largest uid or gid (32 bits, less the -1 that means "unchanged"). */
const MAX_ID = 0xffff_fffe;

/** A whole number from 0 to `max`, given as decimal text. */
function wholeNumber(flag: string, max: number) {
  return z.string().transform((text, ctx) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value > max) {
      ctx.addIssue({ code: 'custom', message: `${flag}: "${text}" is not a whole number from 0 to ${max}` });
      return z.NEVER;
    }
    return value;
  });
}

/** Permission bits as octal text (`644`, `0755`, `0o700`). */
function octalMode(flag: string) {
  return z.string().transform((text, ctx) => {
    const digits = text.replace(/^0o/, '');
    if (!/^[0-7]{1,4}$/.test(digits)) {
      ctx.addIssue({ code: 'custom', message: `${flag}: "${text}" is not an octal mode such as 0644` });
      return z.NEVER;
    }
    return parseInt(digits, 8);
  });
}
/**
 * How long past their TTL cached metadata is served while the store fails or hangs: a day,
 * longer than most outages, so a cache keeps serving what it holds through one.
 */
const DEFAULT_STALE_ON_ERROR_SECONDS = 86_400;

/** The options `strata mount` accepts, as strings from the command line. */
export const mountOptionsSchema = z
  .object({
    store: storeUrlSchema.optional(),
    mountPoint: z.string().min(1).transform((p) => resolve(p)),
    endpoint: endpointSchema('--endpoint').optional(),
    region: z.string().min(1).optional(),
    stateDir: z.string().min(1).transform((p) => resolve(p)).optional(),
    dram: sizeText('--dram').optional(),
    pmem: pathWithSize('--pmem', true).optional(),
    nvme: pathWithSize('--nvme', false).optional(),
    nvmeWholeFiles: z.enum(['on', 'off'], { message: '--nvme-whole-files: must be on or off' }).optional(),
    nvmeScrubRate: rateText('--nvme-scrub-rate').optional(),
    pmemWholeFiles: z.enum(['on', 'off'], { message: '--pmem-whole-files: must be on or off' }).optional(),
    pmemScrubRate: rateText('--pmem-scrub-rate').optional(),
    memory: sizeText('--memory').optional(),
    blockSize: sizeText('--block-size').optional(),
    api: hostPort.prefault(DEFAULT_API),
    close: z.enum(['async', 'sync'], { message: '--close: must be async or sync' }).default('async'),
    writePassthrough: z.enum(['on', 'off'], { message: '--write-passthrough: must be on or off' }).optional(),
    metadataTtl: z
      .string()
      .default('1')
      .transform((text, ctx) => {
        const seconds = Number(text);
        if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(seconds)) {
          ctx.addIssue({ code: 'custom', message: `--metadata-ttl: "${text}" is not a number of seconds` });
          return z.NEVER;
        }
        return seconds;
      }),
    staleOnError: z
      .string()
      .default(String(DEFAULT_STALE_ON_ERROR_SECONDS))
      .transform((text, ctx) => {
        const seconds = Number(text);
        if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(seconds)) {
          ctx.addIssue({ code: 'custom', message: `--stale-on-error: "${text}" is not a number of seconds (0 turns it off)` });
          return z.NEVER;
        }
        return seconds;
      }),
    allowOther: z.boolean().default(false),
    allowRoot: z.boolean().default(false),
    uid: wholeNumber('--uid', MAX_ID).optional(),
    gid: wholeNumber('--gid', MAX_ID).optional(),
    fileMode: octalMode('--file-mode').optional(),
    dirMode: octalMode('--dir-mode').optional(),
    objectMetadata: z.enum(['listed', 'known'], { message: '--object-metadata: must be listed or known' }).default('known'),
    fuse: z.enum(['auto', 'native', 'fuse-native'], { message: '--fuse: must be auto, native or fuse-native' }).optional(),
    readOnly: z.boolean().default(false),
    staging: sizeText('--staging').optional(),
    peers: peerList.optional(),
    advertise: httpUrlSchema('--advertise', 'peers authenticate with STRATA_PEER_SECRET').optional(),
    peerTimeout: z
      .string()
      .default(String(DEFAULT_PEER_TIMEOUT_SECONDS))
      .transform((text, ctx) => {
        const seconds = Number(text);
        if (!/^\d+(\.\d+)?$/.test(text) || seconds <= 0) {
          ctx.addIssue({ code: 'custom', message: `--peer-timeout: "${text}" is not a positive number of seconds` });
          return z.NEVER;
        }
        return seconds;
      }),
    lookupThreads: z
      .string()
      .default(String(DEFAULT_LOOKUP_THREADS))
      .transform((text, ctx) => {
        const threads = parseLookupThreads(text);
        if (threads === undefined) {
          ctx.addIssue({ code: 'custom', message: `--lookup-threads: "${text}" is not a whole number from 0 to ${MAX_LOOKUP_THREADS}` });
          return z.NEVER;
        }
        return threads;
      }),
    cluster: z
      .string()
      .transform((text, ctx) => {
        try {
          return parseClusterUrl(text);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
          return z.NEVER;
        }
      })
      .optional(),
    paramsWire: paramsWireAddress.optional(),
    nodeName: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, { message: '--node-name: 1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit' })
      .optional(),
    logLevel: z.enum(LOG_LEVELS, { message: '--log-level: must be one of trace, debug, info, warn, error' }).default('info'),
    logFormat: z.enum(LOG_FORMATS, { message: '--log-format: must be auto, pretty or json' }).default('auto'),
    logFile: z.string().min(1).transform((p) => resolve(p)).optional(),
  })
  .strict();

export type MountOptionsInput = z.input<typeof mountOptionsSchema>;

export interface TierConfig {
  readonly dramBytes: number;
  readonly pmem?: { readonly path: string; readonly bytes: number };
  readonly nvme?: { readonly path: string; readonly bytes?: number };
}

/**
 * The daemon's secrets from its environment: the admin API token (STRATA_TOKEN) and the peer
 * secret (STRATA_PEER_SECRET). Kept out of logs and printed config: JSON and inspection show
 * `[redacted]`.
 */
export class DaemonSecrets {
  readonly #token: string | undefined;
  readonly #peerSecret: string | undefined;

  constructor(token: string | undefined, peerSecret: string | undefined) {
    this.#token = token || undefined;
    this.#peerSecret = peerSecret || undefined;
  }

  /** Bearer token every API route but /healthz requires; undefined: none (loopback only). */
  get token(): string | undefined {
    return this.#token;
  }

  /** HMAC key of peer requests (`--peers`); undefined without peers. */
  get peerSecret(): string | undefined {
    return this.#peerSecret;
  }

  toJSON(): string {
    return '[redacted]';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[redacted]';
  }
}

/** Everything the daemon runs with: validated once, then frozen. */
export interface DaemonConfig {
  /** STRATA_TOKEN and STRATA_PEER_SECRET, read from the environment with the options. */
  readonly secrets: DaemonSecrets;
  /** `strata mount`: the one store linked at the mount's root. Absent for `strata serve`. */
  readonly store?: string;
  readonly mountPoint: string;
  readonly endpoint?: string;
  readonly region?: string;
  readonly stateDir: string;
  readonly tiers: TierConfig;
  /** DRAM tier plus readahead and in-flight buffers never exceed this. */
  readonly memoryBudgetBytes: number;
  readonly blockSizeBytes?: number;
  readonly api: { readonly host: string; readonly port: number };
  readonly close: 'async' | 'sync';
  /** `--write-passthrough`: the kernel writes files opened for writing (async close) into their staged file itself. Default true. */
  readonly writePassthrough: boolean;
  /** `strata mount --read-only`: the one link takes no writes. */
  readonly readOnly: boolean;
  /** Most bytes staged for upload (default: half the free space of the state dir at start). */
  readonly stagingBytes?: number;
  readonly metadataTtlSeconds: number;
  /** `--stale-on-error`: how long past its TTL metadata is served when the store fails or hangs (0: never). */
  readonly staleOnErrorSeconds: number;
  /**
   * `--nvme-whole-files`: objects whole in the NVMe tier are kept as one file each, which the
   * native FUSE path hands to the kernel (passthrough). Default true.
   */
  readonly nvmeWholeFiles: boolean;
  /** `--nvme-scrub-rate`: bytes per second the background scrub re-reads of whole files (0: off). */
  readonly nvmeScrubBytesPerSecond: number;
  /**
   * `--pmem-whole-files`: objects whole in the pmem tier are kept as one file each beside the
   * pool (within its capacity), which the native FUSE path hands to the kernel. Default true.
   */
  readonly pmemWholeFiles: boolean;
  /** `--pmem-scrub-rate`: bytes per second the background scrub re-reads of the pmem tier's whole files (0: off). */
  readonly pmemScrubBytesPerSecond: number;
  readonly allowOther: boolean;
  /** `--allow-root`: root may use the mount besides the daemon's user. */
  readonly allowRoot: boolean;
  /** Attributes shown for files and folders whose object carries none. */
  readonly uid?: number;
  readonly gid?: number;
  readonly fileMode?: number;
  readonly dirMode?: number;
  /** `listed`: a HEAD per file seen only in a listing, for its attributes; `known`: what lookups and writes saw. */
  readonly objectMetadata: 'listed' | 'known';
  /** `--fuse` (or STRATA_FUSE): which FUSE path serves the mount; `auto` prefers the native one. */
  readonly fusePath: 'auto' | 'native' | 'fuse-native';
  /** `--peers`: share blocks with these daemons (requires STRATA_PEER_SECRET). */
  readonly peers?: PeerSource;
  /** `--advertise`: this daemon's API URL as its peers know it. */
  readonly advertise?: string;
  readonly peerTimeoutMs: number;
  /** Worker threads answering parameter-table mget (0: the event loop; tables on NVMe always use at least one). Default 2. */
  readonly lookupThreads: number;
  /** `--cluster`: the etcd endpoints and prefix of the parameter-table cluster this daemon joins. */
  readonly cluster?: ClusterAddress;
  /**
   * `--params-wire`: where parameter-table lookups are also answered over the binary protocol
   * (docs/PARAMS.md, "Binary protocol"); off when absent. Its connections authenticate with
   * STRATA_TOKEN when one is set, as the API's requests do.
   */
  readonly paramsWire?: ParamsWireListen;
  /** `--node-name`: this daemon's name in the cluster (default: the host name). */
  readonly nodeName: string;
  readonly logLevel: LogLevel;
  /** `--log-format`: pretty lines on a terminal and JSON otherwise (auto), or one of them always. */
  readonly logFormat: LogFormat;
  /** `--log-file`: logs appended there instead of stderr. */
  readonly logFile?: string;
}

/**
 * Validates daemon options (`strata mount` with a store, `strata serve` without); a bad
 * one throws ConfigError naming the option.
 */
export function daemonConfig(input: MountOptionsInput, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const parsed = mountOptionsSchema.safeParse({ ...input, endpoint: input.endpoint ?? env.AWS_ENDPOINT_URL, fuse: input.fuse ?? (env.STRATA_FUSE || undefined) });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    const message = issue.message.startsWith('--') ? issue.message : `${field}${issue.message}`;
    throw new ConfigError('CONFIG_INVALID', message);
  }
  const o = parsed.data;
  if (!isAbsolute(o.mountPoint)) throw new ConfigError('CONFIG_INVALID', 'mount point must be a path');
  if (o.blockSize !== undefined && (o.blockSize < 1024 ** 2 || o.blockSize > 16 * 1024 ** 2)) {
    throw new ConfigError('CONFIG_INVALID', '--block-size: must be between 1MiB and 16MiB');
  }
  const dramBytes = o.dram ?? defaultDramBytes();
  const memoryBudgetBytes = o.memory ?? dramBytes + DEFAULT_IO_BUFFER_BYTES;
  const minimumIoBytes = 2 * (o.blockSize ?? DEFAULT_BLOCK_SIZE);
  if (memoryBudgetBytes < dramBytes + minimumIoBytes) {
    throw new ConfigError(
      'CONFIG_INVALID',
      `--memory (${formatSize(memoryBudgetBytes)}) must exceed --dram (${formatSize(dramBytes)}) by at least two blocks (${formatSize(minimumIoBytes)}) for in-flight reads`,
    );
  }
  if (!o.nvme && (o.nvmeWholeFiles !== undefined || o.nvmeScrubRate !== undefined)) {
    throw new ConfigError('CONFIG_INVALID', `${o.nvmeWholeFiles !== undefined ? '--nvme-whole-files' : '--nvme-scrub-rate'}: needs an NVMe tier (--nvme DIR[:SIZE])`);
  }
  if (!o.pmem && (o.pmemWholeFiles !== undefined || o.pmemScrubRate !== undefined)) {
    throw new ConfigError('CONFIG_INVALID', `${o.pmemWholeFiles !== undefined ? '--pmem-whole-files' : '--pmem-scrub-rate'}: needs a pmem tier (--pmem FILE:SIZE)`);
  }
  if (o.allowOther && o.allowRoot) throw new ConfigError('CONFIG_INVALID', '--allow-root: give either --allow-other or --allow-root (allow-other already includes root)');
  if (o.peers && (env.STRATA_PEER_SECRET ?? '').length < MIN_PEER_SECRET_LENGTH) {
    throw new ConfigError('CONFIG_INVALID', `--peers: set STRATA_PEER_SECRET (the same value on every peer, at least ${MIN_PEER_SECRET_LENGTH} characters) so peer traffic is authenticated`);
  }
  if (env.STRATA_TOKEN && env.STRATA_TOKEN.length < MIN_TOKEN_LENGTH) {
    throw new ConfigError('CONFIG_INVALID', `STRATA_TOKEN: must be at least ${MIN_TOKEN_LENGTH} characters (for instance: openssl rand -hex 16)`);
  }
  if (!isLoopback(o.api.host) && !env.STRATA_TOKEN) {
    throw new ConfigError('CONFIG_INVALID', `--api: binding to ${o.api.host} needs STRATA_TOKEN set, so the admin API is not open to the network`);
  }
  if (o.paramsWire) checkParamsWire(o.paramsWire, o.api, o.cluster !== undefined, env);
  return Object.freeze({
    secrets: new DaemonSecrets(env.STRATA_TOKEN, env.STRATA_PEER_SECRET),
    ...(o.store ? { store: o.store } : {}),
    mountPoint: o.mountPoint,
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.region ? { region: o.region } : {}),
    stateDir: o.stateDir ?? defaultStateDir(),
    tiers: Object.freeze({ dramBytes, ...(o.pmem ? { pmem: { path: o.pmem.path, bytes: o.pmem.bytes! } } : {}), ...(o.nvme ? { nvme: o.nvme } : {}) }),
    memoryBudgetBytes,
    ...(o.blockSize ? { blockSizeBytes: o.blockSize } : {}),
    api: Object.freeze(o.api),
    close: o.close,
    writePassthrough: o.writePassthrough !== 'off',
    readOnly: o.readOnly,
    ...(o.staging ? { stagingBytes: o.staging } : {}),
    metadataTtlSeconds: o.metadataTtl,
    staleOnErrorSeconds: o.staleOnError,
    nvmeWholeFiles: o.nvmeWholeFiles !== 'off',
    nvmeScrubBytesPerSecond: o.nvmeScrubRate ?? DEFAULT_SCRUB_BYTES_PER_SECOND,
    pmemWholeFiles: o.pmemWholeFiles !== 'off',
    pmemScrubBytesPerSecond: o.pmemScrubRate ?? DEFAULT_SCRUB_BYTES_PER_SECOND,
    allowOther: o.allowOther,
    allowRoot: o.allowRoot,
    ...(o.uid !== undefined ? { uid: o.uid } : {}),
    ...(o.gid !== undefined ? { gid: o.gid } : {}),
    ...(o.fileMode !== undefined ? { fileMode: o.fileMode } : {}),
    ...(o.dirMode !== undefined ? { dirMode: o.dirMode } : {}),
    objectMetadata: o.objectMetadata,
    fusePath: o.fuse ?? 'auto',
    ...(o.peers ? { peers: o.peers } : {}),
    ...(o.advertise ? { advertise: o.advertise } : {}),
    peerTimeoutMs: o.peerTimeout * 1000,
    lookupThreads: o.lookupThreads,
    ...(o.cluster ? { cluster: o.cluster } : {}),
    ...(o.paramsWire ? { paramsWire: Object.freeze(o.paramsWire) } : {}),
    nodeName: o.nodeName ?? hostname(),
    logLevel: o.logLevel,
    logFormat: o.logFormat,
    ...(o.logFile ? { logFile: o.logFile } : {}),
  });
}

/**
 * The binary protocol answers the same lookups as the API: off the loopback it needs the
 * token as `--api` does. Cluster tables are routed between members over HTTP, which the
 * binary protocol does not do, so it is refused with `--cluster` rather than answering
 * only the shards this member holds.
 */
function checkParamsWire(wire: ParamsWireListen, api: { host: string; port: number }, cluster: boolean, env: NodeJS.ProcessEnv): void {
  if (cluster) throw new ConfigError('CONFIG_INVALID', '--params-wire: not with --cluster (cluster tables are routed between members over the HTTP API)');
  if ('path' in wire) return;
  if (!isLoopback(wire.host) && !env.STRATA_TOKEN) {
    throw new ConfigError('CONFIG_INVALID', `--params-wire: binding to ${wire.host} needs STRATA_TOKEN set, so lookups are not open to the network`);
  }
  if (wire.port !== 0 && wire.port === api.port && wire.host === api.host) throw new ConfigError('CONFIG_INVALID', `--params-wire: ${wire.host}:${wire.port} is the API's address; give another port`);
}

