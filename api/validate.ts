import { timingSafeEqual } from 'node:crypto';
import type { z } from 'zod';
import { StrataError } from '../errors/index.js';

export class ApiError extends StrataError<'API_BAD_REQUEST' | 'API_NOT_FOUND' | 'API_UNAUTHORIZED' | 'API_BODY_TOO_LARGE' | 'API_STARTING'> {}

/**
 * Parses a request body or parameters with a zod schema; anything wrong is a 400
 * `API_BAD_REQUEST` whose message names the field (`import.mode: ...`).
 */
export function parseOrReject<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.length > 0 ? issue.path.join('.') : what;
  throw new ApiError('API_BAD_REQUEST', `${field}: ${issue.message}`);
}

/**
 * The check every API listener makes of a request's Authorization header against the
 * `Bearer <token>` it expects, in constant time; a mismatch is 401 `API_UNAUTHORIZED`.
 */
export function requireBearer(authorization: string | undefined, expected: Buffer): void {
  const given = Buffer.from(authorization ?? '');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new ApiError('API_UNAUTHORIZED', 'this daemon requires Authorization: Bearer <STRATA_TOKEN>');
  }
}
