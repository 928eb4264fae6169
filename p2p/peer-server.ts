import { blockChecksum } from '../cache/index.js';
import type { ObjectRef } from '../store/index.js';
import { StrataError } from '../errors/index.js';
import type { Logger } from '../telemetry/index.js';
import { p2pMetrics } from './metrics.js';
import { PeerError } from './peer-error.js';
import { BLOCKS_PATH, CHECKSUM_HEADER, DISTRIBUTE_PATH, formatChecksum, parseBlockRequest } from './protocol.js';
import { MAX_CLOCK_SKEW_MS, SIGNATURE_HEADER, signReply, TIME_HEADER, verifyRequest } from './signature.js';
import type { PeerRequest, PeerResponse } from './transport.js';

/** What the daemon provides to serve peers. */
export interface PeerServing {
  /**
   * Bytes [start, start + length) of `ref`, read through this daemon's block cache so that
   * concurrent askers of one block share one store fetch, with a session opened with
   * `origin: 'peer'` (the block is fetched from the store, never forwarded to another
   * peer). Throws StrataError as a read does.
   */
  readBlock(ref: ObjectRef, start: number, length: number): Promise<Buffer>;
  /** Starts this daemon's share of a distribution (mount paths); answers the job status. */
  startDistribute(paths: readonly string[]): unknown;
}

export interface PeerServerOptions {
  readonly secret: string;
  readonly clock: () => number;
  readonly logger: Logger;
}

/**
 * Distribute requests remembered against replay. A distribution is started by an admin, a
 * few a minute at most; 10,000 in one window would be an attack, and the oldest are dropped.
 */
const MAX_REMEMBERED = 10_000;

/** Upper bound on a distribute request's path list; matches the admin API's prefetch limit. */
const MAX_DISTRIBUTE_PATHS = 100_000;

/**
 * The serving side of the protocol, independent of how bytes travel: checks the
 * signature and timestamp (401 P2P_UNAUTHORIZED otherwise), then serves a block (200,
 * with its CRC-32 and a reply signature bound to the request) or starts a distribution
 * (202). Errors answer `{statusCode, code, message}` like every admin route.
 */
export class PeerServer {
  readonly #options: PeerServerOptions;
  #serving: PeerServing | undefined;
  /** Signatures of requests that started work, with when they stop being valid, oldest first. */
  readonly #used = new Map<string, number>();

  constructor(options: PeerServerOptions) {
    this.#options = options;
  }

  /**
   * Whether this is the first use of a request signature within the window a signature is
   * valid (MAX_CLOCK_SKEW_MS either side of its time). Remembers at most MAX_REMEMBERED.
   */
  #firstUse(signature: string, time: number): boolean {
    const now = this.#options.clock();
    for (const [seen, at] of this.#used) {
      if (now - at <= MAX_CLOCK_SKEW_MS) break; // insertion order is arrival order, near enough to time order
      this.#used.delete(seen);
    }
    if (this.#used.has(signature)) return false;
    if (this.#used.size >= MAX_REMEMBERED) this.#used.delete(this.#used.keys().next().value!);
    this.#used.set(signature, Math.max(now, time));
    return true;
  }

  /** Connects the daemon's cache and jobs; until then every request answers 503. */
  attach(serving: PeerServing): void {
    this.#serving = serving;
  }

  async handle(request: PeerRequest): Promise<PeerResponse> {
    try {
      const signature = request.headers[SIGNATURE_HEADER];
      const time = Number(request.headers[TIME_HEADER] ?? NaN);
      const verdict = verifyRequest(this.#options.secret, { method: request.method, path: request.path, body: request.body, time }, signature, this.#options.clock());
      if (!verdict.ok) {
        p2pMetrics.rejected.inc();
        throw new PeerError('P2P_UNAUTHORIZED', `peer request refused: ${verdict.reason}`);
      }
      const serving = this.#serving;
      if (serving === undefined) return json(503, { statusCode: 503, code: 'P2P_PEER_FAILED', message: 'this daemon is still starting' });
      const cut = request.path.indexOf('?');
      const pathname = cut < 0 ? request.path : request.path.slice(0, cut);
      if (request.method === 'GET' && pathname === BLOCKS_PATH) {
        const block = parseBlockRequest(cut < 0 ? '' : request.path.slice(cut + 1));
        const bytes = await serving.readBlock(block.ref, block.start, block.length);
        const checksum = formatChecksum(blockChecksum(bytes));
        p2pMetrics.blocksServed.inc();
        p2pMetrics.bytesServed.inc(bytes.length);
        return {
          status: 200,
          headers: {
            'content-type': 'application/octet-stream',
            [CHECKSUM_HEADER]: checksum,
            [SIGNATURE_HEADER]: signReply(this.#options.secret, signature!, 200, checksum, bytes.length),
          },
          body: bytes,
        };
      }
      if (request.method === 'POST' && pathname === DISTRIBUTE_PATH) {
        // A signed request stays valid for the clock-skew window: one that starts work is
        // accepted once. (A block GET reads and starts nothing, so a replay of it is harmless.)
        if (!this.#firstUse(signature!, time)) {
          p2pMetrics.rejected.inc();
          throw new PeerError('P2P_UNAUTHORIZED', 'peer request refused: replayed (this signature was already used)');
        }
        const paths = parsePaths(request.body);
        return json(202, serving.startDistribute(paths));
      }
      throw new PeerError('P2P_DISABLED', `no peer route ${request.method} ${pathname}`);
    } catch (err) {
      if (err instanceof StrataError) {
        if (err.statusCode >= 500) this.#options.logger.warn({ err: err.message, code: err.code }, 'peer request failed');
        return json(err.statusCode, { statusCode: err.statusCode, code: err.code, message: err.message });
      }
      this.#options.logger.error({ err }, 'peer request failed');
      return json(500, { statusCode: 500, code: 'INTERNAL', message: 'internal error; see the daemon log' });
    }
  }
}

function parsePaths(body: Buffer): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString());
  } catch {
    throw new PeerError('API_BAD_REQUEST', 'body: not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null) throw new PeerError('API_BAD_REQUEST', 'body: must be a JSON object {"paths": [...]}');
  const paths = (parsed as { paths?: unknown }).paths;
  if (!Array.isArray(paths) || paths.length === 0 || paths.length > MAX_DISTRIBUTE_PATHS || !paths.every((p) => typeof p === 'string' && p.startsWith('/') && !p.split('/').includes('..'))) {
    throw new PeerError('API_BAD_REQUEST', 'paths: must be a non-empty list of absolute paths inside the mount, without ..');
  }
  return paths as string[];
}

function json(status: number, value: unknown): PeerResponse {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8' }, body: Buffer.from(JSON.stringify(value)) };
}
