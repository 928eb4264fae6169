import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { MAX_TABLE_NAME_CHARS, ParamsError, type ParamsService } from '../params/index.js';
import type { ClusterNode } from '../params/cluster/index.js';
import { MGET_BODY_LIMIT } from './body-limits.js';
import { tablesAnswer } from './early-params.js';
import { paramsLoadBodySchema, paramsLookupBodySchema } from './schemas.js';
import { parseOrReject } from './validate.js';

const OCTET_STREAM = 'application/octet-stream';
/** A delta of about 3.7M upserts at dim 16; larger changes are a new table (POST /v1/params/tables). */
const DELTA_BODY_LIMIT = 256 * 1024 * 1024;

/** A table name in a path; the early API (early-params.ts) checks the same bounds before zod loads. */
export const nameParams = z.object({ name: z.string().min(1).max(MAX_TABLE_NAME_CHARS) });

/**
 * `/v1/params`: parameter tables (docs/PARAMS.md). Registered in its own encapsulated
 * scope so its raw-body parser applies to these routes only. mget reads the body as
 * raw bytes and answers one Buffer written by the lookup.
 */
export function registerParamsRoutes(app: FastifyInstance, service: ParamsService, cluster: () => ClusterNode | undefined = () => undefined): void {
  void app.register(async (scope) => {
    // Any non-JSON body arrives as raw bytes; each route checks the type it takes and answers 415 otherwise.
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    scope.get('/v1/params/tables', async () => tablesAnswer(service));

    scope.post('/v1/params/tables', async (request) => {
      requireType(request, 'application/json');
      const { name, source, tier } = parseOrReject(paramsLoadBodySchema, request.body, 'body');
      return service.load(name, source, tier === undefined ? {} : { tier });
    });

    scope.post('/v1/params/tables/:name/delta', { bodyLimit: DELTA_BODY_LIMIT }, async (request) => {
      const { name } = parseOrReject(nameParams, request.params, 'name');
      // A cluster table's delta goes to every replica of the shards it touches, in two phases.
      const member = cluster();
      if (member?.serves(name)) {
        requireType(request, OCTET_STREAM);
        return member.applyDelta(name, request.body as Buffer);
      }
      service.table(name); // 404 before looking at the body
      requireType(request, OCTET_STREAM);
      return service.applyDelta(name, request.body as Buffer);
    });

    scope.post('/v1/params/:name/mget', { bodyLimit: MGET_BODY_LIMIT }, async (request, reply) => {
      const { name } = parseOrReject(nameParams, request.params, 'name');
      // A table the cluster serves is answered by its shards' members, whatever this daemon holds.
      const member = cluster();
      if (member?.serves(name)) {
        requireType(request, OCTET_STREAM);
        const { answer } = await member.mget(name, (request.body as Buffer | undefined) ?? Buffer.alloc(0));
        return reply.type(OCTET_STREAM).send(answer);
      }
      service.table(name);
      requireType(request, OCTET_STREAM);
      const body = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
      const lease = await service.mgetLease(name, body);
      // 'close' comes once the answer is written out or the connection is gone: either way
      // the socket is done with the bytes and the buffer can serve the next request.
      reply.raw.once('close', lease.release);
      return reply.type(OCTET_STREAM).send(lease.bytes);
    });

    scope.post('/v1/params/:name/lookup', async (request) => {
      const { name } = parseOrReject(nameParams, request.params, 'name');
      service.table(name);
      requireType(request, 'application/json');
      const { keys } = parseOrReject(paramsLookupBodySchema, request.body, 'body');
      return service.lookup(name, keys);
    });
  });
}

function requireType(request: FastifyRequest, type: string): void {
  const given = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (given !== type) throw new ParamsError('PARAMS_UNSUPPORTED_MEDIA_TYPE', `${request.method} ${request.routeOptions.url} takes ${type}, got ${given || 'no Content-Type'}`);
}
