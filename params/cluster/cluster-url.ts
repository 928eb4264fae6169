import { ClusterError } from './cluster-error.js';

/** Where the cluster's etcd answers and the key prefix its records live under. */
export interface ClusterAddress {
  /** `http://HOST:PORT` of each etcd endpoint, in the order given. */
  readonly hosts: readonly string[];
  /** Key prefix without slashes at either end: every record is under `<prefix>/`. */
  readonly prefix: string;
}

/**
 * Reads `etcd://HOST:PORT[,HOST:PORT]/PREFIX`. The prefix names the cluster: daemons with
 * the same etcd and prefix form one cluster, so several clusters can share an etcd.
 */
export function parseClusterUrl(text: string): ClusterAddress {
  const bad = (why: string) => new ClusterError('CLUSTER_DISABLED', `--cluster: "${text}" ${why}; use etcd://HOST:PORT[,HOST:PORT]/PREFIX`);
  if (!text.startsWith('etcd://')) throw bad('is not an etcd:// URL');
  const rest = text.slice('etcd://'.length);
  const cut = rest.indexOf('/');
  if (cut < 0) throw bad('has no /PREFIX');
  const prefix = rest.slice(cut + 1).replace(/\/+$/, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$/.test(prefix)) throw bad('has no valid prefix (letters, digits, _ . - /)');
  const hosts = rest.slice(0, cut).split(',').map((hostPort) => {
    const match = /^(\[[0-9a-fA-F:]+\]|[^:\s/,]+):(\d{1,5})$/.exec(hostPort);
    if (!match || Number(match[2]) > 65535) throw bad(`has "${hostPort}" where HOST:PORT belongs`);
    return `http://${match[1]}:${match[2]}`;
  });
  return { hosts, prefix };
}
