/**
 * The composition root: `Daemon` builds the tiers, links, write path, file system, peers,
 * parameter tables and the API from one `DaemonConfig`, and stops them in order.
 */
export { Daemon } from './daemon.js';
export { FetchScheduler } from './fetch-scheduler.js';
