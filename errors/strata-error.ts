import { ERROR_CATALOGUE, type ErrorCode } from './catalogue.js';

/**
 * Base of every error Strata throws on purpose. The `code` is stable (see
 * errors/catalogue.ts); the message is for people and may change.
 * Module error classes narrow `code` to the codes that module can produce.
 */
export class StrataError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  /** The HTTP status an API route answers with for this error. */
  get statusCode(): number {
    return ERROR_CATALOGUE[this.code].http;
  }
}

/** True when `err` is a StrataError, optionally with one of the given codes. */
export function isStrataError<C extends ErrorCode>(err: unknown, ...codes: C[]): err is StrataError<C> {
  if (!(err instanceof StrataError)) return false;
  return codes.length === 0 || (codes as ErrorCode[]).includes(err.code);
}
