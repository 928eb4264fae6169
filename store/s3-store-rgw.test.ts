import { PutObjectCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../test/fixtures/rgw.js';
import { createTestBucket, testS3, testS3Client } from '../test/fixtures/s3.js';
import { describeObjectStore, storeErrorCode } from '../test/store-conformance.js';
import { openStore } from './index.js';
import { S3Store } from './s3-store.js';

// Buckets are left in place: the gateway and its in-memory data are thrown away at the end of the run.
describeObjectStore('S3 (Ceph RGW)', async () => {
  const { endpoint } = testS3();
  const bucket = await createTestBucket('store-conformance');
  const client = testS3Client();
  return {
    store: openStore(`s3://${bucket}`, { endpoint }),
    seed: async (key, body) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    openPrefixed: (prefix) => openStore(`s3://${bucket}/${prefix}`, { endpoint }),
    cleanup: async () => client.destroy(),
  };
});

// The same contract with block GETs sent through the SDK's command stack (the fallback where
// s3-get.ts cannot be sure of an object's address, forced here by STRATA_S3_GET=sdk).
describeObjectStore('S3 (Ceph RGW), GETs through the SDK', async () => {
  const { endpoint } = testS3();
  const bucket = await createTestBucket('store-conformance-sdk-get');
  const client = testS3Client();
  const open = (url: string) => {
    process.env.STRATA_S3_GET = 'sdk';
    try {
      return openStore(url, { endpoint });
    } finally {
      delete process.env.STRATA_S3_GET;
    }
  };
  return {
    store: open(`s3://${bucket}`),
    seed: async (key, body) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    openPrefixed: (prefix) => open(`s3://${bucket}/${prefix}`),
    cleanup: async () => client.destroy(),
  };
});

/** A pino logger whose lines land in `lines`, to see what the store logged. */
function capturingLogger(lines: Array<Record<string, unknown>>) {
  return pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
}

describe('S3Store errors against RGW', () => {
  let endpoint: string;
  let bucket: string;
  const savedEnv = { ...process.env };

  beforeAll(async () => {
    endpoint = testS3().endpoint;
    bucket = await createTestBucket('store-errors');
    const client = testS3Client();
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: Buffer.from('v') }));
    client.destroy();
  });

  afterEach(() => {
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE', 'AWS_EC2_METADATA_DISABLED', 'AWS_ENDPOINT_URL']) {
      if (savedEnv[name] === undefined) delete process.env[name];
      else process.env[name] = savedEnv[name];
    }
  });

  it('reports a missing bucket as STORE_BUCKET_NOT_FOUND, naming it', async () => {
    const store = openStore('s3://strata-no-such-bucket-here', { endpoint });
    try {
      await expect(store.check()).rejects.toMatchObject({ code: 'STORE_BUCKET_NOT_FOUND', message: expect.stringContaining('strata-no-such-bucket-here') });
      expect(await storeErrorCode(store.list(''))).toBe('STORE_BUCKET_NOT_FOUND');
      expect(await storeErrorCode(store.getRange('k', 0, 1))).toBe('STORE_BUCKET_NOT_FOUND');
      expect(await storeErrorCode(store.put('k', Buffer.from('v')))).toBe('STORE_BUCKET_NOT_FOUND');
    } finally {
      await store.close();
    }
  });

  it('reports a wrong secret key as STORE_ACCESS_DENIED without quoting it', async () => {
    const secret = 'WrongSecretKeyForStrataTests0123456789';
    process.env.AWS_SECRET_ACCESS_KEY = secret;
    const store = openStore(`s3://${bucket}`, { endpoint });
    try {
      const err = await store.check().then(() => undefined, (e: unknown) => e as Error & { code: string });
      expect(err?.code).toBe('STORE_ACCESS_DENIED');
      expect(err?.message).toContain(bucket);
      expect(err?.message).toContain(endpoint);
      expect(err?.message).not.toContain(secret);
      expect(await storeErrorCode(store.getRange('k', 0, 1))).toBe('STORE_ACCESS_DENIED');
      expect(await storeErrorCode(store.list(''))).toBe('STORE_ACCESS_DENIED');
      expect(await storeErrorCode(store.put('k2', Buffer.from('v')))).toBe('STORE_ACCESS_DENIED');
    } finally {
      await store.close();
    }
  });

  it('reports missing credentials as STORE_ACCESS_DENIED with what to set', async () => {
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    process.env.AWS_PROFILE = 'strata-no-such-profile';
    process.env.AWS_EC2_METADATA_DISABLED = 'true'; // no instance metadata to wait for on a test box
    const store = openStore(`s3://${bucket}`, { endpoint });
    try {
      await expect(store.check()).rejects.toMatchObject({ code: 'STORE_ACCESS_DENIED', message: expect.stringContaining('no AWS credentials found') });
    } finally {
      await store.close();
    }
  });

  it('reports a closed port as STORE_UNREACHABLE naming the endpoint, logging the retries', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const lines: Array<Record<string, unknown>> = [];
    const store = new S3Store({ bucket, prefix: '', endpoint: closed, logger: capturingLogger(lines) });
    try {
      const err = await store.check().then(() => undefined, (e: unknown) => e as Error & { code: string });
      expect(err?.code).toBe('STORE_UNREACHABLE');
      expect(err?.message).toContain(closed);
      expect(err?.message).toContain(bucket);
      expect(await storeErrorCode(store.getRange('k', 0, 1))).toBe('STORE_UNREACHABLE');
      expect(lines.some((l) => l.msg === 'retrying a store request' && l.endpoint === closed && Number(l.attempt) > 1)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('takes the endpoint from AWS_ENDPOINT_URL when none is given', async () => {
    process.env.AWS_ENDPOINT_URL = endpoint;
    const store = openStore(`s3://${bucket}`);
    try {
      await store.check();
      expect((await store.getRange('k', 0, 10)).body.toString()).toBe('v');
      expect(store.url).toBe(`s3://${bucket}`);
    } finally {
      await store.close();
    }
  });
});
