import { StrataError } from '../errors/index.js';

export type PeerErrorCode = 'P2P_DISABLED' | 'P2P_UNAUTHORIZED' | 'P2P_PEER_FAILED' | 'API_BAD_REQUEST';

/**
 * Peer-to-peer failures. On the asking side every one of them ends in a fallback to the
 * store, so none reaches a reader; on the serving side they become the HTTP answer.
 */
export class PeerError extends StrataError<PeerErrorCode> {}
