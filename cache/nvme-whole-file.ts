import { open, type FileHandle } from 'node:fs/promises';
import { writeDurably } from '../durable/index.js';
import { blockChecksum } from './checksum.js';

/**
 * Whole-object files of the NVMe tier: one plain file per object version that is whole in the
 * tier, holding the object's bytes at their own offsets (no header), so the kernel can read it
 * itself through FUSE passthrough. The tier knows each file's block layout and the CRC-32C of
 * every block from its index log (nvme-index-log.ts, `W` records), never from the file.
 */

/** Where one block's bytes lie now, in its block file, and the CRC-32C they must have. */
export interface SourceBlock {
  readonly path: string;
  readonly offset: number;
  readonly length: number;
  readonly checksum: number;
}

/** What assembling answered: done, a block that failed its CRC (the file was not made), or stopped. */
export type AssembleResult = { readonly kind: 'done' } | { readonly kind: 'mismatch'; readonly index: number } | { readonly kind: 'stopped' };

/** A block failed its CRC while being copied: the whole file is abandoned. */
class BlockMismatch extends Error {
  constructor(readonly index: number) {
    super(`block ${index} failed its checksum`);
  }
}

/** The tier closed while a file was being assembled. */
class Stopped extends Error {}

/**
 * Writes the whole-object file `path` from `blocks` (in order, block i at i × blockSize):
 * each block is read from its block file, its CRC-32C checked against the one its block was
 * stored with, and written at its offset. The file is written under `tempName` in the same
 * folder, fsync'd, renamed into place and the folder fsync'd (durable/writeDurably), so a
 * crash never leaves a torn file under `path`, and a file the index log names is whole. One
 * block buffer is used for the whole copy. `stopped` is asked between blocks; when it says
 * yes, the temporary file is removed and nothing is made. I/O errors reject.
 */
export async function assembleWholeFile(path: string, tempName: string, blocks: readonly SourceBlock[], blockSize: number, stopped: () => boolean): Promise<AssembleResult> {
  const buffer = Buffer.allocUnsafe(Math.max(0, ...blocks.map((b) => b.length)));
  try {
    await writeDurably(
      path,
      async (out) => {
        for (const [index, block] of blocks.entries()) {
          if (stopped()) throw new Stopped();
          const bytes = buffer.subarray(0, block.length);
          await readExactly(block.path, block.offset, bytes);
          if (blockChecksum(bytes) !== block.checksum) throw new BlockMismatch(index);
          await writeAll(out, bytes, index * blockSize);
        }
      },
      { tempName },
    );
    return { kind: 'done' };
  } catch (err) {
    if (err instanceof BlockMismatch) return { kind: 'mismatch', index: err.index };
    if (err instanceof Stopped) return { kind: 'stopped' };
    throw err;
  }
}

/**
 * The CRC-32C of each `blockSize` block of the `size`-byte file `path` (the last one short),
 * read with one block buffer; undefined when the file is not `size` bytes long.
 */
export async function blockChecksumsOf(path: string, size: number, blockSize: number): Promise<number[] | undefined> {
  const handle = await open(path, 'r');
  try {
    if ((await handle.stat()).size !== size) return undefined;
    const buffer = Buffer.allocUnsafe(Math.min(blockSize, size));
    const checksums: number[] = [];
    for (let offset = 0; offset < size; offset += blockSize) {
      const bytes = buffer.subarray(0, Math.min(blockSize, size - offset));
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await handle.read(bytes, done, bytes.length - done, offset + done);
        if (bytesRead === 0) return undefined;
        done += bytesRead;
      }
      checksums.push(blockChecksum(bytes));
    }
    return checksums;
  } finally {
    await handle.close();
  }
}

/** Reads `into.length` bytes of `path` at `offset`; a short file rejects (it is not the block it should be). */
export async function readExactly(path: string, offset: number, into: Buffer): Promise<void> {
  const handle = await open(path, 'r');
  try {
    let done = 0;
    while (done < into.length) {
      const { bytesRead } = await handle.read(into, done, into.length - done, offset + done);
      if (bytesRead === 0) throw Object.assign(new Error(`${path} ends before byte ${offset + into.length}`), { code: 'ESHORT' });
      done += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

/** Writes all of `bytes` at `position` of the open file. */
export async function writeAll(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
