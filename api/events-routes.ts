import type { FastifyInstance } from 'fastify';
import { parseStoreUrl } from '../store/index.js';
import { objectEvents, s3EventSchema } from '../links/index.js';
import type { DaemonServices } from './services.js';
import { parseOrReject } from './validate.js';

/**
 * `POST /v1/events`: S3 event notifications. A created or removed object is forgotten at
 * once by every link that shows it; with `import.onEvent: "preload"` a created object is
 * prefetched too. Events for buckets no link shows are counted and ignored.
 */
export function registerEventRoutes(app: FastifyInstance, services: DaemonServices): void {
  app.post('/v1/events', async (request, reply) => {
    const body = parseOrReject(s3EventSchema, request.body, 'body');
    let matched = 0;
    const preload: string[] = [];
    for (const event of objectEvents(body)) {
      for (const live of services.links.all()) {
        const target = parseStoreUrl(live.link.store);
        if (target.scheme !== 's3' || target.bucket !== event.bucket || !event.key.startsWith(target.prefix)) continue;
        const inner = `/${event.key.slice(target.prefix.length)}`;
        live.namespace.invalidate(inner);
        matched++;
        if (event.kind === 'created' && live.link.import.onEvent === 'preload') {
          preload.push(live.link.path === '/' ? inner : `${live.link.path}${inner}`);
        }
      }
    }
    const job = preload.length > 0 ? services.prefetch(preload, { kind: 'event-preload' }) : undefined;
    return reply.status(202).send({ records: body.Records.length, matched, ...(job ? { job: job.id } : {}) });
  });
}
