import { StrataError } from '../../errors/index.js';

export type ClusterErrorCode =
  | 'CLUSTER_DISABLED'
  | 'CLUSTER_UNAVAILABLE'
  | 'CLUSTER_SWITCH_ABORTED'
  | 'CLUSTER_NOT_ENOUGH_MEMBERS'
  | 'CLUSTER_VERSION_GONE';

/** A failure of the parameter-table cluster (membership, switch or routing) reported on purpose. */
export class ClusterError extends StrataError<ClusterErrorCode> {}
