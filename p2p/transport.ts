/** One request between peers, as bytes: what a transport moves and what the server handles. */
export interface PeerRequest {
  readonly method: 'GET' | 'POST';
  /** Path and query string (`/v1/p2p/blocks?...`), exactly as signed. */
  readonly path: string;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export interface PeerResponse {
  readonly status: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export interface SendOptions {
  /** Give up if no connection is made within this (ms). */
  readonly connectTimeoutMs: number;
  /** Give up if the whole answer has not arrived within this (ms). */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/**
 * Moves requests to a peer and answers its response. Any HTTP status is a response, not
 * an error; a transport throws PeerError P2P_PEER_FAILED only when no complete response
 * arrived (refused, reset, timed out, aborted). Transports do not sign or verify: the
 * PeerClient and PeerServer do, so every transport gets the same security.
 */
export interface PeerTransport {
  send(peer: string, request: PeerRequest, options: SendOptions): Promise<PeerResponse>;
  /** Drops idle connections. Sends after close may fail. */
  close(): Promise<void>;
}

/** What a daemon does with a peer request (signature check included); the server side of a transport. */
export type PeerRequestHandler = (request: PeerRequest) => Promise<PeerResponse>;
