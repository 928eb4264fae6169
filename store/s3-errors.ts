import { StoreError } from './errors.js';
import { HEAD_DEADLINE_MS, LIST_DEADLINE_MS } from './s3-client.js';

/** Where a failed request went, for messages (never a credential). */
export interface S3Place {
  readonly url: string;
  readonly bucket: string;
  readonly endpointName: string;
}

/** One StoreError with a stable code for any SDK or network failure about `key`. Messages never carry credentials. */
export function mapS3Error(err: unknown, key: string, place: S3Place): StoreError {
  if (err instanceof StoreError) return err;
  const e = err as { name?: string; Code?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? e.Code ?? '';
  const where = `${place.url} at ${place.endpointName}`;
  if (name === 'NoSuchBucket') return new StoreError('STORE_BUCKET_NOT_FOUND', `bucket "${place.bucket}" does not exist at ${place.endpointName}`, { cause: err });
  if (name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload' || status === 404) return new StoreError('STORE_NOT_FOUND', `no object ${key} in ${where}`, { cause: err });
  if (name === 'PreconditionFailed' || status === 412) return new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${place.url}`, { cause: err });
  if (name === 'InvalidRange' || status === 416) return new StoreError('STORE_INVALID_RANGE', `invalid range for ${key} in ${place.url}`, { cause: err });
  if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden', 'ExpiredToken'].includes(name) || status === 403) {
    return new StoreError('STORE_ACCESS_DENIED', `access denied to ${where} (${name || status}): check the credentials`, { cause: err });
  }
  if (name === 'CredentialsProviderError') return new StoreError('STORE_ACCESS_DENIED', `no AWS credentials found for ${where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE`, { cause: err });
  const code = e.code ?? '';
  if (name === 'AbortError' || code === 'ABORT_ERR') return new StoreError('STORE_UNREACHABLE', `no answer from ${place.endpointName} in time (a HEAD gets ${HEAD_DEADLINE_MS / 1000} s, a LIST page ${LIST_DEADLINE_MS / 1000} s, retries included)`, { cause: err });
  if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code) || name === 'TimeoutError' || /timed? ?out/i.test(e.message ?? '')) {
    return new StoreError('STORE_UNREACHABLE', `cannot reach ${place.endpointName} (${code || name})`, { cause: err });
  }
  return new StoreError('STORE_IO', `store request for ${key} in ${where} failed: ${name || status || e.message}`, { cause: err });
}

/** An ETag without its quotes and weak marker. */
export function stripQuotes(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/"/g, '');
}
