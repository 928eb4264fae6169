import { z } from 'zod';
import { linkCreateSchema, linkPatchSchema, s3EventSchema } from '../links/index.js';
import { distributeBodySchema, flushBodySchema, paramsLoadBodySchema, paramsLookupBodySchema, pinBodySchema, prefetchBodySchema } from './schemas.js';

const errorSchema = {
  type: 'object',
  required: ['statusCode', 'code', 'message'],
  properties: { statusCode: { type: 'integer' }, code: { type: 'string', description: 'stable code, see docs/ERRORS.md' }, message: { type: 'string' } },
};

/** JSON Schema of a request body, from the same zod schema the route validates with. */
function body(schema: z.ZodType) {
  return { required: true, content: { 'application/json': { schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) } } };
}

function answers(codes: Record<string, string>) {
  return Object.fromEntries(
    Object.entries(codes).map(([status, description]) => [
      status,
      Number(status) >= 400 ? { description, content: { 'application/json': { schema: errorSchema } } } : { description },
    ]),
  );
}

/** The OpenAPI 3.1 description served at `/v1/openapi.json`. */
export function openApiDocument(): Record<string, unknown> {
  const name = [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }];
  const id = [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }];
  return {
    openapi: '3.1.0',
    info: { title: 'Strata admin API', version: '1' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'required on every route but /healthz when STRATA_TOKEN is set' } } },
    security: [{ bearer: [] }],
    paths: {
      '/healthz': { get: { security: [], responses: answers({ 200: 'the mount is serving', 503: 'not mounted' }) } },
      '/metrics': { get: { responses: answers({ 200: 'Prometheus text format' }) } },
      '/v1/cache': { get: { responses: answers({ 200: 'per tier {name, capacityBytes, usedBytes, hits, misses, evictions}' }) } },
      '/v1/mount': { get: { responses: answers({ 200: '{mountPoint, fuse: {path: native|fuse-native, passthrough, kernelMetadataSeconds, maxRequestBytes}}', 503: 'not mounted' }) } },
      '/v1/links': {
        get: { responses: answers({ 200: '{links: [...]}' }) },
        post: { requestBody: body(linkCreateSchema), responses: answers({ 201: 'the link', 400: 'invalid body or store', 404: 'bucket not found', 409: 'name taken or path overlaps' }) },
      },
      '/v1/links/{name}': {
        get: { parameters: name, responses: answers({ 200: 'the link', 404: 'no such link' }) },
        patch: { parameters: name, requestBody: body(linkPatchSchema), responses: answers({ 200: 'the updated link', 400: 'invalid body', 404: 'no such link' }) },
        delete: {
          parameters: [...name, { name: 'force', in: 'query', schema: { type: 'boolean' } }],
          responses: answers({ 204: 'removed', 404: 'no such link', 409: 'pending uploads (use force)' }),
        },
      },
      '/v1/links/{name}/sync': { post: { parameters: name, responses: answers({ 202: 'a job', 404: 'no such link' }) } },
      '/v1/prefetch': { post: { requestBody: body(prefetchBodySchema), responses: answers({ 202: '{id, ...job}', 400: 'invalid body' }) } },
      '/v1/pins': {
        get: { responses: answers({ 200: '{paths: [...]}' }) },
        post: { requestBody: body(pinBodySchema), responses: answers({ 202: 'a job that reads and pins the path', 400: 'invalid body or no persistent tier' }) },
        delete: { requestBody: body(pinBodySchema), responses: answers({ 204: 'unpinned', 404: 'not pinned' }) },
      },
      '/v1/jobs': { get: { responses: answers({ 200: '{jobs: [...]}' }) } },
      '/v1/jobs/{id}': {
        get: {
          parameters: [...id, { name: 'waitMs', in: 'query', required: false, description: 'answer once the job ends or after this many ms (at most 10,000)', schema: { type: 'integer', minimum: 0, maximum: 10_000 } }],
          responses: answers({ 200: '{id, kind, state, filesDone, filesTotal, bytesDone, bytesTotal, error?}', 400: 'bad waitMs', 404: 'no such job' }),
        },
        delete: { parameters: id, responses: answers({ 200: 'the job, cancelled', 404: 'no such job' }) },
      },
      '/v1/distribute': { post: { requestBody: body(distributeBodySchema), responses: answers({ 202: 'the local job and the jobs started on peers', 400: 'invalid body', 404: 'peers not enabled' }) } },
      '/v1/p2p/peers': { get: { responses: answers({ 200: 'peers with their state (up, down, retry time)', 404: 'peers not enabled' }) } },
      '/v1/p2p/blocks': { get: { security: [], description: 'peer to peer only: signed with STRATA_PEER_SECRET (docs/P2P.md)', responses: answers({ 200: 'the block bytes with their CRC-32', 401: 'bad signature' }) } },
      '/v1/p2p/distribute': { post: { security: [], description: 'peer to peer only: signed with STRATA_PEER_SECRET (docs/P2P.md)', responses: answers({ 202: 'a job', 401: 'bad signature' }) } },
      '/v1/uploads': { get: { responses: answers({ 200: '{uploads: [{path, key, bytes, uploadedBytes, state, attempts, lastError?}], stagingUsedBytes}' }) } },
      '/v1/uploads/flush': { post: { requestBody: body(flushBodySchema), responses: answers({ 200: 'everything (or that file) is in the store', 400: 'not a file in a link' }) } },
      '/v1/events': { post: { requestBody: body(s3EventSchema), responses: answers({ 202: '{records, matched, job?}', 400: 'not an S3 event notification' }) } },
      '/v1/params/tables': {
        get: { responses: answers({ 200: '{tables: [{name, version, keys, dim, shards, tier, bytes, source, mapping, kernel, residentBytes}]}' }) },
        post: {
          requestBody: body(paramsLoadBodySchema),
          responses: answers({ 200: 'the table served now', 400: 'invalid body or unreadable source', 404: 'source not in the store', 415: 'not JSON', 422: 'the table failed validation', 507: 'no tier has room' }),
        },
      },
      '/v1/params/tables/{name}/delta': {
        post: {
          parameters: name,
          requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary', description: 'delta body (docs/PARAMS.md)' } } } },
          responses: answers({ 200: 'the new version', 400: 'malformed delta', 404: 'no such table', 415: 'not application/octet-stream' }),
        },
      },
      '/v1/params/{name}/mget': {
        post: {
          parameters: name,
          requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary', description: 'N little-endian uint64 keys' } } } },
          responses: answers({ 200: 'found bitmap padded to 4 bytes, then N x dim float32 (application/octet-stream)', 400: 'not a multiple of 8 bytes', 404: 'no such table', 413: 'more than 100,000 keys', 415: 'not application/octet-stream' }),
        },
      },
      '/v1/params/{name}/lookup': {
        post: { parameters: name, requestBody: body(paramsLookupBodySchema), responses: answers({ 200: '{found, vectors}', 400: 'a key is not a decimal uint64', 404: 'no such table', 413: 'too many keys' }) },
      },
    },
  };
}
