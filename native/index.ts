/**
 * The native addons that native/binding.gyp builds: `loadAddon` finds one in the build
 * output; `loadMmapBinding` is the mmap addon, shared by the pmem tier and the parameter
 * tables (which load it without the cache's other modules, on the path to a recovered
 * table's first lookup).
 */
export { loadAddon, type AddonName } from './addons.js';
export { loadMmapBinding, type MmapBinding } from './mmap-binding.js';
