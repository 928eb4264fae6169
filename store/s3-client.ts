import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { Logger } from '../telemetry/index.js';
import { StoreError } from './errors.js';
import { objectAddress, SignedGet } from './s3-get.js';

/**
 * The S3 client of one store and what it reads from the AWS environment (endpoint, region,
 * AWS_CA_BUNDLE, STRATA_S3_GET): its agents, timeouts, retries and retry log, and the signed
 * GET of the block-fetch path that shares its agents and credentials.
 */

/**
 * Sockets kept open to the store. The block cache runs up to 8 parallel block fetches per
 * read plus readahead and prefetch jobs; 64 leaves room for all of them without queueing
 * behind a busy socket.
 */
const MAX_SOCKETS = 64;
/** Connecting to an S3 endpoint takes milliseconds; 5 s means it is down or unroutable. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * Silence on an upload's socket before it is given up: a store may take a while to answer
 * a 16 MiB part it is still writing, and the uploader retries in the background anyway.
 */
const SOCKET_TIMEOUT_MS = 60_000;
/**
 * Silence on a read's socket before it is given up (and retried, see s3-get.ts): a healthy
 * gateway starts sending a block within milliseconds and never pauses for seconds, while a
 * reader waiting on a hung one should fail in seconds, far from the FUSE call timeout.
 */
const READ_IDLE_TIMEOUT_MS = 5_000;
/**
 * A HEAD, retries included, answers within this or fails with STORE_UNREACHABLE: a reader
 * waits on it, and a HEAD takes milliseconds when the store is up. The namespace serves what
 * it knew after 2 s already (docs/SEMANTICS.md).
 */
export const HEAD_DEADLINE_MS = 5_000;
/**
 * The same for a LIST page of many keys: up to 1,000, which a busy gateway takes seconds to
 * gather. A LIST of one key (the namespace's "is this a folder" probe) gets HEAD_DEADLINE_MS.
 */
export const LIST_DEADLINE_MS = 10_000;
/**
 * The SDK's retries (exponential backoff with jitter) for throttling, transient 5xx and
 * dropped connections: 4 attempts in all, a few seconds at most, after which the caller
 * (block cache, uploader) decides. Refused connections are retried too, so an unreachable
 * endpoint is reported after those few seconds.
 */
const MAX_ATTEMPTS = 4;

export interface S3ClientSettings {
  readonly bucket: string;
  /** The store's URL, for log lines. */
  readonly url: string;
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  readonly logger?: Logger | undefined;
}

export interface S3Connection {
  readonly client: S3Client;
  /** The endpoint for messages: the one given, or `the default AWS endpoint`. */
  readonly endpointName: string;
  /** The signed GET where the object address is certain (see s3-get.ts), else undefined: GETs go through the SDK. */
  readonly signedGet: SignedGet | undefined;
}

/** Builds the client (and the signed GET) of one store. Contacts nothing. */
export function connectS3(settings: S3ClientSettings): S3Connection {
  const endpoint = settings.endpoint || process.env.AWS_ENDPOINT_URL || undefined;
  const endpointName = endpoint ?? 'the default AWS endpoint';
  const { logger, url } = settings;
  const region = settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  // AWS_CA_BUNDLE (honoured by the AWS CLI, not by SDK v3 itself) applies to TLS only:
  // plain-HTTP endpoints such as a loopback gateway go through the HTTP agent untouched.
  const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, ...caBundle() });
  const client = new S3Client({
    region,
    // Compatible stores are reached by host and port, without wildcard DNS for bucket names.
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    // S3-compatible stores (Ceph RGW 16) reject or store verbatim the CRC trailers the
    // SDK adds by default; send and check checksums only where the API requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: MAX_ATTEMPTS,
    requestHandler: new NodeHttpHandler({
      httpAgent,
      httpsAgent,
      connectionTimeout: CONNECT_TIMEOUT_MS,
      requestTimeout: SOCKET_TIMEOUT_MS,
    }),
    ...(logger
      ? {
          logger: {
            debug: () => {},
            info: () => {},
            warn: (...args: unknown[]) => logger.warn({ store: url }, String(args[0])),
            error: () => {},
          },
        }
      : {}),
  });
  if (logger) logRetries(client, logger, url, endpointName);
  // Block fetches skip the SDK's command stack where the object address is certain (see s3-get.ts).
  const address = process.env.STRATA_S3_GET === 'sdk' ? undefined : objectAddress(settings.bucket, region, endpoint);
  const signedGet = address
    ? new SignedGet({
        address,
        region,
        credentials: client.config.credentials,
        agent: address.protocol === 'https:' ? httpsAgent : httpAgent,
        maxAttempts: MAX_ATTEMPTS,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        socketTimeoutMs: READ_IDLE_TIMEOUT_MS,
        logger,
        storeUrl: url,
        endpointName,
        maxIdleSockets: MAX_SOCKETS,
      })
    : undefined;
  return { client, endpointName, signedGet };
}

type RelativeMiddleware = Parameters<S3Client['middlewareStack']['addRelativeTo']>[0];

/**
 * Logs every retry the SDK makes as a warning: the middleware sits below the retry loop,
 * so it runs once per attempt and sees the attempt number in the request headers.
 */
function logRetries(client: S3Client, logger: Logger, url: string, endpointName: string): void {
  const middleware = (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
    const header = (args as { request?: { headers?: Record<string, string> } }).request?.headers?.['amz-sdk-request'];
    const attempt = Number(/attempt=(\d+)/.exec(header ?? '')?.[1] ?? 1);
    if (attempt > 1) logger.warn({ store: url, endpoint: endpointName, command: context.commandName, attempt }, 'retrying a store request');
    return next(args);
  };
  // The stack's type is a union over every step, which no single function signature satisfies.
  client.middlewareStack.addRelativeTo(middleware as unknown as RelativeMiddleware, { relation: 'after', toMiddleware: 'retryMiddleware', name: 'strataRetryLog', override: true });
}

/** The CA certificates AWS_CA_BUNDLE names, for the HTTPS agent; read once, when a store is opened. */
function caBundle(): { ca?: Buffer } {
  const path = process.env.AWS_CA_BUNDLE;
  if (!path) return {};
  try {
    return { ca: readFileSync(path) };
  } catch (err) {
    throw new StoreError('STORE_UNREACHABLE', `AWS_CA_BUNDLE=${path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
}
