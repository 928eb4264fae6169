import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { PeerError } from './peer-error.js';
import type { PeerRequest, PeerResponse, PeerTransport, SendOptions } from './transport.js';

/**
 * Sockets kept open per peer: the cache fetches up to this many blocks at once and a peer
 * asks an owner for at most that many, so connections are reused rather than opened per block.
 */
const MAX_SOCKETS_PER_PEER = 16;

/**
 * Peer requests over HTTP(S) to the peers' admin API, with keep-alive. A connection not
 * made within `connectTimeoutMs`, or an answer not complete within `timeoutMs`, fails
 * with P2P_PEER_FAILED; so does a reset or an abort through `signal`.
 */
export class HttpPeerTransport implements PeerTransport {
  readonly #http = new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS_PER_PEER });
  readonly #https = new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS_PER_PEER });

  send(peer: string, request: PeerRequest, options: SendOptions): Promise<PeerResponse> {
    const url = new URL(peer);
    const secure = url.protocol === 'https:';
    return new Promise<PeerResponse>((resolve, reject) => {
      let settled = false;
      const fail = (message: string, cause?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        options.signal?.removeEventListener('abort', onAbort);
        req.destroy();
        reject(new PeerError('P2P_PEER_FAILED', message, cause === undefined ? undefined : { cause }));
      };
      const onAbort = () => fail('aborted');
      // The path goes as signed: no URL parsing may re-encode it.
      const req = (secure ? httpsRequest : httpRequest)({
        protocol: url.protocol,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port,
        path: request.path,
        method: request.method,
        headers: { ...request.headers, 'content-length': String(request.body.length) },
        agent: secure ? this.#https : this.#http,
      });
      const deadline = setTimeout(() => fail(`no complete answer within ${options.timeoutMs} ms`), options.timeoutMs);
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const connectTimer = setTimeout(() => fail(`no connection within ${options.connectTimeoutMs} ms`), options.connectTimeoutMs);
        socket.once('connect', () => clearTimeout(connectTimer));
        socket.once('close', () => clearTimeout(connectTimer));
      });
      req.on('error', (err) => fail(err.message, err));
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (err) => fail(err.message, err));
        res.on('aborted', () => fail('the answer was cut off'));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(deadline);
          options.signal?.removeEventListener('abort', onAbort);
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(res.headers)) if (typeof value === 'string') headers[name] = value;
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
        });
      });
      if (options.signal?.aborted) return fail('aborted');
      options.signal?.addEventListener('abort', onAbort, { once: true });
      req.end(request.body);
    });
  }

  async close(): Promise<void> {
    this.#http.destroy();
    this.#https.destroy();
  }
}
