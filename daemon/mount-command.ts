import { mkdir } from 'node:fs/promises';
import { Namespace } from '../cache/namespace.js';
import type { ObjectReader } from '../cache/object-reader.js';
import { Filesystem, FuseMount } from '../fuse/index.js';
import { openStore, type ObjectStore } from '../store/index.js';
import { collectProcessMetrics, createLogger, type Logger } from '../telemetry/index.js';
import { startApiServer, type ApiServer } from './api/server.js';
import { UsageError } from './cli.js';
import { mountConfig, type MountConfig } from './config.js';
import { DirectReader } from './direct-reader.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** `strata mount <store-url> <mountpoint>`: serves until SIGINT or SIGTERM, then exits 0. */
export async function runMount(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length !== 2) {
    throw new UsageError('USAGE', 'mount needs a store URL and a mount point: strata mount s3://bucket/prefix /mnt/x');
  }
  const str = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const config = mountConfig({
    store: positionals[0]!,
    mountPoint: positionals[1]!,
    endpoint: str('endpoint'),
    region: str('region'),
    stateDir: str('state-dir'),
    dram: str('dram'),
    pmem: str('pmem'),
    nvme: str('nvme'),
    memory: str('memory'),
    blockSize: str('block-size'),
    api: str('api'),
    close: str('close') as never,
    metadataTtl: str('metadata-ttl'),
    allowOther: values['allow-other'] === true,
    logLevel: str('log-level') as never,
  });
  const logger = createLogger({ level: config.logLevel });
  const daemon = await startDaemon(config, logger);
  process.stdout.write(`strata: mounted ${config.store} at ${config.mountPoint} (admin API http://${config.api.host}:${daemon.api.port}); Ctrl-C unmounts\n`);
  const signal = await waitForSignal();
  logger.info({ signal }, 'shutting down');
  await daemon.stop();
  return 0;
}

export interface RunningDaemon {
  readonly api: ApiServer;
  stop(): Promise<void>;
}

/**
 * Start order: store (checked), state dir, cache, file system, API, then the mount last,
 * so a failure before it leaves nothing mounted. Stop runs in reverse.
 */
export async function startDaemon(config: MountConfig, logger: Logger): Promise<RunningDaemon> {
  collectProcessMetrics();
  const store = openStore(config.store, { endpoint: config.endpoint, region: config.region, logger });
  const cleanups: Array<() => Promise<unknown>> = [() => store.close()];
  const undo = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err) => logger.warn({ err }, 'cleanup failed'));
  };
  try {
    await store.check();
    await mkdir(config.stateDir, { recursive: true });
    const reader: ObjectReader = createReader(config, store);
    const namespace = new Namespace(store, { metadataTtlMs: config.metadataTtlSeconds * 1000 });
    const fs = new Filesystem({ namespace, reader, logger });
    const api = await startApiServer({ host: config.api.host, port: config.api.port, logger, cacheStats: () => [] });
    cleanups.push(() => api.close());
    const mount = await FuseMount.mount(fs, config.mountPoint, { metadataTtlSeconds: config.metadataTtlSeconds, allowOther: config.allowOther, fsName: 'strata' }, logger);
    cleanups.push(async () => {
      const how = await mount.unmount();
      logger.info({ mountPoint: config.mountPoint, how }, 'unmounted');
    });
    logger.info({ store: config.store, mountPoint: config.mountPoint, tiers: config.tiers, api: `${config.api.host}:${api.port}` }, 'mounted');
    return { api, stop: undo };
  } catch (err) {
    await undo();
    throw err;
  }
}

function createReader(_config: MountConfig, store: ObjectStore): ObjectReader {
  return new DirectReader(store);
}

/** Resolves with the first SIGINT or SIGTERM. */
function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
