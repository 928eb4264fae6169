import { StrataError } from '../errors/index.js';
import type { TierStats } from '../cache/index.js';
import { formatSize } from './sizes.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export class ApiClientError extends StrataError<'API_UNREACHABLE' | 'INTERNAL'> {}

/** `strata status`: the tiers of the daemon at `--api`. */
export async function runStatus(values: Values): Promise<number> {
  const api = typeof values.api === 'string' ? values.api : '127.0.0.1:7070';
  const body = (await apiGet(api, '/v1/cache')) as { tiers: TierStats[] };
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const rows = body.tiers.map((t) => [t.name, formatSize(t.capacityBytes), formatSize(t.usedBytes), String(t.hits), String(t.misses), String(t.evictions)]);
  process.stdout.write(table(['tier', 'capacity', 'used', 'hits', 'misses', 'evictions'], rows));
  return 0;
}

/** GET on the admin API with the bearer token from STRATA_TOKEN; failures become one clear line. */
export async function apiGet(api: string, path: string): Promise<unknown> {
  const base = api.includes('://') ? api : `http://${api}`;
  const headers: Record<string, string> = {};
  if (process.env.STRATA_TOKEN) headers.authorization = `Bearer ${process.env.STRATA_TOKEN}`;
  let response: Response;
  try {
    // Five seconds: the API answers from memory; longer means the daemon is stuck or absent.
    response = await fetch(new URL(path, base), { headers, signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new ApiClientError('API_UNREACHABLE', `no Strata daemon answers at ${base} (${(err as Error).cause ? String((err as { cause: Error }).cause.message) : (err as Error).message}); is it running? pass --api HOST:PORT`);
  }
  const body = (await response.json().catch(() => ({}))) as { message?: string };
  if (!response.ok) throw new ApiClientError('INTERNAL', `the daemon at ${base} answered ${response.status}: ${body.message ?? 'no message'}`);
  return body;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
