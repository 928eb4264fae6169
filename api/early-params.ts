import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { StrataError } from '../errors/index.js';
import { MAX_TABLE_NAME_CHARS, ParamsError, type ParamsService, type ParamsWireAddress } from '../params/index.js';
import type { Logger } from '../telemetry/index.js';
import { MGET_BODY_LIMIT } from './body-limits.js';
import { ApiError, parseOrReject, requireBearer } from './validate.js';

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

export interface EarlyApiConfig {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly params: ParamsService;
  readonly logger: Logger;
  /** Bearer token every route but /healthz requires (the daemon's STRATA_TOKEN); undefined: none. */
  readonly token: string | undefined;
}

/**
 * The admin API's socket, opened as soon as the recovered parameter tables are: it answers
 * `POST /v1/params/:name/mget` and `GET /v1/params/tables` as the full API does (same
 * body, codes and token) while the rest of the daemon (cache tiers, links, FUSE, and the
 * HTTP framework itself) is still loading, and every other route with 503 `API_STARTING`
 * and Retry-After. `handOver` and `switchOver` give the socket to the full API (fastify's
 * serverFactory, then ready), so no connection is refused in between.
 *
 * Safe because the tables are immutable files whose index is checked at recovery and whose
 * values are checked before the first lookup (PARAMS_TABLE_VERIFYING until then), whether the
 * socket answers early or not; a table name the cluster serves never reaches this (the
 * daemon opens no early socket with --cluster).
 */
export interface EarlyApi {
  readonly server: Server;
  readonly port: number;
  /** `handler` answers every request once `switchOver` is called (fastify's, once it is ready). */
  handOver(handler: Handler): void;
  switchOver(): void;
  /** Closes the socket and every connection (the full API's close does this once it has the socket). */
  close(): Promise<void>;
}

const MGET_PATH = /^\/v1\/params\/([^/?]+)\/mget(?:\?.*)?$/;
/** What a client waits before asking again; the rest of start-up takes well under a second. */
const RETRY_AFTER_SECONDS = 1;

export async function listenEarly(config: EarlyApiConfig): Promise<EarlyApi> {
  const expected = config.token ? Buffer.from(`Bearer ${config.token}`) : undefined;
  const early: Handler = (request, response) => {
    answerEarly(request, response, config.params, expected).catch((err: unknown) => sendError(response, err, config.logger));
  };
  let current: Handler = early;
  let next: Handler | undefined;
  const server = createServer((request, response) => current(request, response));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  return {
    server,
    port,
    handOver: (handler) => {
      next = handler;
    },
    switchOver: () => {
      if (next) current = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answerEarly(request: IncomingMessage, response: ServerResponse, params: ParamsService, expected: Buffer | undefined): Promise<void> {
  const path = (request.url ?? '/').split('?')[0]!;
  if (path === '/healthz') return sendJson(response, 503, { ok: false });
  if (expected) requireBearer(request.headers.authorization, expected);
  const mget = request.method === 'POST' ? MGET_PATH.exec(request.url ?? '') : null;
  if (mget) {
    let raw: string;
    try {
      raw = decodeURIComponent(mget[1]!);
    } catch {
      throw new ApiError('API_BAD_REQUEST', `name: not a valid %-escape`);
    }
    const name = await checkedName(raw);
    params.table(name); // 404 before looking at the body, as the full route does
    const given = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (given !== 'application/octet-stream') {
      throw new ParamsError('PARAMS_UNSUPPORTED_MEDIA_TYPE', `POST /v1/params/:name/mget takes application/octet-stream, got ${given || 'no Content-Type'}`);
    }
    const body = await readBody(request, MGET_BODY_LIMIT);
    const lease = await params.mgetLease(name, body);
    // As the full route: the buffer serves the next request once the socket is done with it.
    response.once('close', lease.release);
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': lease.bytes.length });
    response.end(lease.bytes);
    return;
  }
  if (request.method === 'GET' && path === '/v1/params/tables') return sendJson(response, 200, tablesAnswer(params));
  request.resume();
  response.setHeader('retry-after', String(RETRY_AFTER_SECONDS));
  throw new ApiError('API_STARTING', `the daemon is starting: ${request.method} ${path} answers in a moment (parameter lookups already do)`);
}

/**
 * `GET /v1/params/tables`: the tables, and where the binary protocol answers their lookups
 * (`wire`: `{host, port}` or `{path}`) when the daemon runs it (`--params-wire`).
 */
export function tablesAnswer(service: ParamsService): { tables: ReturnType<ParamsService['list']>; wire?: ParamsWireAddress } {
  const wire = service.wireAddress;
  return { tables: service.list(), ...(wire ? { wire } : {}) };
}

/**
 * The table name of an mget path, as the full route checks it (`nameParams`). A name of
 * 1 to MAX_TABLE_NAME_CHARS characters passes without the request schemas; any other is rejected by the
 * schema itself, loaded then, so that the answer is the full route's word for word.
 */
async function checkedName(raw: string): Promise<string> {
  if (raw.length >= 1 && raw.length <= MAX_TABLE_NAME_CHARS) return raw;
  const { nameParams } = await import('./params-routes.js');
  return parseOrReject(nameParams, { name: raw }, 'name').name;
}

function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limit) {
        request.destroy();
        reject(new ApiError('API_BODY_TOO_LARGE', `the body is over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks, bytes)));
    request.on('error', reject);
  });
}

function sendError(response: ServerResponse, err: unknown, logger: Logger): void {
  if (err instanceof StrataError) return sendJson(response, err.statusCode, { statusCode: err.statusCode, code: err.code, message: err.message });
  logger.error({ err }, 'admin API request failed');
  sendJson(response, 500, { statusCode: 500, code: 'INTERNAL', message: 'internal error; see the daemon log' });
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  if (response.headersSent) return void response.destroy();
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}
