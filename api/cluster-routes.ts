import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { MAX_TABLE_NAME_CHARS } from '../params/index.js';
import { ClusterError, type ClusterNode } from '../params/cluster/index.js';
import { MGET_BODY_LIMIT } from './body-limits.js';
import { clusterPublishBodySchema } from './schemas.js';
import { parseOrReject } from './validate.js';


const shardParams = z.object({ name: z.string().min(1).max(MAX_TABLE_NAME_CHARS), version: z.coerce.number().int().min(1) });
const recordsQuery = z.object({ shards: z.string().regex(/^\d{1,4}(,\d{1,4})*$/, { message: 'shards: comma-separated shard numbers' }) });
const deltaParams = z.object({ id: z.string().min(1).max(256) });

/**
 * `/v1/params/cluster`: the parameter-table cluster (docs/PARAMS.md, "Cluster").
 * - `GET /v1/params/cluster`: members, tables, versions, replication state (`{enabled: false}` outside a cluster).
 * - `POST /v1/params/cluster/tables {name, source, replicas?}`: publish; answers once committed.
 * - `POST /v1/params/cluster/:name/versions/:version/mget`: the keys of this member's shards
 *   of that version (what routers on the other members call).
 * - `GET /v1/params/cluster/:name/versions/:version/records?shards=1,2`: the rows of those
 *   shards (what a member becoming their replica copies).
 * - `GET /v1/params/cluster/deltas/:id`: a delta this member took, while its switch runs.
 * `POST /v1/params/:name/mget` and `POST /v1/params/tables/:name/delta` route cluster
 * tables (params-routes.ts).
 */
export function registerClusterRoutes(app: FastifyInstance, cluster: () => ClusterNode | undefined): void {
  const member = (): ClusterNode => {
    const node = cluster();
    if (!node) throw new ClusterError('CLUSTER_DISABLED', 'this daemon is not in a parameter-table cluster; start it with --cluster etcd://HOST:PORT/PREFIX');
    return node;
  };
  void app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    // Not an error without a cluster: `strata status` asks every daemon.
    scope.get('/v1/params/cluster', async () => {
      const node = cluster();
      return node ? { enabled: true, ...(await node.status()) } : { enabled: false };
    });

    scope.post('/v1/params/cluster/tables', async (request) => {
      const { name, source, replicas } = parseOrReject(clusterPublishBodySchema, request.body, 'body');
      return member().publish(name, source, replicas);
    });

    scope.get('/v1/params/cluster/:name/versions/:version/records', async (request, reply) => {
      const { name, version } = parseOrReject(shardParams, request.params, 'path');
      const { shards } = parseOrReject(recordsQuery, request.query, 'query');
      return reply.type('application/octet-stream').send(member().shardRecords(name, version, shards.split(',').map(Number)));
    });

    scope.get('/v1/params/cluster/deltas/:id', async (request, reply) => {
      const { id } = parseOrReject(deltaParams, request.params, 'path');
      return reply.type('application/octet-stream').send(member().deltaBody(id));
    });

    scope.post('/v1/params/cluster/:name/versions/:version/mget', { bodyLimit: MGET_BODY_LIMIT }, async (request, reply) => {
      const { name, version } = parseOrReject(shardParams, request.params, 'path');
      const answer = await member().shardMget(name, version, (request.body as Buffer | undefined) ?? Buffer.alloc(0));
      return reply.type('application/octet-stream').send(answer);
    });
  });
}
