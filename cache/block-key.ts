import { createHash } from 'node:crypto';
import type { ObjectRef } from '../store/index.js';

/**
 * Names one block of one object version: bytes [index × blockSize, (index + 1) × blockSize)
 * of the object `key` with ETag `etag` in store `storeId`. Because the ETag is part of
 * the identity, a block of an older version can never answer a read of a newer one.
 */
export interface BlockKey {
  readonly storeId: string;
  readonly key: string;
  readonly etag: string;
  readonly index: number;
}

/**
 * The stable string id of a block, used by every tier and persisted in tier files.
 * Components are JSON-encoded so no separator inside a key or ETag can make two keys
 * collide. The format is part of the on-disk state: changing it orphans cached blocks.
 */
export function blockId(block: BlockKey): string {
  return JSON.stringify([block.storeId, block.key, block.etag, block.index]);
}

/** The key of block `index` of `ref`. */
export function blockKeyOf(ref: ObjectRef, index: number): BlockKey {
  return { storeId: ref.storeId, key: ref.key, etag: ref.etag, index };
}

/** How many blocks an object of `size` bytes has (the last one may be short). */
export function blockCount(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** Byte length of block `index` of an object of `size` bytes. */
export function blockLength(size: number, blockSize: number, index: number): number {
  return Math.max(0, Math.min(blockSize, size - index * blockSize));
}

/**
 * The stable string id of an object version, `[storeId, key, etag]` as JSON: the first fields
 * of each of its block ids (`blockId`), so a block id names its object by its prefix.
 */
export function objectVersionId(ref: ObjectRef): string {
  return JSON.stringify([ref.storeId, ref.key, ref.etag]);
}

/** The id of block `index` of the object version `objectId` (`objectVersionId`): what `blockId` gives. */
export function blockIdInVersion(objectId: string, index: number): string {
  return `${objectId.slice(0, -1)},${index}]`;
}

/** A block id's object version id (`objectVersionId`) and block index; undefined when `id` is not a block id. */
export function splitBlockId(id: string): { readonly objectId: string; readonly index: number } | undefined {
  const comma = id.lastIndexOf(',');
  if (comma <= 0 || !id.endsWith(']')) return undefined;
  const index = Number(id.slice(comma + 1, -1));
  if (!Number.isSafeInteger(index) || index < 0) return undefined;
  return { objectId: `${id.slice(0, comma)}]`, index };
}

/**
 * The SHA-256 (hex) of a block or object version id: how the tiers name its files and slot
 * records, fixed-length and safe as a file name whatever the key holds.
 */
export function hashId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}
