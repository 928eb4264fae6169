import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Header with the sender's clock (milliseconds since the epoch, decimal). */
export const TIME_HEADER = 'x-strata-peer-time';
/** Header with the hex HMAC-SHA256 of a request, or of a reply bound to its request. */
export const SIGNATURE_HEADER = 'x-strata-peer-signature';

/**
 * Requests whose clock is further than this from ours are refused: a captured request can
 * only be replayed for a minute, and NTP keeps cluster clocks well within it.
 */
export const MAX_CLOCK_SKEW_MS = 60_000;

/** What a request signature covers. The body is hashed, so a signature never needs the body twice. */
export interface SignedParts {
  readonly method: string;
  /** Path and query string exactly as sent (`/v1/p2p/blocks?...`). */
  readonly path: string;
  readonly body: Uint8Array;
  readonly time: number;
}

function requestMac(secret: string, parts: SignedParts): Buffer {
  const bodyHash = createHash('sha256').update(parts.body).digest('hex');
  return createHmac('sha256', secret).update(`strata-peer-request\n${parts.method.toUpperCase()}\n${parts.path}\n${parts.time}\n${bodyHash}`).digest();
}

/** The hex signature a sender puts in SIGNATURE_HEADER. */
export function signRequest(secret: string, parts: SignedParts): string {
  return requestMac(secret, parts).toString('hex');
}

export type Verdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Checks a request's signature and that its time is within MAX_CLOCK_SKEW_MS of `now`. */
export function verifyRequest(secret: string, parts: SignedParts, signature: string | undefined, now: number): Verdict {
  if (signature === undefined || !/^[0-9a-f]{64}$/.test(signature)) return { ok: false, reason: 'no peer signature' };
  if (!Number.isFinite(parts.time)) return { ok: false, reason: 'no peer timestamp' };
  if (Math.abs(now - parts.time) > MAX_CLOCK_SKEW_MS) return { ok: false, reason: `peer timestamp is ${Math.round((now - parts.time) / 1000)} s off` };
  const expected = requestMac(secret, parts);
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) return { ok: false, reason: 'bad peer signature' };
  return { ok: true };
}

/**
 * The signature of a block reply: binds the status, the block's checksum and length to
 * the request's own signature, so a reply cannot be swapped for another one on the way.
 */
export function signReply(secret: string, requestSignature: string, status: number, checksum: string, length: number): string {
  return createHmac('sha256', secret).update(`strata-peer-reply\n${requestSignature}\n${status}\n${checksum}\n${length}`).digest('hex');
}

export function verifyReply(secret: string, requestSignature: string, status: number, checksum: string, length: number, signature: string | undefined): boolean {
  if (signature === undefined || !/^[0-9a-f]{64}$/.test(signature)) return false;
  return timingSafeEqual(Buffer.from(signReply(secret, requestSignature, status, checksum, length), 'hex'), Buffer.from(signature, 'hex'));
}
