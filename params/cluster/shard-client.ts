import { Agent, request } from 'node:http';
import { ClusterError } from './cluster-error.js';

/**
 * Connections kept open to each member: the routing hop then costs a request on a warm
 * socket, not a TCP handshake. 16 sockets per member cover the concurrent batches of a
 * busy router without unbounded fan-out.
 */
const agent = new Agent({ keepAlive: true, maxSockets: 16 });
/** A shard lookup that takes longer than this counts as failed and goes to another replica. */
const SHARD_TIMEOUT_MS = 5000;

/** How a shard request to another member ended, when it did not answer. */
export type ShardFailure = 'unreachable' | 'version-gone' | 'failed';

export class ShardRequestError extends Error {
  readonly kind: ShardFailure;
  constructor(kind: ShardFailure, message: string) {
    super(message);
    this.kind = kind;
  }
}

/**
 * Asks the member at `api` for `keys` in its copy of `version` of table `name`
 * (`POST /v1/params/cluster/:name/versions/:version/mget`): answers the mget body of
 * those keys. Throws ShardRequestError: `unreachable` (connection refused, reset, timeout),
 * `version-gone` (the member no longer holds that version), `failed` (any other answer).
 */
export function shardMget(api: string, name: string, version: number, keys: Buffer, token: string | undefined): Promise<Buffer> {
  const url = new URL(`/v1/params/cluster/${encodeURIComponent(name)}/versions/${version}/mget`, api);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'content-length': keys.length };
    if (token) headers.authorization = `Bearer ${token}`;
    const req = request(url, { method: 'POST', agent, headers, timeout: SHARD_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new ShardRequestError('unreachable', err.message)));
      res.on('end', () => {
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        if (res.statusCode === 200) return resolve(body);
        let code = '';
        try {
          code = (JSON.parse(body.toString()) as { code?: string }).code ?? '';
        } catch {
          // not JSON: reported by status below
        }
        const kind: ShardFailure = code === 'CLUSTER_VERSION_GONE' ? 'version-gone' : 'failed';
        reject(new ShardRequestError(kind, `${url.host} answered ${res.statusCode} ${code}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${SHARD_TIMEOUT_MS} ms`)));
    req.on('error', (err) => reject(new ShardRequestError('unreachable', `${url.host}: ${err.message}`)));
    req.end(keys);
  });
}

/** The error a router answers when no replica of some shard could answer. */
export function noReplica(name: string, shard: number, why: string): ClusterError {
  return new ClusterError('CLUSTER_UNAVAILABLE', `table ${name}: no replica of shard ${shard} answered (${why})`);
}
