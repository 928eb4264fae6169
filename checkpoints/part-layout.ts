/**
 * Where each multipart part lies in a file. S3 allows at most 10,000 parts, so part sizes grow
 * as the file does: parts 1-1,000 are `base` bytes, 1,001-2,000 twice that, and so on, doubling
 * every 1,000 parts up to `MAX_PART_BYTES`. With a 16 MiB base, files under 16 GiB keep the base
 * size and 10,000 parts cover about 3 TiB. Every part but the last of a file is full-sized, as
 * S3 requires.
 */

/** Parts per size step. */
const PARTS_PER_STEP = 1000;
/** S3's limit on parts per upload. */
export const MAX_PARTS = 10_000;
/**
 * Parts stop growing at 512 MiB: one part is read into memory whole, and S3's own limit (5 GiB)
 * and Node's single-read limit (2 GiB) are far above it.
 */
export const MAX_PART_BYTES = 512 * 1024 * 1024;

export interface PartRange {
  /** 1-based, as in S3. */
  readonly partNumber: number;
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
}

/** The full-size range of part `partNumber`, whatever the file's size. */
export function partRange(base: number, partNumber: number): PartRange {
  const step = Math.floor((partNumber - 1) / PARTS_PER_STEP);
  let start = 0;
  for (let s = 0; s < step; s++) start += PARTS_PER_STEP * stepSize(base, s);
  const size = stepSize(base, step);
  start += ((partNumber - 1) % PARTS_PER_STEP) * size;
  return { partNumber, start, end: start + size };
}

/** Parts a file of `size` bytes is cut into, the last one clipped to the end (none for an empty file). */
export function partsOf(base: number, size: number): PartRange[] {
  const parts: PartRange[] = [];
  for (let n = 1; ; n++) {
    const range = partRange(base, n);
    if (range.start >= size) break;
    parts.push({ partNumber: n, start: range.start, end: Math.min(range.end, size) });
  }
  return parts;
}

function stepSize(base: number, step: number): number {
  return Math.max(base, Math.min(MAX_PART_BYTES, base * 2 ** step));
}
