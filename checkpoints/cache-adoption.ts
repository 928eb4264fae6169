import type { ObjectRef } from '../store/index.js';
import type { NewestPins } from './newest-pins.js';
import type { PendingUpload } from './pending-upload.js';
import type { AdoptHook } from './write-handle.js';
import type { ResolvedWritePathConfig } from './write-path-config.js';

/**
 * Hands a committed version to the cache: its staged bytes (so a read after the commit is a
 * hit, not a GET) and its place among the newest pinned versions of its folder. A cache that
 * cannot adopt the bytes costs a later read from the store, never the commit.
 */
export class CacheAdoption {
  readonly #adopt: AdoptHook | undefined;
  readonly #pins: NewestPins;
  readonly #config: ResolvedWritePathConfig;

  constructor(adopt: AdoptHook | undefined, pins: NewestPins, config: ResolvedWritePathConfig) {
    this.#adopt = adopt;
    this.#pins = pins;
    this.#config = config;
  }

  /** `upload` is in the store as `ref`: the cache copies its staged bytes, then the pins take it. */
  async committed(ref: ObjectRef, upload: PendingUpload): Promise<void> {
    await this.#adoptBytes(ref, upload);
    await this.#pins.committed(ref, this.#config.now());
  }

  async #adoptBytes(ref: ObjectRef, upload: PendingUpload): Promise<void> {
    if (!this.#adopt) return;
    try {
      await upload.staged.flush();
      await this.#adopt(ref, upload.staged.path);
    } catch (err) {
      this.#config.logger.warn({ err, key: ref.key }, 'the cache could not adopt the staged bytes; they will be read from the store');
    }
  }
}
