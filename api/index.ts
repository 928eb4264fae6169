/**
 * The admin REST API (fastify): the routes, their request schemas (`schemas.ts`, also
 * published as the OpenAPI document) and the services they act on (`services.ts`), which
 * the daemon builds and hands in.
 */
export { buildApi, startApiServer, type ApiServer, type ApiServerConfig } from './server.js';
export type { DaemonServices, ProcessMemoryReport } from './services.js';
export { registerParamsRoutes } from './params-routes.js';
export { openApiDocument } from './openapi.js';
