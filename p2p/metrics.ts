import { counter } from '../telemetry/index.js';

/** The counters of peer traffic; `strata_p2p_peers{state}` lives with the membership. */
export const p2pMetrics = {
  blocksFromPeers: counter('strata_p2p_blocks_from_peers_total', 'Blocks this daemon got from their owner peer instead of the store'),
  bytesFromPeers: counter('strata_p2p_bytes_from_peers_total', 'Bytes this daemon got from peers instead of the store'),
  /**
   * Bytes the peer-aware fetcher read from the store. The block cache's
   * strata_cache_store_bytes_total counts every miss it filled, peers' blocks included.
   */
  storeBytes: counter('strata_p2p_store_bytes_total', 'Bytes of block misses this daemon read from the store itself (owned blocks and fallbacks)'),
  blocksServed: counter('strata_p2p_blocks_served_total', 'Blocks this daemon served to peers'),
  bytesServed: counter('strata_p2p_bytes_served_total', 'Bytes this daemon served to peers'),
  fallbacks: counter('strata_p2p_fallbacks_total', 'Block misses that went to the store because the owner peer failed, by reason', ['reason']),
  rejected: counter('strata_p2p_rejected_requests_total', 'Peer requests refused for a missing or bad signature'),
};
