import { S_IFMT } from '../store/index.js';
import type { DirectoryItem, FileStat, FsStatistics } from './filesystem.js';

/**
 * The parts of the FUSE kernel protocol (include/uapi/linux/fuse.h, 7.40) the native
 * session speaks: opcodes, flags, and the encoding of requests and answers. Little-endian
 * throughout (the protocol uses the host's byte order; Linux on x86-64 and arm64 is LE).
 */

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  CREATE: 35,
  DESTROY: 38,
  BATCH_FORGET: 42,
  READDIRPLUS: 44,
  RENAME2: 45,
} as const;

/** Opcode 0 is not the kernel's: the addon's "the connection has ended". */
export const SESSION_ENDED = 0;

export const NotifyCode = { INVAL_INODE: 2, INVAL_ENTRY: 3 } as const;

export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  CACHE_DIR: 1 << 3,
  /** No FLUSH at close (protocol 7.35): for handles whose flush has nothing to do. */
  NOFLUSH: 1 << 5,
  PASSTHROUGH: 1 << 7,
} as const;

/** FUSE_PASSTHROUGH as the addon reports it: bit 5 of the second flags word. */
export const INIT2_PASSTHROUGH = 1 << 5;

export const SetattrValid = { MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8 } as const;

/** fuse_getattr_in.getattr_flags: the request names an open file (`fh`). */
export const GETATTR_FH = 1 << 0;

export const RENAME_NOREPLACE = 1;

export const IN_HEADER_BYTES = 40;
export const OUT_HEADER_BYTES = 16;
const ATTR_BYTES = 88;
const ENTRY_OUT_BYTES = 40 + ATTR_BYTES;
const ATTR_OUT_BYTES = 16 + ATTR_BYTES;
const OPEN_OUT_BYTES = 16;
const STATFS_OUT_BYTES = 80;
const DIRENT_HEADER_BYTES = 24;

export interface RequestHeader {
  readonly opcode: number;
  readonly unique: bigint;
  readonly nodeId: bigint;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

export function decodeHeader(request: Buffer): RequestHeader {
  return {
    opcode: request.readUInt32LE(4),
    unique: request.readBigUInt64LE(8),
    nodeId: request.readBigUInt64LE(16),
    uid: request.readUInt32LE(24),
    gid: request.readUInt32LE(28),
    pid: request.readUInt32LE(32),
  };
}

/** A NUL-terminated name at `offset` of the request, and where the next field starts. */
export function nameAt(request: Buffer, offset: number): { name: string; next: number } {
  const end = request.indexOf(0, offset);
  const stop = end < 0 ? request.length : end;
  return { name: request.toString('utf8', offset, stop), next: stop + 1 };
}

/** The header of an answer to `unique`: `error` is 0 or a negative errno. */
export function outHeader(unique: bigint, error: number, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(OUT_HEADER_BYTES);
  header.writeUInt32LE(OUT_HEADER_BYTES + payloadBytes, 0);
  header.writeInt32LE(error, 4);
  header.writeBigUInt64LE(unique, 8);
  return header;
}

/** The whole answer (header and body in one buffer) for small answers. */
export function answer(unique: bigint, body: Buffer): Buffer {
  return Buffer.concat([outHeader(unique, 0, body.length), body]);
}

/** Whole seconds and nanoseconds of a TTL in seconds, as the kernel's valid/valid_nsec pairs. */
function splitSeconds(seconds: number): [bigint, number] {
  const whole = Math.floor(seconds);
  return [BigInt(whole), Math.round((seconds - whole) * 1e9)];
}

function writeAttr(out: Buffer, at: number, nodeId: bigint, stat: FileStat): void {
  const time = (d: Date): [bigint, number] => {
    const ms = d.getTime();
    const s = Math.floor(ms / 1000);
    return [BigInt(s), (ms - s * 1000) * 1_000_000];
  };
  const [atime, atimeNs] = time(stat.atime);
  const [mtime, mtimeNs] = time(stat.mtime);
  const [ctime, ctimeNs] = time(stat.ctime);
  out.writeBigUInt64LE(nodeId, at);
  out.writeBigUInt64LE(BigInt(stat.size), at + 8);
  out.writeBigUInt64LE(BigInt(stat.blocks), at + 16);
  out.writeBigUInt64LE(atime, at + 24);
  out.writeBigUInt64LE(mtime, at + 32);
  out.writeBigUInt64LE(ctime, at + 40);
  out.writeUInt32LE(atimeNs, at + 48);
  out.writeUInt32LE(mtimeNs, at + 52);
  out.writeUInt32LE(ctimeNs, at + 56);
  out.writeUInt32LE(stat.mode, at + 60);
  out.writeUInt32LE(stat.nlink, at + 64);
  out.writeUInt32LE(stat.uid, at + 68);
  out.writeUInt32LE(stat.gid, at + 72);
  out.writeUInt32LE(0, at + 76); // rdev
  out.writeUInt32LE(stat.blksize, at + 80);
  out.writeUInt32LE(0, at + 84); // flags
}

/** fuse_entry_out: a name's inode with its attributes; nodeId 0 caches a negative answer. */
export function entryOut(nodeId: bigint, stat: FileStat | undefined, ttlSeconds: number): Buffer {
  const out = Buffer.alloc(ENTRY_OUT_BYTES);
  writeEntry(out, 0, nodeId, stat, ttlSeconds);
  return out;
}

/** A fuse_entry_out at `at` of `out` (zeroed memory: the attributes stay zero without `stat`). */
function writeEntry(out: Buffer, at: number, nodeId: bigint, stat: FileStat | undefined, ttlSeconds: number): void {
  const [whole, nanos] = splitSeconds(ttlSeconds);
  out.writeBigUInt64LE(nodeId, at);
  out.writeBigUInt64LE(0n, at + 8); // generation: node ids are never reused within a mount
  out.writeBigUInt64LE(whole, at + 16);
  out.writeBigUInt64LE(whole, at + 24);
  out.writeUInt32LE(nanos, at + 32);
  out.writeUInt32LE(nanos, at + 36);
  if (stat) writeAttr(out, at + 40, nodeId, stat);
}

export function attrOut(nodeId: bigint, stat: FileStat, ttlSeconds: number): Buffer {
  const out = Buffer.alloc(ATTR_OUT_BYTES);
  const [whole, nanos] = splitSeconds(ttlSeconds);
  out.writeBigUInt64LE(whole, 0);
  out.writeUInt32LE(nanos, 8);
  writeAttr(out, 16, nodeId, stat);
  return out;
}

export function openOut(handle: number, openFlags: number, backingId = 0): Buffer {
  const out = Buffer.alloc(OPEN_OUT_BYTES);
  out.writeBigUInt64LE(BigInt(handle), 0);
  out.writeUInt32LE(openFlags, 8);
  out.writeInt32LE(backingId, 12);
  return out;
}

export function writeOut(size: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt32LE(size, 0);
  return out;
}

export function statfsOut(s: FsStatistics): Buffer {
  const out = Buffer.alloc(STATFS_OUT_BYTES);
  out.writeBigUInt64LE(BigInt(s.blocks), 0);
  out.writeBigUInt64LE(BigInt(s.bfree), 8);
  out.writeBigUInt64LE(BigInt(s.bavail), 16);
  out.writeBigUInt64LE(BigInt(s.files), 24);
  out.writeBigUInt64LE(BigInt(s.ffree), 32);
  out.writeUInt32LE(s.bsize, 40);
  out.writeUInt32LE(s.namemax, 44);
  out.writeUInt32LE(s.frsize, 48);
  return out;
}

/**
 * fuse_dirent records of `items` from index `from`, as many as fit in `maxBytes`; each
 * record's offset is the index of the next item, which is where a later READDIR resumes.
 */
export function direntsOut(items: readonly DirectoryItem[], from: number, maxBytes: number): Buffer {
  const records: Buffer[] = [];
  let used = 0;
  for (let i = from; i < items.length; i++) {
    const name = Buffer.from(items[i]!.name, 'utf8');
    const size = recordBytes(0, name.length);
    if (used + size > maxBytes) break;
    const record = Buffer.alloc(size);
    writeDirent(record, 0, BigInt(i + 1), i, items[i]!.mode, name); // ino: only needs to be non-zero here
    records.push(record);
    used += size;
  }
  return Buffer.concat(records, used);
}

/** A directory record's bytes: `prefix` bytes before its fuse_dirent (the entry_out of READDIRPLUS), padded to 8. */
function recordBytes(prefix: number, nameBytes: number): number {
  return (prefix + DIRENT_HEADER_BYTES + nameBytes + 7) & ~7;
}

/** A fuse_dirent for `items[index]` at `at` of `out`: its offset is the next item's index, where a later request resumes. */
function writeDirent(out: Buffer, at: number, ino: bigint, index: number, mode: number, name: Buffer): void {
  out.writeBigUInt64LE(ino, at);
  out.writeBigUInt64LE(BigInt(index + 1), at + 8);
  out.writeUInt32LE(name.length, at + 16);
  out.writeUInt32LE((mode & S_IFMT) >> 12, at + 20); // d_type: DT_DIR, DT_REG, ... are the type bits >> 12
  name.copy(out, at + DIRENT_HEADER_BYTES);
}

/**
 * How many of `items`, from index `from`, fit in `maxBytes` as fuse_direntplus records (an
 * entry_out, then a dirent; each padded to 8 bytes): READDIRPLUS looks up only those.
 */
export function direntsPlusFitting(items: readonly DirectoryItem[], from: number, maxBytes: number): number {
  let used = 0;
  let count = 0;
  for (let i = from; i < items.length; i++) {
    const size = recordBytes(ENTRY_OUT_BYTES, Buffer.byteLength(items[i]!.name, 'utf8'));
    if (used + size > maxBytes) break;
    used += size;
    count += 1;
  }
  return count;
}

/** One name of a READDIRPLUS answer: its node and attributes, or node 0 (the kernel makes no entry for it). */
export interface PlusEntry {
  readonly nodeId: bigint;
  readonly stat: FileStat | undefined;
}

/**
 * fuse_direntplus records of `items[from + i]` with `entries[i]`, for the `entries.length` items
 * direntsPlusFitting allowed. Each record with a node counts as one lookup of it in the kernel,
 * as an answered LOOKUP does; the offsets resume where READDIR's do.
 */
export function direntsPlusOut(items: readonly DirectoryItem[], from: number, entries: readonly PlusEntry[], ttlSeconds: number): Buffer {
  const records: Buffer[] = [];
  let used = 0;
  for (let k = 0; k < entries.length; k++) {
    const i = from + k;
    const name = Buffer.from(items[i]!.name, 'utf8');
    const { nodeId, stat } = entries[k]!;
    const size = recordBytes(ENTRY_OUT_BYTES, name.length);
    const record = Buffer.alloc(size);
    if (nodeId !== 0n) writeEntry(record, 0, nodeId, stat, ttlSeconds); // node 0: all zero, no entry
    writeDirent(record, ENTRY_OUT_BYTES, nodeId === 0n ? BigInt(i + 1) : nodeId, i, items[i]!.mode, name); // ino: non-zero
    records.push(record);
    used += size;
  }
  return Buffer.concat(records, used);
}

/** FUSE_NOTIFY_INVAL_INODE: drop the kernel's attributes and cached pages of `nodeId`. */
export function invalInodeNotice(nodeId: bigint): Buffer {
  const body = Buffer.alloc(24);
  body.writeBigUInt64LE(nodeId, 0);
  body.writeBigInt64LE(0n, 8); // from offset 0 ...
  body.writeBigInt64LE(0n, 16); // ... to the end (length 0)
  return Buffer.concat([outHeader(0n, NotifyCode.INVAL_INODE, body.length), body]);
}

/** FUSE_NOTIFY_INVAL_ENTRY: drop the kernel's entry (or negative entry) of `name` in `parent`. */
export function invalEntryNotice(parent: bigint, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const body = Buffer.alloc(16 + nameBytes.length + 1);
  body.writeBigUInt64LE(parent, 0);
  body.writeUInt32LE(nameBytes.length, 8);
  nameBytes.copy(body, 16);
  return Buffer.concat([outHeader(0n, NotifyCode.INVAL_ENTRY, body.length), body]);
}
