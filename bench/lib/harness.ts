import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

const run = promisify(execFile);

/** Runs a shell command in a child (never in this process: it may read a FUSE mount). */
export async function shell(command: string): Promise<string> {
  const { stdout } = await run('bash', ['-c', command], { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
  return stdout;
}

/** Seconds a child command takes, wall clock. */
export async function timeCommand(command: string): Promise<number> {
  const started = performance.now();
  await shell(command);
  return (performance.now() - started) / 1000;
}

/**
 * Drops the kernel page cache so a read goes to the file system. Needs root; a benchmark
 * that cannot drop it would measure the page cache, so it fails instead.
 */
export async function dropPageCache(): Promise<void> {
  await shell('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

export { s3ClientFor as s3Client } from '../../test/fixtures/rgw.js';

export async function createBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
}

/** Uploads `body` with the SDK's multipart uploader (8 MiB parts, 8 at a time). */
export async function uploadLarge(client: S3Client, bucket: string, key: string, body: Buffer): Promise<void> {
  await new Upload({ client, params: { Bucket: bucket, Key: key, Body: body }, partSize: 8 * 1024 * 1024, queueSize: 8 }).done();
}

/** Puts many small objects, `parallel` at a time. */
export async function putMany(client: S3Client, bucket: string, objects: Array<{ key: string; body: Buffer }>, parallel = 32): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < objects.length) {
      const { key, body } = objects[next++]!;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

export { metric, waitForMetric } from '../../test/fixtures/metrics.js';
