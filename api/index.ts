import type { FastifyInstance } from 'fastify';
import type { ParamsService } from '../params/index.js';
import type { ApiServer, ApiServerConfig } from './server.js';

/**
 * The admin REST API (fastify): the routes, their request schemas (`schemas.ts`, also
 * published as the OpenAPI document) and the services they act on (`services.ts`), which
 * the daemon builds and hands in. `listenEarly` answers parameter lookups on the API's
 * address while the rest of the daemon starts; fastify and the routes load only when
 * `startApiServer` (or `registerParamsRoutes`) is called, so that early answer does not
 * wait for them or for the request schemas (zod).
 */
export type { ApiServer, ApiServerConfig } from './server.js';
export type { DaemonServices, ProcessMemoryReport } from './services.js';
export { listenEarly, type EarlyApi, type EarlyApiConfig } from './early-params.js';

/** Registers `/v1/params` on a fastify instance of the caller's (the full API does this itself). */
export async function registerParamsRoutes(app: FastifyInstance, service: ParamsService): Promise<void> {
  (await import('./params-routes.js')).registerParamsRoutes(app, service);
}

/** Starts the full API (see server.ts), taking over the early listener's socket if given one. */
export async function startApiServer(config: ApiServerConfig): Promise<ApiServer> {
  const server = await import('./server.js');
  return server.startApiServer(config);
}
