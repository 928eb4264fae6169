import { PeerError } from './peer-error.js';
import type { PeerRequest, PeerRequestHandler, PeerResponse, PeerTransport, SendOptions } from './transport.js';

/**
 * Peers connected in one process, without sockets: `send` calls the handler attached
 * under the peer's id. Tests use it to run several nodes side by side and to make a peer
 * vanish (`detach`) or hang (`setDelay` beyond the timeout). Requests and responses are
 * the same bytes an HTTP transport would carry, so signing and checksums are exercised.
 */
export class MemoryPeerNetwork {
  readonly #handlers = new Map<string, PeerRequestHandler>();
  readonly #delays = new Map<string, number>();
  #sent = 0;

  attach(peer: string, handler: PeerRequestHandler): void {
    this.#handlers.set(peer, handler);
  }

  /** The peer stops answering: sends to it fail at once, as a refused connection does. */
  detach(peer: string): void {
    this.#handlers.delete(peer);
  }

  /** Every answer of `peer` is held back this long (ms) before it is delivered. */
  setDelay(peer: string, ms: number): void {
    this.#delays.set(peer, ms);
  }

  /** Requests sent over this network so far. */
  get sent(): number {
    return this.#sent;
  }

  /** A transport over this network; `tamper` may change each response (a faulty peer). */
  transport(tamper?: (peer: string, response: PeerResponse) => PeerResponse): PeerTransport {
    return {
      send: (peer, request, options) => this.#send(peer, request, options, tamper),
      close: async () => undefined,
    };
  }

  async #send(peer: string, request: PeerRequest, options: SendOptions, tamper?: (peer: string, response: PeerResponse) => PeerResponse): Promise<PeerResponse> {
    this.#sent += 1;
    const handler = this.#handlers.get(peer);
    if (handler === undefined) throw new PeerError('P2P_PEER_FAILED', 'connection refused');
    const copy: PeerRequest = { ...request, headers: { ...request.headers }, body: Buffer.from(request.body) };
    const answer = (async () => {
      const response = await handler(copy);
      const delay = this.#delays.get(peer) ?? 0;
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      const delivered: PeerResponse = { ...response, headers: { ...response.headers }, body: Buffer.from(response.body) };
      return tamper ? tamper(peer, delivered) : delivered;
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PeerError('P2P_PEER_FAILED', `no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    });
    try {
      return await Promise.race([answer, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
