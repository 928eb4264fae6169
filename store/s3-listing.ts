import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { StoreError } from './errors.js';
import type { ListOptions, ListPage } from './object-store.js';
import { HEAD_DEADLINE_MS, LIST_DEADLINE_MS } from './s3-client.js';
import { stripQuotes } from './s3-errors.js';
import { timedRequest } from './store-metrics.js';

/** S3 answers at most 1,000 keys a page. */
const MAX_KEYS = 1000;

/** One LIST page of `prefix` under the store's `storePrefix` (ObjectStore.list's contract), keys relative to the store root. */
export async function listS3(client: S3Client, bucket: string, storePrefix: string, prefix: string, options: ListOptions, error: (err: unknown, key: string) => StoreError): Promise<ListPage> {
  try {
    const out = await timedRequest('list', () => client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: storePrefix + prefix,
        ...(options.delimiter ? { Delimiter: options.delimiter } : {}),
        ...(options.token ? { ContinuationToken: options.token } : {}),
        MaxKeys: Math.max(1, Math.min(options.maxKeys ?? MAX_KEYS, MAX_KEYS)),
      }),
      { abortSignal: AbortSignal.timeout((options.maxKeys ?? MAX_KEYS) <= 1 ? HEAD_DEADLINE_MS : LIST_DEADLINE_MS) },
    ));
    const cut = storePrefix.length;
    return {
      objects: (out.Contents ?? []).map((o) => ({ key: o.Key!.slice(cut), size: o.Size ?? 0, etag: stripQuotes(o.ETag), lastModified: o.LastModified ?? new Date(0) })),
      prefixes: (out.CommonPrefixes ?? []).map((p) => p.Prefix!.slice(cut)),
      ...(out.IsTruncated && out.NextContinuationToken ? { nextToken: out.NextContinuationToken } : {}),
    };
  } catch (err) {
    throw error(err, prefix);
  }
}
