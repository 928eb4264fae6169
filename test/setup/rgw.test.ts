import { createHash, randomBytes } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, testS3Client } from '../fixtures/s3.js';

const MiB = 1024 * 1024;
/** S3's smallest part size for every part but the last. */
const MIN_PART = 5 * MiB;

function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

async function bodyOf(client: S3Client, bucket: string, key: string, extra: { Range?: string; IfMatch?: string } = {}) {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...extra }));
  return { res, bytes: Buffer.from(await res.Body!.transformToByteArray()) };
}

describe('test gateway (Ceph RGW through test/fixtures/s3.ts)', () => {
  let client: S3Client;
  let bucket: string;

  beforeAll(async () => {
    client = testS3Client();
    bucket = await createTestBucket('Smoke Test_RGW!');
  });

  afterAll(() => client?.destroy());

  it('creates a uniquely named, valid bucket', async () => {
    expect(bucket).toMatch(/^strata-smoke-test-rgw-[0-9a-f]{8}$/);
    await expect(client.send(new HeadBucketCommand({ Bucket: bucket }))).resolves.toBeDefined();
    const other = await createTestBucket('Smoke Test_RGW!');
    expect(other).not.toBe(bucket);
  });

  it('puts and gets an object, with ranged reads guarded by If-Match', async () => {
    const text = 'hello, strata gateway';
    const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'hello.txt', Body: text }));
    expect(put.ETag).toBe(`"${md5(text)}"`);

    const whole = await bodyOf(client, bucket, 'hello.txt');
    expect(whole.bytes.toString()).toBe(text);
    expect(whole.res.ContentLength).toBe(text.length);

    const ranged = await bodyOf(client, bucket, 'hello.txt', { Range: 'bytes=7-12', IfMatch: put.ETag });
    expect(ranged.bytes.toString()).toBe('strata');
    expect(ranged.res.ContentRange).toBe(`bytes 7-12/${text.length}`);
    expect(ranged.res.ETag).toBe(put.ETag);

    const suffix = await bodyOf(client, bucket, 'hello.txt', { Range: 'bytes=-7' });
    expect(suffix.bytes.toString()).toBe('gateway');

    await expect(bodyOf(client, bucket, 'hello.txt', { Range: 'bytes=0-4', IfMatch: '"0123456789abcdef0123456789abcdef"' })).rejects.toMatchObject({
      $metadata: { httpStatusCode: 412 },
    });
  });

  it('completes a two-part multipart upload', async () => {
    const part1 = randomBytes(MIN_PART);
    const part2 = randomBytes(123_457);
    const key = 'multipart/object.bin';
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    expect(UploadId).toBeTruthy();
    const e1 = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: part1 }));
    const e2 = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 2, Body: part2 }));

    const listed = await client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId }));
    expect(listed.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([
      [1, part1.length],
      [2, part2.length],
    ]);

    const done = await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1.ETag }, { PartNumber: 2, ETag: e2.ETag }] },
      }),
    );
    // RGW 16.2 answers CompleteMultipartUpload with an empty <ETag/> (Red Hat BZ 2266579); the
    // object's ETag has to come from a HEAD. Accept either, but never a different value.
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ETag).toMatch(/^"[0-9a-f]{32}-2"$/);
    expect(['', undefined, head.ETag]).toContain(done.ETag);
    expect(head.ContentLength).toBe(part1.length + part2.length);

    const got = await bodyOf(client, bucket, key);
    expect(got.bytes.length).toBe(part1.length + part2.length);
    expect(md5(got.bytes)).toBe(md5(Buffer.concat([part1, part2])));
    const straddle = await bodyOf(client, bucket, key, { Range: `bytes=${MIN_PART - 3}-${MIN_PART + 2}`, IfMatch: head.ETag });
    expect(straddle.bytes).toEqual(Buffer.concat([part1.subarray(-3), part2.subarray(0, 3)]));
  });

  it('lists common prefixes of folders that hold only folders', async () => {
    const keys = ['tree/only-folders/inner/deeper/leaf.txt', 'tree/only-folders/inner2/leaf.txt', 'tree/file.txt'];
    for (const key of keys) await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));

    const top = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'tree/', Delimiter: '/' }));
    expect(top.Contents?.map((o) => o.Key)).toEqual(['tree/file.txt']);
    expect(top.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['tree/only-folders/']);

    const inner = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'tree/only-folders/', Delimiter: '/' }));
    expect(inner.Contents ?? []).toEqual([]);
    expect(inner.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['tree/only-folders/inner/', 'tree/only-folders/inner2/']);
  });

  it('keeps a unicode key with spaces and + intact', async () => {
    const key = 'dir with space/a+b ü 漢字 (1).txt';
    const body = 'unicode name';
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    expect((await bodyOf(client, bucket, key)).bytes.toString()).toBe(body);

    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'dir with space/' }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual([key]);
    // "+" must not be read as a space: the key with a space in its place does not exist.
    await expect(bodyOf(client, bucket, 'dir with space/a b ü 漢字 (1).txt')).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
  });
});
