import { describe, expect, it } from 'vitest';
import { keyOfPath, normalisePath, parentOf } from './names.js';

describe('mount paths', () => {
  it('normalises a path to one leading slash, no empty names and no trailing slash', () => {
    const cases: Array<[string, string]> = [
      ['/', '/'],
      ['', '/'],
      ['//', '/'],
      ['a', '/a'],
      ['/a', '/a'],
      ['/a/', '/a'],
      ['//a//b/', '/a/b'],
      ['/a/b', '/a/b'],
      ['a/b/', '/a/b'],
      ['/a b/c.d', '/a b/c.d'],
    ];
    for (const [path, normal] of cases) expect(normalisePath(path), path).toBe(normal);
  });

  it('maps paths to keys and parents', () => {
    expect(keyOfPath('/a//b/')).toBe('a/b');
    expect(keyOfPath('/a/b', true)).toBe('a/b/');
    expect(keyOfPath('/', true)).toBe('');
    expect(parentOf('/a/b')).toBe('/a');
    expect(parentOf('/a')).toBe('/');
  });
});
