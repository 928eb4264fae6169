import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { DaemonServices } from './services.js';
import { checkedMountPath, insideMount } from './mount-paths.js';
import { pinBodySchema, prefetchBodySchema } from './schemas.js';
import { ApiError, parseOrReject } from './validate.js';

const jobParams = z.object({ id: z.string().uuid('is not a job id') });

/** Longest a `GET /v1/jobs/:id?waitMs=` holds the answer: well under any HTTP client's timeout. */
const MAX_JOB_WAIT_MS = 10_000;
const jobQuery = z.object({ waitMs: z.coerce.number().int().min(0).max(MAX_JOB_WAIT_MS).optional() }).strict();

/** `/v1/prefetch` and `/v1/jobs`: background work with progress. */
export function registerJobRoutes(app: FastifyInstance, services: DaemonServices): void {
  app.post('/v1/prefetch', async (request, reply) => {
    const body = parseOrReject(prefetchBodySchema, request.body, 'body');
    if (body.tier) {
      const configured = services.cache.stats().map((t) => t.name);
      if (!configured.includes(body.tier)) {
        throw new ApiError('API_BAD_REQUEST', `tier: "${body.tier}" is not configured on this daemon (it has ${configured.join(', ')})`);
      }
    }
    for (const path of body.paths) {
      if (path.split('/').includes('..')) throw new ApiError('API_BAD_REQUEST', `paths: ${path} may not contain ..`);
    }
    const paths = body.paths.map((p) => checkedMountPath(services, p));
    if (body.pin) {
      requirePersistentTier(services);
      for (const path of paths) await services.pins.add(path);
    }
    const job = services.prefetch(paths, { pin: body.pin, ...(body.tier ? { tier: body.tier } : {}) });
    return reply.status(202).send(job);
  });

  app.post('/v1/pins', async (request, reply) => {
    const { path } = parseOrReject(pinBodySchema, request.body, 'body');
    requirePersistentTier(services);
    const inside = checkedMountPath(services, path);
    await services.pins.add(inside);
    return reply.status(202).send(services.prefetch([inside], { kind: 'pin', pin: true }));
  });

  app.delete('/v1/pins', async (request, reply) => {
    const { path } = parseOrReject(pinBodySchema, request.body, 'body');
    const removed = await services.pins.remove(insideMount(path, services.config.mountPoint));
    if (!removed) throw new ApiError('API_NOT_FOUND', `${path} is not pinned`);
    return reply.status(204).send();
  });

  app.get('/v1/pins', async () => ({ paths: services.pins.paths() }));

  app.get('/v1/jobs', async () => ({ jobs: services.jobs.list() }));

  app.get('/v1/jobs/:id', async (request) => {
    const { id } = parseOrReject(jobParams, request.params, 'id');
    const { waitMs } = parseOrReject(jobQuery, request.query, 'query');
    // With waitMs, answer as soon as the job ends, or after waitMs with its progress then.
    if (waitMs !== undefined && waitMs > 0) return services.jobs.waitUpTo(id, waitMs);
    return services.jobs.get(id);
  });

  app.delete('/v1/jobs/:id', async (request) => {
    const { id } = parseOrReject(jobParams, request.params, 'id');
    return services.jobs.cancel(id);
  });
}

/** Pins keep blocks in pmem or NVMe; a DRAM-only daemon has nothing that outlives a restart to pin in. */
function requirePersistentTier(services: DaemonServices): void {
  if (!services.cache.stats().some((t) => t.name === 'pmem' || t.name === 'nvme')) {
    throw new ApiError('API_BAD_REQUEST', 'pin: pinning needs a pmem or nvme tier (--pmem, --nvme)');
  }
}
