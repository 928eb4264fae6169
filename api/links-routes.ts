import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { LINK_NAME, LinkError, eagerFilter, linkCreateSchema, linkPatchSchema, linkSyncJob } from '../links/index.js';
import type { DaemonServices } from './services.js';
import { ApiError, parseOrReject } from './validate.js';

const deleteQuery = z.object({ force: z.enum(['true', 'false', '1', '0']).optional() });


const linkNameParams = z.object({ name: z.string().regex(LINK_NAME, 'is not a link name') });

/** `/v1/links`: bucket prefixes linked into the mount (persisted; `strata serve` only). */
export function registerLinkRoutes(app: FastifyInstance, services: DaemonServices): void {
  const registry = () => {
    if (!services.registry) throw new ApiError('API_BAD_REQUEST', 'links are fixed in `strata mount`; run `strata serve` to manage links');
    return services.registry;
  };

  app.get('/v1/links', async () => ({ links: services.links.all().map((l) => l.link) }));

  app.get('/v1/links/:name', async (request) => {
    const { name } = parseOrReject(linkNameParams, request.params, 'name');
    const live = services.links.get(name);
    if (!live) throw new LinkError('LINK_NOT_FOUND', `no link named "${name}"`);
    return live.link;
  });

  app.post('/v1/links', async (request, reply) => {
    const link = parseOrReject(linkCreateSchema, request.body, 'body');
    const links = registry();
    // Check the store before persisting, so a typo in a bucket name is a 4xx, not a broken link.
    for (const other of links.list()) {
      if (other.name === link.name) throw new LinkError('LINK_EXISTS', `a link named "${link.name}" already exists`);
    }
    await services.links.check(link);
    const saved = await links.add(link);
    await services.links.add(saved, { check: false });
    if (saved.import.mode === 'eager') services.prefetch([saved.path], eagerFilter(saved));
    return reply.status(201).send(saved);
  });

  app.patch('/v1/links/:name', async (request) => {
    const { name } = parseOrReject(linkNameParams, request.params, 'name');
    const patch = parseOrReject(linkPatchSchema, request.body, 'body');
    const updated = await registry().update(name, patch);
    await services.links.add(updated, { check: false });
    return updated;
  });

  app.delete('/v1/links/:name', async (request, reply) => {
    const { name } = parseOrReject(linkNameParams, request.params, 'name');
    const { force } = parseOrReject(deleteQuery, request.query, 'query');
    const links = registry();
    const link = links.get(name);
    const pending = services.pendingUploads?.(link.path) ?? 0;
    if (pending > 0 && force !== 'true' && force !== '1') {
      throw new LinkError('LINK_BUSY', `link "${name}" has ${pending} pending upload(s); wait for them (POST /v1/uploads/flush) or remove it with ?force=true`);
    }
    await links.remove(name);
    await services.links.remove(name);
    return reply.status(204).send();
  });

  app.post('/v1/links/:name/sync', async (request, reply) => {
    const { name } = parseOrReject(linkNameParams, request.params, 'name');
    const live = services.links.get(name);
    if (!live) throw new LinkError('LINK_NOT_FOUND', `no link named "${name}"`);
    const job = services.jobs.submit(
      'sync',
      linkSyncJob({
        store: live.store,
        namespace: live.namespace,
        evict: (ref) => services.cache.evictObject(ref),
        ...(live.link.import.mode === 'eager' ? { afterSync: () => services.prefetch([live.link.path], eagerFilter(live.link)) } : {}),
      }),
    );
    return reply.status(202).send(job);
  });
}
