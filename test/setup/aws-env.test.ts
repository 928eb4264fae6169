import { describe, expect, it, inject } from 'vitest';

describe('global setup', () => {
  it('hands the AWS credential chain variables to test workers', () => {
    // Read before anything in this worker calls testS3(), which would fill in missing variables.
    const s3 = inject('testS3');
    expect(process.env.AWS_ACCESS_KEY_ID).toBe(s3.accessKeyId);
    expect(process.env.AWS_SECRET_ACCESS_KEY).toBe(s3.secretAccessKey);
    expect(process.env.AWS_REGION).toBe(s3.region);
    expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});
