import type { TierStats } from '../cache/index.js';
import type { UploadStatus } from '../checkpoints/index.js';
import type { FuseMountInfo } from '../fuse/index.js';
import { apiBase, callApi, table } from './api-client.js';
import { clusterStatus, formatCluster } from './cluster-status.js';
import { formatSize } from '../config/index.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** `strata status`: the tiers of the daemon at `--api`, its pending uploads and its parameter-table cluster. */
export async function runStatus(values: Values): Promise<number> {
  const base = apiBase(values.api);
  const cache = (await callApi(base, 'GET', '/v1/cache')) as { tiers: TierStats[] };
  const uploads = (await callApi(base, 'GET', '/v1/uploads')) as { uploads: Array<UploadStatus & { path?: string }>; stagingUsedBytes: number };
  const cluster = await clusterStatus(base);
  const mount = (await callApi(base, 'GET', '/v1/mount')) as { mountPoint: string; fuse: FuseMountInfo };
  const { wire } = (await callApi(base, 'GET', '/v1/params/tables')) as { wire?: { host: string; port: number } | { path: string } };
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ mount, ...cache, ...uploads, ...(wire ? { paramsWire: wire } : {}), ...(cluster ? { cluster } : {}) }, null, 2)}\n`);
    return 0;
  }
  const { fuse } = mount;
  const how = fuse.path === 'native' ? `native FUSE threads, passthrough ${fuse.passthrough ? 'on' : 'off'}` : 'fuse-native (libfuse 2)';
  process.stdout.write(`mount ${mount.mountPoint}: ${how}; ${formatSize(fuse.maxRequestBytes)} requests; kernel keeps metadata ${fuse.kernelMetadataSeconds} s\n\n`);
  const rows = cache.tiers.map((t) => [t.name, formatSize(t.capacityBytes), formatSize(t.usedBytes), String(t.hits), String(t.misses), String(t.evictions)]);
  process.stdout.write(table(['tier', 'capacity', 'used', 'hits', 'misses', 'evictions'], rows));
  process.stdout.write(`\nuploads pending: ${uploads.uploads.length}, staged ${formatSize(uploads.stagingUsedBytes)}\n`);
  if (uploads.uploads.length > 0) {
    const up = uploads.uploads.map((u) => [u.path ?? u.key, u.state, `${formatSize(u.uploadedBytes)}/${formatSize(u.bytes)}`, String(u.attempts), u.lastError ?? '']);
    process.stdout.write(table(['path', 'state', 'uploaded', 'attempts', 'last error'], up));
  }
  if (wire) process.stdout.write(`\nparameter lookups over the binary protocol: ${'path' in wire ? wire.path : `${wire.host.includes(':') ? `[${wire.host}]` : wire.host}:${wire.port}`}\n`);
  if (cluster) process.stdout.write(`\n${formatCluster(cluster)}`);
  return 0;
}
