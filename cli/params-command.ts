import { isAbsolute, resolve } from 'node:path';
import { buildTable, type BuildReport, type ParamsTableInfo } from '../params/index.js';
import { UsageError } from './usage-error.js';
import { ApiClientError, apiBase, authorization, callApi, table } from './api-client.js';
import { clusterStatus, formatCluster } from './cluster-status.js';
import { float32Shortest } from './float32-text.js';
import { formatSize } from '../config/index.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Without a terminal, a progress line every few seconds keeps CI logs short. */
const PLAIN_LINE_EVERY_MS = 5000;
/** Redraws of the bar at most this often: smooth enough, cheap on a large build. */
const TTY_REDRAW_MS = 100;
/** A load copies and checks a whole table (about a second per GB here); allow large ones. */
const LOAD_TIMEOUT_MS = 30 * 60 * 1000;

/**
 * `strata params build|load|mget`:
 * - `build --dim D [--shards N] [--strict] INPUT DEST` runs locally (no daemon): builds the served format.
 * - `load NAME SOURCE [--api]` asks the daemon to load (or replace) a table.
 * - `mget NAME KEY... [--api] [--json]` prints the vectors of decimal keys.
 */
export async function runParams(sub: string, values: Values, positionals: string[]): Promise<number> {
  if (sub === 'build') return build(values, positionals);
  if (sub === 'load') return load(values, positionals);
  if (sub === 'mget') return mget(values, positionals);
  if (sub === 'publish') return publish(values, positionals);
  if (sub === 'ls') return list(values, positionals);
  throw new UsageError('USAGE', 'params needs build, load, mget, publish or ls; run strata params --help');
}

async function build(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length !== 2) throw new UsageError('USAGE', 'params build needs INPUT and DEST: strata params build --dim D [--shards N] [--strict] INPUT DEST');
  const dim = integerOption(values, 'dim', undefined);
  const shards = integerOption(values, 'shards', 1);
  const [input, dest] = positionals as [string, string];
  const tty = process.stderr.isTTY === true;
  const begin = Date.now();
  let lastLine = 0;
  const report: BuildReport = await buildTable(input, dest, {
    dim,
    shards,
    strict: values.strict === true,
    onProgress: (done, total) => {
      const now = Date.now();
      if (now - lastLine < (tty ? TTY_REDRAW_MS : PLAIN_LINE_EVERY_MS) && done < total) return;
      lastLine = now;
      const line = buildProgressLine(done, total, (now - begin) / 1000);
      process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    },
  });
  if (tty) process.stderr.write('\n');
  const seconds = ((Date.now() - begin) / 1000).toFixed(1);
  const dupes = report.duplicates > 0 ? `, ${report.duplicates} duplicate records replaced by later ones` : '';
  if (values.json === true) process.stdout.write(`${JSON.stringify(report)}\n`);
  else process.stdout.write(`built ${dest}: ${report.keys} keys of dim ${dim} in ${shards} shard(s), ${formatSize(report.bytes)} in ${seconds} s${dupes}\n`);
  return 0;
}

/** `[#####-----]  42% 280 MiB/680 MiB 310 MiB/s ETA 2s` */
export function buildProgressLine(done: number, total: number, seconds: number): string {
  const fraction = total > 0 ? done / total : 1;
  const width = 24;
  const filled = Math.round(fraction * width);
  const rate = seconds > 0 ? done / seconds : 0;
  const eta = rate > 0 && total > done ? `${Math.ceil((total - done) / rate)}s` : '-';
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatSize(done)}/${formatSize(total)} ${formatSize(rate)}/s ETA ${eta}`;
}

async function load(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length !== 2) throw new UsageError('USAGE', 'params load needs NAME and SOURCE: strata params load NAME SOURCE [--tier pmem|nvme] [--api HOST:PORT]');
  const tier = typeof values.tier === 'string' ? values.tier : undefined;
  if (tier !== undefined && tier !== 'pmem' && tier !== 'nvme') throw new UsageError('USAGE', `params load --tier: "${tier}" is not pmem or nvme`);
  const [name, given] = positionals as [string, string];
  // The daemon has its own working directory: send local paths absolute.
  const source = given.includes('://') || isAbsolute(given) ? given : resolve(given);
  const body = (await postAndWait(values, '/v1/params/tables', { name, source, ...(tier ? { tier } : {}) }, 'params load')) as { version?: number; keys?: number; dim?: number; tier?: string };
  if (values.json === true) process.stdout.write(`${JSON.stringify(body)}\n`);
  else process.stdout.write(`loaded ${name} version ${body.version}: ${body.keys} keys of dim ${body.dim} into ${body.tier}\n`);
  return 0;
}

/**
 * POSTs a JSON body to the daemon and waits as long as a table load may take. The daemon's
 * message becomes the one line a failure prints, prefixed with `what` and the status.
 */
async function postAndWait(values: Values, path: string, payload: unknown, what: string): Promise<Record<string, unknown>> {
  const base = apiBase(values.api);
  const headers: Record<string, string> = { 'content-type': 'application/json', ...authorization() };
  let response: Response;
  try {
    response = await fetch(new URL(path, base), { method: 'POST', headers, body: JSON.stringify(payload), signal: AbortSignal.timeout(LOAD_TIMEOUT_MS) });
  } catch (err) {
    const reason = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new ApiClientError('API_UNREACHABLE', `no Strata daemon answers at ${base} (${reason}); is it running? pass --api HOST:PORT`);
  }
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown> & { message?: string };
  if (!response.ok) throw new ApiClientError(response.status < 500 ? 'API_BAD_REQUEST' : 'INTERNAL', `${what}: ${response.status} ${body.message ?? ''}`);
  return body;
}

/** `strata params publish NAME SOURCE [--replicas R]`: publishes to the daemon's cluster; answers once every member serves it. */
async function publish(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length !== 2) throw new UsageError('USAGE', 'params publish needs NAME and SOURCE: strata params publish NAME SOURCE [--replicas R] [--api HOST:PORT]');
  const replicas = values.replicas === undefined ? undefined : integerOption(values, 'replicas', undefined);
  const [name, given] = positionals as [string, string];
  const source = given.includes('://') || isAbsolute(given) ? given : resolve(given);
  const body = await postAndWait(values, '/v1/params/cluster/tables', { name, source, ...(replicas !== undefined ? { replicas } : {}) }, 'params publish');
  if (values.json === true) process.stdout.write(`${JSON.stringify(body)}\n`);
  else process.stdout.write(`published ${name} version ${String(body.version)} to the cluster in ${Number(body.ms).toFixed(0)} ms\n`);
  return 0;
}

/** `strata params ls`: the tables this daemon serves and, when it is in a cluster, the cluster's tables. */
async function mget(values: Values, positionals: string[]): Promise<number> {
  const [name, ...keys] = positionals;
  if (name === undefined || keys.length === 0) throw new UsageError('USAGE', 'params mget needs NAME and at least one KEY: strata params mget NAME KEY... [--json]');
  const raw = (await callApi(apiBase(values.api), 'POST', `/v1/params/${encodeURIComponent(name)}/lookup`, { keys })) as { found: boolean[]; vectors: Array<number[] | null> };
  // The values are float32: print the digits of a float32, not of the float64 JSON carried.
  const answer = { found: raw.found, vectors: raw.vectors.map((v) => v && v.map(float32Shortest)) };
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(keys.map((key, i) => ({ key, found: answer.found[i], vector: answer.vectors[i] })))}\n`);
  } else {
    for (const [i, key] of keys.entries()) {
      const vector = answer.vectors[i];
      process.stdout.write(`${key}\t${vector ? vector.map((v) => String(v)).join(' ') : '(missing)'}\n`);
    }
  }
  return answer.found.every(Boolean) ? 0 : 1;
}

/** `strata params ls`: the tables the daemon serves. */
/** The tables this daemon serves and, when it is a cluster member, the cluster's tables and members. */
async function list(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length > 0) throw new UsageError('USAGE', 'params ls takes no arguments: strata params ls [--api HOST:PORT] [--json]');
  const base = apiBase(values.api);
  const { tables } = (await callApi(base, 'GET', '/v1/params/tables')) as { tables: ParamsTableInfo[] };
  const cluster = await clusterStatus(base);
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ tables, ...(cluster ? { cluster } : {}) }, null, 2)}\n`);
    return 0;
  }
  if (tables.length === 0) process.stdout.write('no parameter tables loaded (strata params load NAME SOURCE)\n');
  else {
    const rows = tables.map((t) => [t.name, String(t.version), String(t.keys), String(t.dim), String(t.shards), t.tier, formatSize(t.bytes), t.source]);
    process.stdout.write(table(['NAME', 'VERSION', 'KEYS', 'DIM', 'SHARDS', 'TIER', 'SIZE', 'SOURCE'], rows));
  }
  if (cluster) process.stdout.write(`\n${formatCluster(cluster)}`);
  return 0;
}

function integerOption(values: Values, name: string, fallback: number | undefined): number {
  const raw = values[name];
  if (raw === undefined) {
    if (fallback === undefined) throw new UsageError('USAGE', `params build needs --${name}`);
    return fallback;
  }
  const n = typeof raw === 'string' && /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError('USAGE', `--${name} must be a positive integer, got ${String(raw)}`);
  return n;
}
