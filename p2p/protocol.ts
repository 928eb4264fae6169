import type { ObjectRef } from '../store/index.js';
import { PeerError } from './peer-error.js';

/** `GET` a byte range of an object version from the peer that owns it. */
export const BLOCKS_PATH = '/v1/p2p/blocks';
/** `POST {paths}`: the peer starts its share of a distribution. */
export const DISTRIBUTE_PATH = '/v1/p2p/distribute';
/** Header of a block reply: CRC-32 of the bytes, 8 lower-case hex digits. */
export const CHECKSUM_HEADER = 'x-strata-block-crc32';

/** The largest range a peer serves at once: the cache's largest block size (16 MiB). */
export const MAX_PEER_RANGE = 16 * 1024 * 1024;

/** S3's key limit. */
const MAX_KEY_BYTES = 1024;
/** A store id is a store URL plus an endpoint URL (each limited well below this). */
const MAX_STORE_ID_LENGTH = 4096;
/** An ETag as stores write it (hex, `-N` for multipart), never with quotes or control characters. */
const ETAG = /^[\x21\x23-\x7e]{1,200}$/;

/** One range a peer asks for: bytes [start, start + length) of the version `ref`. */
export interface BlockRequest {
  readonly ref: ObjectRef;
  readonly start: number;
  readonly length: number;
}

/** The request path (with query) for `block`. */
export function blockRequestPath(block: BlockRequest): string {
  const query = new URLSearchParams({
    store: block.ref.storeId,
    key: block.ref.key,
    etag: block.ref.etag,
    size: String(block.ref.size),
    start: String(block.start),
    length: String(block.length),
  });
  return `${BLOCKS_PATH}?${query.toString()}`;
}

/** Parses the query of a block request; anything missing or out of range is API_BAD_REQUEST. */
export function parseBlockRequest(query: string): BlockRequest {
  const params = new URLSearchParams(query);
  const text = (name: string): string => {
    const value = params.get(name);
    if (value === null || value.length === 0) throw new PeerError('API_BAD_REQUEST', `${name}: missing`);
    return value;
  };
  const integer = (name: string): number => {
    const value = text(name);
    if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) throw new PeerError('API_BAD_REQUEST', `${name}: "${value}" is not a non-negative integer`);
    return Number(value);
  };
  const key = text('key');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES || key.includes('\0')) throw new PeerError('API_BAD_REQUEST', `key: must be at most ${MAX_KEY_BYTES} bytes, without NUL`);
  const storeId = text('store');
  if (storeId.length > MAX_STORE_ID_LENGTH) throw new PeerError('API_BAD_REQUEST', `store: must be at most ${MAX_STORE_ID_LENGTH} characters`);
  const etag = text('etag');
  if (!ETAG.test(etag)) throw new PeerError('API_BAD_REQUEST', 'etag: must be 1 to 200 printable characters without quotes');
  const ref: ObjectRef = { storeId, key, etag, size: integer('size') };
  const start = integer('start');
  const length = integer('length');
  if (length === 0 || length > MAX_PEER_RANGE) throw new PeerError('API_BAD_REQUEST', `length: must be 1 to ${MAX_PEER_RANGE} bytes`);
  if (start + length > ref.size) throw new PeerError('API_BAD_REQUEST', `start + length (${start + length}) is past the object's size (${ref.size})`);
  return { ref, start, length };
}

/** CRC-32 of a block as the checksum header carries it. */
export function formatChecksum(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0');
}
