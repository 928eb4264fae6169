import { describe, expect, it } from 'vitest';
import { InodeTable, ROOT_NODE, childPath, splitPath } from './inode-table.js';

describe('InodeTable', () => {
  it('gives a path one node while the kernel remembers it, and a new one after it forgot', () => {
    const table = new InodeTable();
    const a = table.remember('/a');
    expect(table.remember('/a')).toBe(a);
    expect(table.pathOf(a)).toBe('/a');
    table.forget(a, 1n);
    expect(table.nodeOf('/a')).toBe(a); // one lookup left
    table.forget(a, 1n);
    expect(table.nodeOf('/a')).toBeUndefined();
    expect(table.pathOf(a)).toBeUndefined();
    const again = table.remember('/a');
    expect(again).not.toBe(a);
  });

  it('never forgets the root', () => {
    const table = new InodeTable();
    table.forget(ROOT_NODE, 5n);
    expect(table.pathOf(ROOT_NODE)).toBe('/');
  });

  it('moves a folder with everything under it on rename, and drops the node it replaced', () => {
    const table = new InodeTable();
    const dir = table.remember('/d');
    const file = table.remember('/d/f');
    const other = table.remember('/dx');
    const replaced = table.remember('/e');
    table.move('/d', '/e');
    expect(table.pathOf(dir)).toBe('/e');
    expect(table.pathOf(file)).toBe('/e/f');
    expect(table.pathOf(other)).toBe('/dx'); // a name that merely starts the same stays
    expect(table.nodeOf('/e')).toBe(dir);
    expect(table.nodeOf('/d')).toBeUndefined();
    expect(table.nodeOf('/e/f')).toBe(file);
    expect(table.pathOf(replaced)).toBe('/e'); // still known to the kernel until it forgets
    expect([...table.entries()].length).toBe(5);
  });

  it('joins and splits paths', () => {
    expect(childPath('/', 'a')).toBe('/a');
    expect(childPath('/a', 'b')).toBe('/a/b');
    expect(splitPath('/a/b')).toEqual({ parent: '/a', name: 'b' });
    expect(splitPath('/a')).toEqual({ parent: '/', name: 'a' });
    expect(splitPath('/')).toBeUndefined();
  });
});
