import { describe, expect, it } from 'vitest';
import { parseStoreUrl } from './url.js';

describe('parseStoreUrl', () => {
  it('reads S3 URLs, normalising the prefix to end in / or be empty', () => {
    expect(parseStoreUrl('s3://my-bucket')).toEqual({ scheme: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parseStoreUrl('s3://my-bucket/')).toEqual({ scheme: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parseStoreUrl('s3://my.bucket.1/some/prefix')).toEqual({ scheme: 's3', bucket: 'my.bucket.1', prefix: 'some/prefix/' });
    expect(parseStoreUrl('s3://bkt/a//b/')).toEqual({ scheme: 's3', bucket: 'bkt', prefix: 'a/b/' });
  });

  it('reads absolute file URLs', () => {
    expect(parseStoreUrl('file:///data/lake')).toEqual({ scheme: 'file', dir: '/data/lake' });
    expect(parseStoreUrl('file:///data/lake/')).toEqual({ scheme: 'file', dir: '/data/lake' });
    expect(parseStoreUrl('file:///data/my%20lake')).toEqual({ scheme: 'file', dir: '/data/my lake' });
  });

  it.each([
    ['gs://bucket', 'unknown store scheme "gs://"'],
    ['/data/lake', 'is not a store URL'],
    ['s3://', 'not a valid bucket name'],
    ['s3://ab', 'not a valid bucket name'],
    ['s3://Upper_Case', 'not a valid bucket name'],
    ['s3://a..b', 'not a valid bucket name'],
    ['s3://bucket/../x', 'may not contain'],
    ['file://relative/dir', 'absolute path'],
    ['file:///data/../etc', 'may not contain'],
    ['file:///data/%zz', 'malformed'],
  ])('refuses %s with one clear line', (url, reason) => {
    let caught: unknown;
    try {
      parseStoreUrl(url);
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'STORE_URL_INVALID' });
    const message = (caught as Error).message;
    expect(message).toContain(reason);
    expect(message).toContain(url);
    expect(message).not.toContain('\n');
  });
});
