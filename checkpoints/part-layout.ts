/**
 * Where each multipart part lies in a file. S3 allows at most 10,000 parts, so part sizes grow
 * as the file does: parts 1-1,000 are `base` bytes, 1,001-2,000 twice that, and so on, doubling
 * every 1,000 parts. With a 16 MiB base, 10,000 parts cover about 16 TiB, while files under
 * 16 GiB keep the base size. Every part but the last of a file is full-sized, as S3 requires.
 */

/** Parts per size step; 10 steps fit S3's 10,000-part limit. */
const PARTS_PER_STEP = 1000;
/** S3's limit on parts per upload. */
export const MAX_PARTS = 10_000;

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
  const size = base * 2 ** step;
  const start = base * PARTS_PER_STEP * (2 ** step - 1) + ((partNumber - 1) % PARTS_PER_STEP) * size;
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
