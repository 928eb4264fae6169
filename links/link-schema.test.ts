import { describe, expect, it } from 'vitest';
import { linkCreateSchema, linkPatchSchema } from './link-schema.js';

describe('link endpoint URLs', () => {
  const base = { name: 'l', path: '/l', store: 's3://bucket' };

  it('refuses credentials, queries and over-long URLs, with the reason', () => {
    for (const [endpoint, reason] of [
      ['http://user:pw@127.0.0.1:7480', /credentials/],
      ['http://user@127.0.0.1:7480', /credentials/],
      [`http://127.0.0.1:7480/${'p'.repeat(5000)}`, /at most 2048/],
      ['http://127.0.0.1:7480/?x=1', /query/],
      ['ftp://127.0.0.1', /http\(s\) URL/],
    ] as const) {
      for (const schema of [linkCreateSchema, linkPatchSchema]) {
        const parsed = schema.safeParse({ ...(schema === linkCreateSchema ? base : {}), endpoint });
        expect(parsed.success, endpoint.slice(0, 40)).toBe(false);
        expect(parsed.error!.issues.map((i) => i.message).join('; ')).toMatch(reason);
      }
    }
    expect(linkCreateSchema.parse({ ...base, endpoint: 'https://s3.example.com:8443' }).endpoint).toBe('https://s3.example.com:8443');
  });
});
