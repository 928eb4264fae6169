import { availableParallelism, homedir } from 'node:os';
import { resolve } from 'node:path';

/** `--log-level` values (pino's levels, and `silent`). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** `--log-format` values: pretty lines on a terminal and JSON otherwise (auto), or one of them always. */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Where the admin API listens without `--api`. */
export const DEFAULT_API = '127.0.0.1:7070';

/** The state dir without `--state-dir`. */
export function defaultStateDir(): string {
  return resolve(homedir(), '.strata');
}

/** `HOST:PORT` (an IPv6 host in brackets) as `{host, port}`, or undefined. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) return undefined;
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Shortest STRATA_PEER_SECRET and STRATA_TOKEN accepted: 16 characters, so the key cannot be guessed. */
export const MIN_TOKEN_LENGTH = 16;

/** Most lookup threads for parameter tables: beyond the cores they only add queueing. */
export const MAX_LOOKUP_THREADS = 64;
/**
 * Lookup threads by default: two, or one on a single core. On the 2-core development machine two
 * threads beat the event loop in three idle runs of 1,000-key batches (3.6-4.3 against
 * 2.8-3.8 Mkeys/s) and in two of three of 20,000-key batches, and they keep FUSE requests
 * from waiting behind lookups. They start only once a table is served.
 */
export const DEFAULT_LOOKUP_THREADS = Math.min(2, availableParallelism());

/** `--lookup-threads` as a number, or undefined when it is not a whole number from 0 to MAX_LOOKUP_THREADS. */
export function parseLookupThreads(text: string): number | undefined {
  const threads = Number(text);
  return /^\d+$/.test(text) && threads <= MAX_LOOKUP_THREADS ? threads : undefined;
}

/** `PATH[:SIZE]` split at its last colon (one past the first character): the path as given and the size text, if any. */
export function splitPathSize(text: string): { path: string; size: string | undefined } {
  const cut = text.lastIndexOf(':');
  return cut > 0 ? { path: text.slice(0, cut), size: text.slice(cut + 1) } : { path: text, size: undefined };
}
