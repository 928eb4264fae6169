import { z } from 'zod';

/**
 * The S3 event notification body as S3, MinIO and Ceph send it (only the fields Strata
 * reads; others are ignored). Keys arrive URL-encoded, with `+` for spaces.
 */
export const s3EventSchema = z.object({
  Records: z
    .array(
      z.object({
        eventName: z.string().min(1),
        s3: z.object({
          bucket: z.object({ name: z.string().min(1) }),
          object: z.object({
            key: z.string().min(1),
            size: z.number().int().nonnegative().optional(),
            eTag: z.string().optional(),
          }),
        }),
      }),
    )
    .max(10_000),
});

export interface ObjectEvent {
  readonly kind: 'created' | 'removed';
  readonly bucket: string;
  /** The key, decoded. */
  readonly key: string;
  readonly etag?: string;
}

/**
 * The events Strata acts on, from a parsed notification body. Event names other than
 * `ObjectCreated:*` and `ObjectRemoved:*` (test events, replication, restore) are dropped.
 */
export function objectEvents(body: z.output<typeof s3EventSchema>): ObjectEvent[] {
  const events: ObjectEvent[] = [];
  for (const record of body.Records) {
    const kind = record.eventName.startsWith('ObjectCreated:') ? 'created' : record.eventName.startsWith('ObjectRemoved:') ? 'removed' : undefined;
    if (!kind) continue;
    const { eTag } = record.s3.object;
    events.push({ kind, bucket: record.s3.bucket.name, key: decodeEventKey(record.s3.object.key), ...(eTag ? { etag: eTag.replace(/"/g, '') } : {}) });
  }
  return events;
}

/** S3 encodes event keys like a form value: `%XX` escapes and `+` for a space. */
export function decodeEventKey(key: string): string {
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    return key; // not valid percent-encoding: take it as sent
  }
}
