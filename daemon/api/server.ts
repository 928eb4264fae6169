import Fastify from 'fastify';
import { StrataError } from '../../errors/index.js';
import { metricsRegistry, type Logger } from '../../telemetry/index.js';

/** One tier's figures as `GET /v1/cache` answers them. */
export interface TierStatus {
  readonly name: string;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly hits: number;
  readonly misses: number;
  readonly evictions: number;
}

export interface ApiServerConfig {
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly logger: Logger;
  readonly cacheStats: () => readonly TierStatus[];
  /** Answers whether the mount is serving; `/healthz` is 503 when not. */
  readonly healthy?: () => boolean;
}

export interface ApiServer {
  readonly port: number;
  readonly app: ReturnType<typeof buildApi>;
  close(): Promise<void>;
}

/** Request bodies beyond this are refused with 413; no admin body needs more. */
const BODY_LIMIT_BYTES = 1024 * 1024;

/** Builds the admin API without listening, for `fastify.inject()` tests. */
export function buildApi(config: Omit<ApiServerConfig, 'host' | 'port'>) {
  const app = Fastify({ loggerInstance: config.logger.child({ component: 'api' }), bodyLimit: BODY_LIMIT_BYTES, disableRequestLogging: true });
  app.setErrorHandler((err: unknown, _request, reply) => {
    if (err instanceof StrataError) {
      return reply.status(err.statusCode).send({ statusCode: err.statusCode, code: err.code, message: err.message });
    }
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    if (status >= 500) config.logger.error({ err }, 'admin API request failed');
    const code = status === 413 ? 'API_BODY_TOO_LARGE' : status >= 500 ? 'INTERNAL' : 'API_BAD_REQUEST';
    return reply.status(status).send({ statusCode: status, code, message: status >= 500 ? 'internal error; see the daemon log' : (err as Error).message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ statusCode: 404, code: 'API_NOT_FOUND', message: `no route ${request.method} ${request.url}` }),
  );
  app.get('/healthz', async (_request, reply) => {
    const healthy = config.healthy?.() ?? true;
    return reply.status(healthy ? 200 : 503).send({ ok: healthy });
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metricsRegistry.contentType);
    return metricsRegistry.metrics();
  });
  app.get('/v1/cache', async () => ({ tiers: config.cacheStats() }));
  return app;
}

export async function startApiServer(config: ApiServerConfig): Promise<ApiServer> {
  const app = buildApi(config);
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  return { port, app, close: () => app.close() };
}
