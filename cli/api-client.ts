import { StrataError } from '../errors/index.js';

export class ApiClientError extends StrataError<'API_UNREACHABLE' | 'API_BAD_REQUEST' | 'INTERNAL'> {
  /** The HTTP status the daemon answered, when it answered. */
  status?: number;
}

/** Where the CLI finds the daemon: `--api HOST:PORT` or a URL, default the loopback port. */
export function apiBase(api: unknown): string {
  const text = typeof api === 'string' ? api : '127.0.0.1:7070';
  return text.includes('://') ? text : `http://${text}`;
}

/** The Authorization header of every API call: the bearer token from STRATA_TOKEN, if set. */
export function authorization(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return env.STRATA_TOKEN ? { authorization: `Bearer ${env.STRATA_TOKEN}` } : {};
}

/** Five seconds: the API answers from memory; longer means the daemon is stuck or absent. */
const REQUEST_TIMEOUT_MS = 5000;

/**
 * One call to the admin API with the bearer token from STRATA_TOKEN. A daemon that does
 * not answer, and any 4xx/5xx, become one clear line (the API's own message included).
 */
export async function callApi(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = authorization();
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(new URL(path, base), {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    const reason = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new ApiClientError('API_UNREACHABLE', `no Strata daemon answers at ${base} (${reason}); is it running? pass --api HOST:PORT`);
  }
  const text = await response.text();
  const parsed = text.length > 0 ? safeJson(text) : undefined;
  if (!response.ok) {
    const message = (parsed as { message?: string } | undefined)?.message ?? text.slice(0, 200);
    const code = response.status < 500 ? 'API_BAD_REQUEST' : 'INTERNAL';
    const error = new ApiClientError(code, `${method} ${path}: ${response.status} ${message}`);
    error.status = response.status;
    throw error;
  }
  return parsed;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Aligned columns for human output. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
