import type { ApiServer, ApiServerConfig } from './server.js';

/**
 * The admin REST API (fastify): the routes, their request schemas (`schemas.ts`, also
 * published as the OpenAPI document) and the services they act on (`services.ts`), which
 * the daemon builds and hands in. `listenEarly` answers parameter lookups on the API's
 * address while the rest of the daemon starts; fastify and the routes load only when
 * `startApiServer` is called, so that early answer does not wait for them.
 */
export type { ApiServer, ApiServerConfig } from './server.js';
export type { DaemonServices, ProcessMemoryReport } from './services.js';
export { listenEarly, type EarlyApi, type EarlyApiConfig } from './early-params.js';
export { registerParamsRoutes } from './params-routes.js';

/** Starts the full API (see server.ts), taking over the early listener's socket if given one. */
export async function startApiServer(config: ApiServerConfig): Promise<ApiServer> {
  const server = await import('./server.js');
  return server.startApiServer(config);
}
