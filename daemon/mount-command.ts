import { createLogger } from '../telemetry/index.js';
import { UsageError } from './cli.js';
import { daemonConfig, type MountOptionsInput } from './config.js';
import { Daemon } from './daemon.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** `strata mount <store-url> <mountpoint>`: one link at the root; serves until SIGINT or SIGTERM, then exits 0. */
export async function runMount(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length !== 2) {
    throw new UsageError('USAGE', 'mount needs a store URL and a mount point: strata mount s3://bucket/prefix /mnt/x');
  }
  return runDaemon({ ...daemonOptions(values), store: positionals[0]!, mountPoint: positionals[1]! }, 'mounted');
}

/** `strata serve --mount DIR`: links from the state dir, managed through the API. */
export async function runServe(values: Values, positionals: string[]): Promise<number> {
  const mountPoint = typeof values.mount === 'string' ? values.mount : undefined;
  if (!mountPoint || positionals.length > 0) throw new UsageError('USAGE', 'serve needs --mount DIR and no other arguments: strata serve --mount /mnt/strata');
  return runDaemon({ ...daemonOptions(values), mountPoint }, 'serving');
}

function daemonOptions(values: Values): Omit<MountOptionsInput, 'mountPoint'> {
  const str = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  return {
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
    fuse: str('fuse') as never,
    readOnly: values['read-only'] === true,
    staging: str('staging'),
    peers: str('peers'),
    advertise: str('advertise'),
    peerTimeout: str('peer-timeout'),
    lookupThreads: str('lookup-threads'),
    logLevel: str('log-level') as never,
  };
}

async function runDaemon(input: MountOptionsInput, verb: string): Promise<number> {
  const config = daemonConfig(input);
  const logger = createLogger({ level: config.logLevel });
  const daemon = await Daemon.start(config, logger);
  const what = config.store ? `${config.store} at ${config.mountPoint}` : `links of ${config.stateDir} at ${config.mountPoint}`;
  process.stdout.write(`strata: ${verb} ${what} (admin API http://${config.api.host}:${daemon.api.port}); Ctrl-C unmounts\n`);
  const signal = await waitForSignal();
  logger.info({ signal }, 'shutting down');
  await daemon.stop();
  return 0;
}

/** Resolves with the first SIGINT or SIGTERM; a second one during shutdown ends the process at once. */
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
