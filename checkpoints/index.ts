/**
 * The write path: files written through the mount are staged on a local tier,
 * streamed to the store as multipart uploads while written sequentially, journaled so that a
 * released file survives a crash, and committed in the background or before close returns.
 *
 * On disk, under `stagingDir`:
 * - `staged/<id>.data`: the bytes of one file version (deleted once committed);
 * - `journal/<id>.json`: its record (target, size, multipart upload id and parts, state),
 *   replaced atomically; only files that were released, or that hold a multipart upload to
 *   abort after a crash, have one;
 * - `pins.json`: the newest committed versions per folder, re-pinned at start.
 */
export { WritePath } from './write-path.js';
export { WriteHandle, type AdoptHook, type OpenOptions, type PendingFile, type UploadStatus, type WriteTarget } from './write-handle.js';
export { resolveWritePathConfig, type CloseMode, type PinHooks, type Sleep, type WritePathConfig } from './write-path-config.js';
export { WritePathError, type WritePathErrorCode } from './write-path-error.js';
export type { UploadState } from './pending-upload.js';
