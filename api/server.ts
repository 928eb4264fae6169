import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import { StrataError } from '../errors/index.js';
import { metricsRegistry, metricsText, pinoOf, type Logger } from '../telemetry/index.js';
import type { DaemonServices } from './services.js';
import { registerEventRoutes } from './events-routes.js';
import { registerJobRoutes } from './jobs-routes.js';
import { registerLinkRoutes } from './links-routes.js';
import { registerParamsRoutes } from './params-routes.js';
import { registerClusterRoutes } from './cluster-routes.js';
import { registerUploadRoutes } from './uploads-routes.js';
import { registerP2pRoutes } from './p2p-routes.js';
import type { EarlyApi } from './early-params.js';
import { openApiDocument } from './openapi.js';
import { ApiError, requireBearer } from './validate.js';

export interface ApiServerConfig {
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly logger: Logger;
  readonly services: DaemonServices;
  /** Bearer token every route but /healthz requires; defaults to the daemon's (STRATA_TOKEN). */
  readonly token?: string | undefined;
  /** The socket start-up opened for parameter lookups (listenEarly): the API takes it over instead of listening. */
  readonly early?: EarlyApi | undefined;
}

export interface ApiServer {
  readonly port: number;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

/** Request bodies beyond this are refused with 413; the largest admin body (a prefetch manifest) fits. */
const BODY_LIMIT_BYTES = 8 * 1024 * 1024;

/**
 * fastify's JSON-schema compilers (ajv, fast-json-stringify: about 300 modules), loaded the
 * first time a route with a fastify `schema` needs one. The routes validate their bodies
 * with zod (schemas.ts) and declare none, so a daemon never loads them and its mount is up
 * that much sooner (bench/startup.ts); the compilers are fastify's own defaults, built the
 * way fastify builds them, should a route ever declare a schema.
 */
const loadPackage = createRequire(createRequire(import.meta.url).resolve('fastify'));
type CompilerBuilder = (externalSchemas: unknown, options: unknown) => unknown;
let validatorBuilder: CompilerBuilder | undefined;
let serializerBuilder: CompilerBuilder | undefined;
const lazyCompilers = {
  buildValidator: (externalSchemas: unknown, options: unknown) => (validatorBuilder ??= (loadPackage('@fastify/ajv-compiler') as () => CompilerBuilder)())(externalSchemas, options),
  buildSerializer: (externalSchemas: unknown, options: unknown) => (serializerBuilder ??= (loadPackage('@fastify/fast-json-stringify-compiler') as () => CompilerBuilder)())(externalSchemas, options),
};

/** Builds the admin API without listening, for `fastify.inject()` tests. */
export function buildApi(config: Omit<ApiServerConfig, 'host' | 'port'>): FastifyInstance {
  const { services, early } = config;
  const token = config.token ?? services.config.secrets.token;
  const app: FastifyInstance = Fastify({
    ...(early
      ? {
          serverFactory: (handler: (request: IncomingMessage, response: ServerResponse) => void) => {
            early.handOver(handler);
            return early.server;
          },
        }
      : {}),
    schemaController: { compilersFactory: lazyCompilers as never },
    loggerInstance: pinoOf(config.logger.child({ component: 'api' })) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    // One log line per request would drown the daemon's own lines; failures are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    // Errors fastify's router raises before any route runs (a malformed %-escape, a path
    // parameter over maxParamLength) answer with catalogue codes like every other error.
    frameworkErrors: (err, _request, reply) => {
      // The reply's generic type depends on a route schema there is none of yet.
      void (reply as unknown as FastifyReply).status(400).send({ statusCode: 400, code: 'API_BAD_REQUEST', message: err.message.slice(0, 200) });
    },
  });

  app.setErrorHandler((err: unknown, _request, reply) => {
    if (err instanceof StrataError) {
      return reply.status(err.statusCode).send({ statusCode: err.statusCode, code: err.code, message: err.message });
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    const status = e.statusCode ?? 500;
    if (status >= 500) config.logger.error({ err }, 'admin API request failed');
    const code = status === 413 ? 'API_BODY_TOO_LARGE' : status === 404 ? 'API_NOT_FOUND' : status >= 500 ? 'INTERNAL' : 'API_BAD_REQUEST';
    // fastify's own 4xx (bad JSON, wrong content type) carry a useful message; 5xx details stay in the log.
    const message = status >= 500 ? 'internal error; see the daemon log' : (e.message ?? 'bad request');
    return reply.status(status).send({ statusCode: status, code, message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ statusCode: 404, code: 'API_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );

  if (token) {
    const expected = Buffer.from(`Bearer ${token}`);
    app.addHook('onRequest', async (request) => {
      if (request.url === '/healthz') return;
      requireBearer(request.headers.authorization, expected);
    });
  }

  app.get('/healthz', async (_request, reply) => {
    const healthy = services.healthy();
    return reply.status(healthy ? 200 : 503).send({ ok: healthy });
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metricsRegistry.contentType);
    return metricsText();
  });
  app.get('/v1/mount', async (_request, reply) => {
    const fuse = services.mountInfo();
    if (!fuse) return reply.status(503).send({ error: { code: 'API_UNREACHABLE', message: 'not mounted yet' } });
    return { mountPoint: services.config.mountPoint, fuse };
  });
  app.get('/v1/cache', async () => {
    const process = services.processMemory?.();
    return { tiers: services.cache.stats(), fetch: services.cache.fetchStats(), memory: { ...services.cache.memory(), ...(process ? { process } : {}) } };
  });
  app.get('/v1/openapi.json', async () => openApiDocument());
  registerLinkRoutes(app, services);
  registerJobRoutes(app, services);
  registerEventRoutes(app, services);
  registerUploadRoutes(app, services);
  // Services built without a cluster (tests' fakes) have no cluster accessor.
  const cluster = () => services.cluster?.();
  registerParamsRoutes(app, services.params, cluster);
  registerClusterRoutes(app, cluster);
  registerP2pRoutes(app, services);
  return app;
}

export async function startApiServer(config: ApiServerConfig): Promise<ApiServer> {
  const app = buildApi(config);
  if (config.early) {
    // The socket listens already (and has answered lookups): routes go live once fastify is ready.
    const { early } = config;
    await app.ready();
    early.switchOver();
    return { port: early.port, app, close: async () => ((await app.close()), await early.close()) };
  }
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  return { port, app, close: () => app.close() };
}
