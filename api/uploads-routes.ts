import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { DaemonServices } from './services.js';
import { insideMount } from './mount-paths.js';
import { flushBodySchema } from './schemas.js';
import { ApiError, parseOrReject } from './validate.js';


/** `/v1/uploads`: closed files on their way to the store. */
export function registerUploadRoutes(app: FastifyInstance, services: DaemonServices): void {
  app.get('/v1/uploads', async () => {
    const byStore = new Map(services.links.all().map((l) => [l.storeId, l.link.path]));
    return {
      uploads: services.writes.uploads().map((u) => {
        const root = byStore.get(u.storeId);
        return { ...u, ...(root !== undefined ? { path: `${root === '/' ? '' : root}/${u.key}` } : {}) };
      }),
      stagingUsedBytes: services.writes.stagingUsedBytes(),
    };
  });

  /** Answers once everything (or the file at `path`) is committed to the store. */
  app.post('/v1/uploads/flush', async (request) => {
    const { path } = parseOrReject(flushBodySchema, request.body, 'body');
    if (path === undefined) {
      await services.writes.flush(undefined, 'inStore');
      return { flushed: 'all' };
    }
    const route = services.links.routes().route(insideMount(path, services.config.mountPoint));
    if (!route || route.kind !== 'link' || !route.link.storeId) throw new ApiError('API_BAD_REQUEST', `path: ${path} is not a file inside a link`);
    await services.writes.flush({ storeId: route.link.storeId, key: route.innerPath.replace(/^\/+/, '') }, 'inStore');
    return { flushed: path };
  });
}
