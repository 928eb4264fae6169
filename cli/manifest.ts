import { readFile } from 'node:fs/promises';
import { UsageError } from './usage-error.js';

/** The paths of a manifest file: one per line; blank lines and `#` comments are skipped. */
export async function readManifest(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    const why = err.code === 'ENOENT' ? 'does not exist' : err.code === 'EISDIR' ? 'is a folder; give a file with one path per line' : `cannot be read (${err.code ?? err.message})`;
    throw new UsageError('USAGE', `--manifest: ${path} ${why}`);
  });
  return text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith('#'));
}
