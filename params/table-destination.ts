import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ParamsError } from './params-error.js';

/** Where a table file lives: a local path, or an object in a store. */
export type TableLocation =
  | { readonly kind: 'local'; readonly path: string }
  | { readonly kind: 'store'; readonly storeUrl: string; readonly key: string };

/**
 * Reads a table address: a local path (relative ones against the working directory),
 * `file:///abs/path/table.params` (a local path too), or `s3://bucket/prefix/table.params`,
 * which becomes the store `s3://bucket/prefix` and the key `table.params`.
 */
export function parseTableLocation(text: string): TableLocation {
  if (text.startsWith('s3://')) {
    const rest = text.slice('s3://'.length);
    const cut = rest.lastIndexOf('/');
    const key = cut < 0 ? '' : rest.slice(cut + 1);
    if (cut < 0 || key.length === 0) throw new ParamsError('PARAMS_BAD_INPUT', `"${text}" names no object; use s3://bucket[/prefix]/table.params`);
    return { kind: 'store', storeUrl: `s3://${rest.slice(0, cut)}`, key };
  }
  if (text.startsWith('file://')) {
    let path: string;
    try {
      path = fileURLToPath(text);
    } catch (err) {
      throw new ParamsError('PARAMS_BAD_INPUT', `"${text}" is not a valid file:// URL (use file:///abs/path)`, { cause: err });
    }
    return { kind: 'local', path };
  }
  if (text.includes('://')) throw new ParamsError('PARAMS_BAD_INPUT', `"${text}": use a local path, file:///abs/path or s3://bucket/key`);
  return { kind: 'local', path: isAbsolute(text) ? text : resolve(text) };
}
