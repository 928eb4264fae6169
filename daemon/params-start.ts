
import { join } from 'node:path';
import { ParamsService, type RecoverOptions } from '../params/index.js';
import type { Logger } from '../telemetry/index.js';
import { listenEarly, type EarlyApi } from '../api/index.js';
import type { ParamsWireListen } from '../config/index.js';
import { ConfigError, type ParamsStartConfig } from '../config/early/index.js';
import { makeFolders } from '../durable/index.js';

/** What start-up opened before the rest of the daemon loads: the tables and the API's socket serving them. */
export interface EarlyStart {
  readonly params: ParamsService;
  readonly api: EarlyApi;
  /** Whether the tables' binary protocol listens already (`--params-wire` was in the options start-up read). */
  readonly wire: boolean;
}

/**
 * The first step of a daemon's start: recovers the parameter tables and answers lookups on
 * the admin API's address before the cache tiers, links, FUSE and the HTTP framework load
 * (bench/startup.ts measures spawn to the first correct mget after a SIGKILL). Not with
 * `--cluster`: cluster tables are answered by their shards' members, which needs the join.
 */
export async function startParamsEarly(config: ParamsStartConfig, logger: Logger, recovery: RecoverOptions = {}): Promise<EarlyStart | undefined> {
  if (config.cluster) return undefined;
  // The state dir first, as Daemon.start makes it: a state dir that is a file fails with the same message.
  await makeFolders(config.stateDir);
  const params = await openParams(config, logger, recovery);
  try {
    const api = await listenEarly({ host: config.api.host, port: config.api.port, params, logger, token: config.secrets.token });
    return { params, api, wire: config.paramsWire !== undefined };
  } catch (err) {
    await params.close();
    throw err;
  }
}

/**
 * Parameter tables live next to the pmem pool (the persistent-memory tier) when there is
 * one, in `<pool>.params/` (named after the pool, so two daemons with pools in one
 * /dev/shm never share a manifest); in the NVMe tier's directory when pmem lacks room for
 * a table (or there is no pmem); else in the state dir. Tables served before a crash are
 * served again at once.
 */
export async function openParams(config: ParamsStartConfig, logger: Logger, recovery: RecoverOptions = {}): Promise<ParamsService> {
  const { pmem, nvme } = config.tiers;
  const nvmeDir = nvme && { dir: join(nvme.path, 'strata-params'), tier: 'nvme' };
  const first = pmem ? { dir: `${pmem.path}.params`, tier: 'pmem' } : (nvmeDir ?? { dir: join(config.stateDir, 'params'), tier: 'state-dir' });
  const dir = first.dir;
  await makeFolders(dir);
  const params = new ParamsService({
    dir,
    tier: first.tier,
    ...(pmem && nvmeDir ? { overflow: nvmeDir } : {}),
    lookupThreads: config.lookupThreads,
    logger, // ParamsService names its own component
    store: { endpoint: config.endpoint, region: config.region },
  });
  await params.recover(recovery); // it logs what it recovered
  // `--params-wire`: lookups over the binary protocol from here on, with the API's token.
  // It closes with the service (ParamsService.close), which every way out of the daemon runs.
  if (config.paramsWire) {
    try {
      await listenParamsWire(params, config.paramsWire, config.secrets.token);
    } catch (err) {
      await params.close();
      throw err;
    }
  }
  return params;
}

/** `--params-wire`: lookups over the binary protocol, with the API's token; a failure names the option. */
export async function listenParamsWire(params: ParamsService, address: ParamsWireListen, token: string | undefined): Promise<void> {
  try {
    await params.listenWire(address, token);
  } catch (err) {
    throw new ConfigError('CONFIG_INVALID', `--params-wire: cannot listen on ${describe(address)}: ${(err as Error).message}`, { cause: err });
  }
}

function describe(address: ParamsWireListen): string {
  return 'path' in address ? address.path : `${address.host}:${address.port}`;
}
