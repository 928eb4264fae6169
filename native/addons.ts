import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addons that native/binding.gyp builds. */
export type AddonName = 'strata_mmap' | 'strata_arena' | 'strata_lookup' | 'strata_memory' | 'strata_fuse';

const here = dirname(fileURLToPath(import.meta.url));
/**
 * node-gyp builds the addons into the package's native/build/Release (the install step).
 * This file runs from native/ in a clone (through tsx) and from dist/native/ in the built
 * package, which has no build output of its own; both find the one build.
 */
const RELEASE_DIR = basename(dirname(here)) === 'dist' ? join(here, '../../native/build/Release') : join(here, 'build/Release');

/**
 * Loads an addon built from native/; throws (Node's own "Cannot find module" error) when
 * the install step has not built it. Callers turn that into their own typed error.
 */
export function loadAddon<T>(name: AddonName): T {
  return createRequire(import.meta.url)(join(RELEASE_DIR, `${name}.node`)) as T;
}
