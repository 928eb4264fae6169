import type { Daemon } from './daemon.js';

/**
 * The composition root: `Daemon` builds the tiers, links, write path, file system, peers,
 * parameter tables and the API from one `DaemonConfig`, and stops them in order.
 * `startParamsEarly` recovers parameter tables and answers their lookups first; the rest
 * loads with `loadDaemon`, so that early answer does not wait for it.
 */
export type { Daemon } from './daemon.js';
export { startParamsEarly, type EarlyStart } from './params-start.js';

/** Loads the daemon's modules (FUSE, the S3 client, fastify, peers) and answers its class. */
export async function loadDaemon(): Promise<typeof Daemon> {
  return (await import('./daemon.js')).Daemon;
}
