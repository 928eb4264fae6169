import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { CsiNodeDriver, httpLinkApi, startCsiServer } from '../csi/index.js';
import { createLogger } from '../telemetry/index.js';
import { apiBase } from './api-client.js';
import { UsageError } from './usage-error.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** The driver's name in CSIDriver objects and PersistentVolumes (`csi.driver`). */
const DRIVER_NAME = 'csi.strata.io';
/** How often binds left dead by a daemon restart are looked for: a pod sees its volume again within this. */
const REPAIR_INTERVAL_MS = 2_000;

/**
 * `strata csi --endpoint unix:///csi/csi.sock --mount DIR [--node-id NAME] [--api HOST:PORT]`:
 * the Kubernetes CSI node plugin for the `strata serve` daemon on this node, until SIGTERM.
 */
export async function runCsi(values: Values, positionals: string[]): Promise<number> {
  const endpoint = typeof values.endpoint === 'string' ? values.endpoint : undefined;
  const mount = typeof values.mount === 'string' ? values.mount : undefined;
  if (!endpoint || !mount || positionals.length > 0) {
    throw new UsageError('USAGE', 'csi needs --endpoint and --mount: strata csi --endpoint unix:///csi/csi.sock --mount /var/lib/strata/mnt');
  }
  const logger = createLogger({ level: 'info' });
  const driver = new CsiNodeDriver({ api: httpLinkApi(apiBase(values.api)), mountRoot: resolve(mount), logger: logger.child({ component: 'csi' }) });
  const server = await startCsiServer({
    endpoint,
    driverName: DRIVER_NAME,
    version: '0.1.0',
    nodeId: typeof values['node-id'] === 'string' ? values['node-id'] : hostname(),
    driver,
    logger: logger.child({ component: 'csi' }),
  });
  process.stdout.write(`strata: CSI node plugin ${DRIVER_NAME} listening on ${endpoint}\n`);
  const repair = setInterval(() => void driver.repairStaleTargets().catch((err: unknown) => logger.warn({ err }, 'repair of stale volume binds failed')), REPAIR_INTERVAL_MS);
  await new Promise<void>((done) => {
    process.once('SIGTERM', done);
    process.once('SIGINT', done);
  });
  clearInterval(repair);
  await server.close();
  return 0;
}
