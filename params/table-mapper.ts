import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { loadMmapBinding, type MmapBinding } from '../native/index.js';

/** A byte range of a table file to bring into memory. */
export interface FileRegion {
  readonly offset: number;
  readonly length: number;
}

/**
 * Brings regions of a table file into memory as Buffers the lookup reads through typed
 * arrays. Implementations: `mmap` (the project's native addon, MAP_SHARED; nothing is
 * read until touched) and `read` (plain reads into memory, when the addon is missing).
 */
export interface TableMapper {
  readonly kind: 'mmap' | 'read';
  /** The file's size and one Buffer per region, in order. Offsets are page multiples; lengths > 0. */
  mapRegions(path: string, regions: (size: number) => FileRegion[]): { size: number; buffers: Buffer[] };
}

/** Maps with the project's addon. Mappings are released when their Buffers are garbage-collected. */
export class MmapTableMapper implements TableMapper {
  readonly kind = 'mmap';
  readonly #binding: MmapBinding;

  constructor(binding: MmapBinding = loadMmapBinding()) {
    this.#binding = binding;
  }

  mapRegions(path: string, regions: (size: number) => FileRegion[]): { size: number; buffers: Buffer[] } {
    // The addon maps read/write (MAP_SHARED), so the descriptor must be opened read/write too.
    const fd = openSync(path, 'r+');
    try {
      const size = fstatSync(fd).size;
      return { size, buffers: regions(size).map((r) => this.#binding.map(fd, r.offset, r.length)) };
    } finally {
      closeSync(fd); // a mapping outlives its descriptor
    }
  }
}

/** Reads the regions into memory: the fallback without the addon (slow to open, same lookups). */
export class ReadTableMapper implements TableMapper {
  readonly kind = 'read';

  mapRegions(path: string, regions: (size: number) => FileRegion[]): { size: number; buffers: Buffer[] } {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const buffers = regions(size).map((r) => {
        const out = Buffer.allocUnsafeSlow(r.length);
        for (let got = 0; got < r.length; ) {
          const n = readSync(fd, out, got, r.length - got, r.offset + got);
          if (n === 0) {
            out.fill(0, got);
            break;
          }
          got += n;
        }
        return out;
      });
      return { size, buffers };
    } finally {
      closeSync(fd);
    }
  }
}

/** The mmap mapper when the native addon is built, else the read mapper. */
export function defaultTableMapper(): TableMapper {
  try {
    return new MmapTableMapper();
  } catch {
    return new ReadTableMapper();
  }
}
