import type { DaemonServices } from './services.js';

/** Paths may be given as the user sees them (`/mnt/strata/datasets`) or inside the mount (`/datasets`). */
export function insideMount(path: string, mountPoint: string): string {
  if (path === mountPoint) return '/';
  return path.startsWith(`${mountPoint}/`) ? path.slice(mountPoint.length) : path;
}

/**
 * `insideMount`, and refuses a path no file can have (a name over 255 bytes, a key over the
 * store's limit) with `FS_NAME_TOO_LONG` (400) before anything is stored or started.
 */
export function checkedMountPath(services: DaemonServices, path: string): string {
  const inside = insideMount(path, services.config.mountPoint);
  services.links.routes().route(inside);
  return inside;
}
