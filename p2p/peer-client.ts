import { blockChecksum } from '../cache/index.js';
import { PeerError } from './peer-error.js';
import { blockRequestPath, CHECKSUM_HEADER, DISTRIBUTE_PATH, formatChecksum, type BlockRequest } from './protocol.js';
import { SIGNATURE_HEADER, signRequest, TIME_HEADER, verifyReply } from './signature.js';
import type { PeerRequest, PeerTransport } from './transport.js';

/** Why a block did not come from its owner; the label of `strata_p2p_fallbacks_total`. */
export type FallbackReason = 'unreachable' | 'refused' | 'unauthorized' | 'checksum' | 'signature';

/** A block request that failed, with the reason it counts under. */
export class PeerFetchError extends PeerError {
  readonly reason: FallbackReason;

  constructor(reason: FallbackReason, message: string, options?: { cause?: unknown }) {
    super('P2P_PEER_FAILED', message, options);
    this.reason = reason;
  }
}

export interface PeerClientOptions {
  readonly transport: PeerTransport;
  readonly secret: string;
  readonly clock: () => number;
  readonly connectTimeoutMs: number;
  readonly blockTimeoutMs: number;
  /** Sent as a bearer token when the peers' admin APIs require STRATA_TOKEN. */
  readonly apiToken?: string | undefined;
}

/**
 * The asking side of the protocol: signs requests, checks that a block reply is signed for
 * this request, has the length asked for and matches its checksum. Every failure is a
 * PeerFetchError naming why; nothing unverified is ever returned.
 */
export class PeerClient {
  readonly #options: PeerClientOptions;

  constructor(options: PeerClientOptions) {
    this.#options = options;
  }

  async fetchBlock(peer: string, block: BlockRequest, signal?: AbortSignal): Promise<Buffer> {
    const { secret } = this.#options;
    const request = this.#sign('GET', blockRequestPath(block), Buffer.alloc(0));
    let response;
    try {
      response = await this.#options.transport.send(peer, request, {
        connectTimeoutMs: this.#options.connectTimeoutMs,
        timeoutMs: this.#options.blockTimeoutMs,
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      throw new PeerFetchError('unreachable', `peer ${peer}: ${(err as Error).message}`, { cause: err });
    }
    if (response.status === 401) throw new PeerFetchError('unauthorized', `peer ${peer} refused our signature (is STRATA_PEER_SECRET the same on every node?)`);
    if (response.status !== 200) throw new PeerFetchError('refused', `peer ${peer} answered ${response.status}: ${response.body.subarray(0, 200).toString()}`);
    const checksum = response.headers[CHECKSUM_HEADER] ?? '';
    if (!verifyReply(secret, request.headers[SIGNATURE_HEADER]!, response.status, checksum, response.body.length, response.headers[SIGNATURE_HEADER])) {
      throw new PeerFetchError('signature', `peer ${peer} sent a block reply without a valid signature`);
    }
    if (response.body.length !== block.length) {
      throw new PeerFetchError('checksum', `peer ${peer} sent ${response.body.length} bytes, expected ${block.length}`);
    }
    if (formatChecksum(blockChecksum(response.body)) !== checksum) {
      throw new PeerFetchError('checksum', `peer ${peer} sent a block of ${block.ref.key} that fails its checksum`);
    }
    return response.body;
  }

  /** Asks `peer` to start its share of distributing `paths`; answers the job it started. */
  async startDistribute(peer: string, paths: readonly string[]): Promise<unknown> {
    const body = Buffer.from(JSON.stringify({ paths }));
    let response;
    try {
      response = await this.#options.transport.send(peer, this.#sign('POST', DISTRIBUTE_PATH, body, { 'content-type': 'application/json' }), {
        connectTimeoutMs: this.#options.connectTimeoutMs,
        timeoutMs: this.#options.blockTimeoutMs,
      });
    } catch (err) {
      throw new PeerFetchError('unreachable', `peer ${peer}: ${(err as Error).message}`, { cause: err });
    }
    const text = response.body.toString();
    if (response.status !== 202 && response.status !== 200) throw new PeerFetchError(response.status === 401 ? 'unauthorized' : 'refused', `peer ${peer} answered ${response.status}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as unknown;
  }

  #sign(method: 'GET' | 'POST', path: string, body: Buffer, extra: Record<string, string> = {}): PeerRequest {
    const time = this.#options.clock();
    const signature = signRequest(this.#options.secret, { method, path, body, time });
    return {
      method,
      path,
      body,
      headers: {
        ...extra,
        [TIME_HEADER]: String(time),
        [SIGNATURE_HEADER]: signature,
        ...(this.#options.apiToken ? { authorization: `Bearer ${this.#options.apiToken}` } : {}),
      },
    };
  }
}
