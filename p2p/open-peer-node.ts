import type { Logger } from '../telemetry/index.js';
import { HttpPeerTransport } from './http-transport.js';
import { PeerMembership } from './membership.js';
import { PeerNode } from './peer-node.js';
import type { PeerSource } from './peer-source.js';

export interface PeerConfig {
  readonly peers: PeerSource;
  /** How long to wait for a block from its owner (ms). */
  readonly peerTimeoutMs: number;
  /** STRATA_PEER_SECRET (validated by the daemon config). */
  readonly secret: string;
  /** STRATA_TOKEN, when the admin APIs require it. */
  readonly apiToken?: string | undefined;
}

/** The daemon's peer node over HTTP: the peer list resolved once (DNS), then refreshed in the background. */
export async function openPeerNode(config: PeerConfig, logger: Logger): Promise<PeerNode> {
  const membership = new PeerMembership({ source: config.peers, logger });
  await membership.start();
  return new PeerNode({
    membership,
    transport: new HttpPeerTransport(),
    secret: config.secret,
    logger,
    blockTimeoutMs: config.peerTimeoutMs,
    apiToken: config.apiToken,
  });
}
