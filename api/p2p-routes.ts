import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PeerError } from '../p2p/index.js';
import type { DaemonServices } from './services.js';
import { checkedMountPath } from './mount-paths.js';
import { distributeBodySchema } from './schemas.js';
import { ApiError, parseOrReject } from './validate.js';

/**
 * Peer-to-peer routes. `/v1/p2p/*` carry signed peer requests: their bodies stay raw bytes
 * (the signature covers them) and PeerNode answers them. `/v1/distribute` and
 * `GET /v1/p2p/peers` are admin routes.
 */
export function registerP2pRoutes(app: FastifyInstance, services: DaemonServices): void {
  app.post('/v1/distribute', async (request, reply) => {
    const body = parseOrReject(distributeBodySchema, request.body, 'body');
    for (const path of body.paths) {
      if (path.split('/').includes('..')) throw new ApiError('API_BAD_REQUEST', `paths: ${path} may not contain ..`);
    }
    const { job, peers } = await services.distribute(body.paths.map((p) => checkedMountPath(services, p)));
    return reply.status(202).send({ ...job, peers });
  });

  app.get('/v1/p2p/peers', async () => {
    const node = services.peers;
    return node ? { enabled: true, self: node.membership.self ?? null, peers: node.peers() } : { enabled: false, self: null, peers: [] };
  });

  // Encapsulated, so the raw-body parser applies to the signed peer routes only.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    const handle = async (request: FastifyRequest, reply: FastifyReply) => {
      const node = services.peers;
      if (!node) throw new PeerError('P2P_DISABLED', 'peer-to-peer block sharing is off on this daemon (start it with --peers)');
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers)) if (typeof value === 'string') headers[name] = value;
      const answer = await node.handle({
        method: request.method === 'POST' ? 'POST' : 'GET',
        path: request.url,
        headers,
        body: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
      });
      return reply.status(answer.status).headers(answer.headers).send(answer.body);
    };
    scope.get('/v1/p2p/blocks', handle);
    scope.post('/v1/p2p/distribute', handle);
  });
}
