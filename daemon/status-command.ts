import type { TierStats } from '../cache/index.js';
import { apiBase, callApi, table } from './api-client.js';
import { formatSize } from './sizes.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** `strata status`: the tiers of the daemon at `--api`. */
export async function runStatus(values: Values): Promise<number> {
  const body = (await callApi(apiBase(values.api), 'GET', '/v1/cache')) as { tiers: TierStats[] };
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const rows = body.tiers.map((t) => [t.name, formatSize(t.capacityBytes), formatSize(t.usedBytes), String(t.hits), String(t.misses), String(t.evictions)]);
  process.stdout.write(table(['tier', 'capacity', 'used', 'hits', 'misses', 'evictions'], rows));
  return 0;
}
