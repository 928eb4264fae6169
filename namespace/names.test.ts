import { describe, expect, it } from 'vitest';
import { keyOfPath, normalisePath, parentOf, searchName } from './names.js';

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

  it('finds a name in a sorted listing, or where it would go', () => {
    const names = ['a', 'b', 'd', 'e'];
    const search = (name: string) => searchName(names, name, (n) => n);
    expect(search('a')).toEqual({ index: 0, found: true });
    expect(search('e')).toEqual({ index: 3, found: true });
    expect(search('c')).toEqual({ index: 2, found: false });
    expect(search('0')).toEqual({ index: 0, found: false });
    expect(search('f')).toEqual({ index: 4, found: false });
    expect(searchName([], 'a', (n: string) => n)).toEqual({ index: 0, found: false });
  });
});
