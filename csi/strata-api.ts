import { CsiError, GRPC_STATUS, type LinkApi } from './node-driver.js';

/** The daemon answers link calls from memory, but a new link checks its store first (an S3 HEAD with its retries). */
const REQUEST_TIMEOUT_MS = 30_000;

/** The node daemon's admin API (`STRATA_TOKEN` as the bearer token when set). */
export function httpLinkApi(base: string, token = process.env.STRATA_TOKEN): LinkApi {
  const call = async (method: string, path: string, body?: unknown): Promise<Response> => {
    try {
      return await fetch(new URL(path, base), {
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      throw new CsiError(GRPC_STATUS.UNAVAILABLE, `the Strata daemon at ${base} does not answer (${(err as { cause?: Error }).cause?.message ?? (err as Error).message})`);
    }
  };
  const failure = async (response: Response, what: string) => {
    const { message } = (await response.json().catch(() => ({}))) as { message?: string };
    const status = response.status === 400 ? GRPC_STATUS.INVALID_ARGUMENT : response.status === 404 ? GRPC_STATUS.NOT_FOUND : response.status === 409 ? GRPC_STATUS.ALREADY_EXISTS : GRPC_STATUS.INTERNAL;
    return new CsiError(status, `${what}: ${message ?? response.status}`);
  };
  return {
    async get(name) {
      const response = await call('GET', `/v1/links/${encodeURIComponent(name)}`);
      if (response.status === 404) return undefined;
      if (!response.ok) throw await failure(response, `link ${name}`);
      return (await response.json()) as { name: string; path: string; store: string };
    },
    async add(link) {
      const response = await call('POST', '/v1/links', link);
      if (!response.ok) throw await failure(response, `creating link ${String(link.name)}`);
    },
    async remove(name) {
      const response = await call('DELETE', `/v1/links/${encodeURIComponent(name)}`);
      if (response.status === 409) return false;
      if (!response.ok && response.status !== 404) throw await failure(response, `removing link ${name}`);
      return true;
    },
  };
}
