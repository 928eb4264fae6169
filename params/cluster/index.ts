export { ClusterNode, type ClusterNodeConfig, type ClusterStatus } from './cluster-node.js';
export { parseClusterUrl, type ClusterAddress } from './cluster-url.js';
export { ClusterError, type ClusterErrorCode } from './cluster-error.js';
export { assignShards, shardsOf } from './shard-assignment.js';
export { openRangedTable, writeShardTable, ROW_GAP_BYTES, type RangedTable, type ShardLoadReport } from './shard-loader.js';
