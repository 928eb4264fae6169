import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from './catalogue.js';

describe('docs/ERRORS.md', () => {
  it('documents every error code once, with the same HTTP status, and no others', async () => {
    const doc = await readFile(join(import.meta.dirname, '../docs/ERRORS.md'), 'utf8');
    const rows = [...doc.matchAll(/^\| `([A-Z0-9_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const);
    const documented = new Map(rows);
    expect(rows.length).toBe(documented.size); // no code twice
    const expected = new Map(Object.entries(ERROR_CATALOGUE).map(([code, e]) => [code, e.http]));
    expect(documented).toEqual(expected);
  });
});
