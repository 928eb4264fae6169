import { StoreError } from './errors.js';

export type StoreLocation =
  | { readonly scheme: 's3'; readonly bucket: string; readonly prefix: string }
  | { readonly scheme: 'file'; readonly dir: string };

/** S3 bucket naming rules (the DNS-compatible subset every S3 implementation accepts). */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Reads a store URL: `s3://bucket`, `s3://bucket/some/prefix` (the prefix is normalised to
 * end in `/`), or `file:///absolute/dir`. Anything else throws STORE_URL_INVALID with one
 * line saying what is accepted.
 */
export function parseStoreUrl(url: string): StoreLocation {
  const accepted = 'use s3://bucket[/prefix] or file:///absolute/dir';
  if (url.startsWith('s3://')) {
    const rest = url.slice('s3://'.length);
    const cut = rest.indexOf('/');
    const bucket = cut < 0 ? rest : rest.slice(0, cut);
    const rawPrefix = cut < 0 ? '' : rest.slice(cut + 1);
    if (!BUCKET_NAME.test(bucket) || bucket.includes('..')) {
      throw new StoreError('STORE_URL_INVALID', `"${url}": "${bucket}" is not a valid bucket name (3-63 of a-z, 0-9, "." and "-")`);
    }
    const parts = rawPrefix.split('/').filter((p) => p.length > 0);
    if (parts.some((p) => p === '.' || p === '..')) throw new StoreError('STORE_URL_INVALID', `"${url}": the prefix may not contain . or .. segments`);
    return { scheme: 's3', bucket, prefix: parts.length > 0 ? `${parts.join('/')}/` : '' };
  }
  if (url.startsWith('file://')) {
    let dir: string;
    try {
      dir = decodeURIComponent(url.slice('file://'.length));
    } catch {
      throw new StoreError('STORE_URL_INVALID', `"${url}" has a malformed %-escape; ${accepted}`);
    }
    if (!dir.startsWith('/')) throw new StoreError('STORE_URL_INVALID', `"${url}": a file store needs an absolute path (file:///data/lake)`);
    const normal = `/${dir.split('/').filter((p) => p.length > 0).join('/')}`;
    if (normal.split('/').some((p) => p === '..')) throw new StoreError('STORE_URL_INVALID', `"${url}": the path may not contain ..`);
    return { scheme: 'file', dir: normal };
  }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1];
  throw new StoreError('STORE_URL_INVALID', scheme ? `unknown store scheme "${scheme}://" in "${url}"; ${accepted}` : `"${url}" is not a store URL; ${accepted}`);
}

/** The URL of an S3 store as logs and status show it: `s3://bucket` or `s3://bucket/prefix`. */
export function s3StoreUrl(bucket: string, prefix: string): string {
  return `s3://${bucket}${prefix ? `/${prefix.replace(/\/$/, '')}` : ''}`;
}
