import type { ClusterStatus } from '../params/cluster/index.js';
import { ApiClientError, callApi, table } from './api-client.js';

/** The cluster as the daemon at `base` sees it; undefined when it is not in one. */
export async function clusterStatus(base: string): Promise<ClusterStatus | undefined> {
  let answer: { enabled: boolean } & Partial<ClusterStatus>;
  try {
    answer = (await callApi(base, 'GET', '/v1/params/cluster')) as { enabled: boolean } & Partial<ClusterStatus>;
  } catch (err) {
    // A daemon without the cluster route (an older version) is in no cluster.
    if (err instanceof ApiClientError && err.status === 404) return undefined;
    throw err;
  }
  return answer.enabled ? (answer as ClusterStatus) : undefined;
}

/** The cluster section of `strata status` and `strata params ls`: members with their shards, then tables. */
export function formatCluster(status: ClusterStatus): string {
  const lines = [`cluster ${status.prefix}: ${status.members.length} member(s), coordinator ${status.coordinator ?? '(none elected)'}\n`];
  const members = status.members.map((m) => [
    `${m.node}${m.self ? ' (this)' : ''}`,
    m.api,
    Object.entries(m.shards)
      .map(([name, n]) => `${name}:${n}`)
      .join(' ') || '-',
  ]);
  lines.push(table(['member', 'api', 'shards'], members));
  if (status.tables.length > 0) {
    const tables = status.tables.map((t) => [
      t.name,
      String(t.version),
      String(t.keys),
      String(t.dim),
      String(t.shards),
      `${t.replicas}`,
      t.state + (t.underReplicated > 0 ? ` (${t.underReplicated} short)` : ''),
      t.switch ? `v${t.switch.version} ${t.switch.kind}: ${t.switch.ready}/${t.switch.assigned} ready` : '-',
    ]);
    lines.push('\n', table(['table', 'version', 'keys', 'dim', 'shards', 'replicas', 'state', 'switch'], tables));
  }
  return lines.join('');
}
