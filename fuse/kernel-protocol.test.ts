import { describe, expect, it } from 'vitest';
import type { FileStat } from './filesystem.js';
import { Opcode, attrOut, decodeHeader, direntsOut, direntsPlusFitting, direntsPlusOut, entryOut, invalEntryNotice, invalInodeNotice, nameAt, openOut, outHeader } from './kernel-protocol.js';

const stat: FileStat = {
  mode: 0o100644,
  size: 5 * 2 ** 32 + 7, // past 32 bits: the kernel's fields are 64-bit
  mtime: new Date(1_700_000_000_123),
  atime: new Date(1_700_000_000_123),
  ctime: new Date(1_700_000_000_123),
  nlink: 1,
  uid: 1000,
  gid: 1000,
  blocks: 9,
  blksize: 131072,
};

describe('FUSE kernel protocol encoding', () => {
  it('decodes a request header and the names after it', () => {
    const request = Buffer.alloc(40 + 10);
    request.writeUInt32LE(request.length, 0);
    request.writeUInt32LE(Opcode.RENAME, 4);
    request.writeBigUInt64LE(77n, 8);
    request.writeBigUInt64LE(5n, 16);
    request.writeUInt32LE(1000, 24);
    request.write('a\0bc\0', 40, 'utf8');
    expect(decodeHeader(request)).toMatchObject({ opcode: Opcode.RENAME, unique: 77n, nodeId: 5n, uid: 1000 });
    const first = nameAt(request, 40);
    expect(first.name).toBe('a');
    expect(nameAt(request, first.next).name).toBe('bc');
  });

  it('lays out fuse_entry_out and fuse_attr_out as the kernel reads them (128 and 104 bytes)', () => {
    const entry = entryOut(42n, stat, 1.5);
    expect(entry.length).toBe(128);
    expect(entry.readBigUInt64LE(0)).toBe(42n);
    expect(entry.readBigUInt64LE(16)).toBe(1n); // entry_valid seconds
    expect(entry.readUInt32LE(32)).toBe(500_000_000); // entry_valid_nsec
    expect(entry.readBigUInt64LE(40)).toBe(42n); // attr.ino
    expect(entry.readBigUInt64LE(48)).toBe(BigInt(stat.size));
    expect(entry.readBigUInt64LE(72)).toBe(1_700_000_000n); // attr.mtime
    expect(entry.readUInt32LE(92)).toBe(123_000_000); // attr.mtimensec
    expect(entry.readUInt32LE(100)).toBe(0o100644); // attr.mode
    const attr = attrOut(42n, stat, 60);
    expect(attr.length).toBe(104);
    expect(attr.readBigUInt64LE(0)).toBe(60n);
    expect(attr.readUInt32LE(16 + 60)).toBe(0o100644);
  });

  it('caches a negative lookup as node 0 with a TTL', () => {
    const negative = entryOut(0n, undefined, 60);
    expect(negative.readBigUInt64LE(0)).toBe(0n);
    expect(negative.readBigUInt64LE(16)).toBe(60n);
  });

  it('answers an open with its handle, flags and passthrough backing id', () => {
    const open = openOut(9, 1 << 7, 3);
    expect(open.readBigUInt64LE(0)).toBe(9n);
    expect(open.readUInt32LE(8)).toBe(1 << 7);
    expect(open.readInt32LE(12)).toBe(3);
  });

  it('writes the answer header with the total length and a negative errno', () => {
    const header = outHeader(5n, -2, 100);
    expect(header.readUInt32LE(0)).toBe(116);
    expect(header.readInt32LE(4)).toBe(-2);
    expect(header.readBigUInt64LE(8)).toBe(5n);
  });

  it('packs directory entries 8-byte aligned, stopping before the size the kernel asked for', () => {
    const items = [{ name: '.', mode: 0o040000 }, { name: '..', mode: 0o040000 }, { name: 'a-long-file-name.bin', mode: 0 }];
    const all = direntsOut(items, 0, 4096);
    expect(all.length).toBe(32 + 32 + 48);
    expect(all.readUInt32LE(20)).toBe(4); // DT_DIR
    expect(all.readBigUInt64LE(32 + 32 + 8)).toBe(3n); // the offset to resume after the last
    expect(all.toString('utf8', 32 + 32 + 24, 32 + 32 + 24 + 20)).toBe('a-long-file-name.bin');
    expect(direntsOut(items, 0, 70).length).toBe(64);
    expect(direntsOut(items, 2, 4096).length).toBe(48);
  });

  it('packs READDIRPLUS records: an entry_out (node, TTLs, attributes) then a dirent, 8-byte aligned', () => {
    const items = [{ name: '.', mode: 0o040000 }, { name: '..', mode: 0o040000 }, { name: 'model.bin', mode: 0o100644 }, { name: 'next.bin', mode: 0o100644 }];
    // 128-byte entry_out + 24-byte dirent header + the name, rounded up to 8: 160 for '.' and '..', 168 for 'model.bin'.
    expect(direntsPlusFitting(items, 0, 4096)).toBe(4);
    expect(direntsPlusFitting(items, 0, 160 + 160 + 167)).toBe(2);
    expect(direntsPlusFitting(items, 2, 168)).toBe(1);
    const out = direntsPlusOut(items, 1, [{ nodeId: 0n, stat: undefined }, { nodeId: 42n, stat }], 1.5);
    expect(out.length).toBe(160 + 168);
    // '..' without a node: no entry for the kernel, and its dirent still lists it.
    expect(out.readBigUInt64LE(0)).toBe(0n);
    expect(out.readUInt32LE(128 + 16)).toBe(2);
    expect(out.toString('utf8', 128 + 24, 128 + 26)).toBe('..');
    // 'model.bin': node 42 with its attributes and the TTL, its dirent's offset resumes after it.
    const record = out.subarray(160);
    expect(record.readBigUInt64LE(0)).toBe(42n);
    expect(record.readBigUInt64LE(16)).toBe(1n); // entry_valid seconds
    expect(record.readUInt32LE(32)).toBe(500_000_000); // entry_valid nanoseconds
    expect(record.readBigUInt64LE(40 + 8)).toBe(BigInt(stat.size));
    expect(record.readUInt32LE(40 + 60)).toBe(stat.mode);
    expect(record.readBigUInt64LE(128)).toBe(42n); // d_ino is the node's inode number
    expect(record.readBigUInt64LE(128 + 8)).toBe(3n);
    expect(record.readUInt32LE(128 + 20)).toBe(8); // DT_REG
    expect(record.toString('utf8', 128 + 24, 128 + 33)).toBe('model.bin');
  });

  it('builds invalidation notices with unique 0 and the notify code in the error field', () => {
    const inode = invalInodeNotice(7n);
    expect(inode.readUInt32LE(0)).toBe(inode.length);
    expect(inode.readInt32LE(4)).toBe(2);
    expect(inode.readBigUInt64LE(8)).toBe(0n);
    expect(inode.readBigUInt64LE(16)).toBe(7n);
    const entry = invalEntryNotice(1n, 'name');
    expect(entry.readInt32LE(4)).toBe(3);
    expect(entry.readBigUInt64LE(16)).toBe(1n);
    expect(entry.readUInt32LE(24)).toBe(4);
    expect(entry.toString('utf8', 32, 36)).toBe('name');
    expect(entry[36]).toBe(0);
  });
});
