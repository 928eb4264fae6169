import type { WritePath } from '../checkpoints/index.js';
import { isStrataError } from '../errors/index.js';
import { keyOfPath, type MountRoutes, type Route } from '../namespace/index.js';
import type { ObjectMeta } from '../store/index.js';
import { FsError } from './fs-error.js';

/**
 * Path routing for the Filesystem: which link (and key in its store) a mount path names,
 * whether it takes writes, and what is there, counting files still staged on the write path
 * (written, not yet in the store) with the namespace's view of the store.
 */

export type LinkRoute = Extract<Route, { kind: 'link' }>;

/** A path inside a link that takes writes, with the link's store. */
export interface WritableRoute {
  readonly route: LinkRoute;
  readonly link: LinkRoute['link'];
  readonly store: NonNullable<LinkRoute['link']['store']>;
  readonly storeId: string;
}

/** What is staged for a path: its size and time as written, its attributes. */
export interface StagedFile {
  readonly size: number;
  readonly mtime: Date;
  readonly meta?: ObjectMeta | undefined;
}

export class FsPaths {
  #routes: MountRoutes;
  /** The write path; without it the mount is read-only (EROFS). */
  readonly writes: WritePath | undefined;

  constructor(routes: MountRoutes, writes: WritePath | undefined) {
    this.#routes = routes;
    this.writes = writes;
  }

  /** Swaps the link table at once; open handles keep the routes they opened with. */
  setRoutes(routes: MountRoutes): void {
    this.#routes = routes;
  }

  get routes(): MountRoutes {
    return this.#routes;
  }

  /** The route of `path`, or FS_NOT_FOUND. */
  route(path: string): Route {
    const route = this.#routes.route(path);
    if (!route) throw new FsError('FS_NOT_FOUND', `no such file or folder: ${path}`);
    return route;
  }

  /** The link of `path` if it takes writes; else FS_READ_ONLY. */
  writable(path: string): WritableRoute {
    const route = this.route(path);
    if (route.kind === 'virtual') throw new FsError('FS_READ_ONLY', `${path} is above the links; create files inside a link`);
    const { link } = route;
    if (!this.writes || !link.store || !link.storeId || link.readOnly) throw new FsError('FS_READ_ONLY', `${path}: the mount is read-only`);
    if (route.innerPath === '/') throw new FsError('FS_READ_ONLY', `${path} is the root of a link`);
    return { route, link, store: link.store, storeId: link.storeId };
  }

  /** A file of this path still staged (written, not yet in the store). */
  staged(route: LinkRoute): StagedFile | undefined {
    if (!this.writes || !route.link.storeId || route.innerPath === '/') return undefined;
    return this.writes.pending(route.link.storeId, keyOfPath(route.innerPath));
  }

  /** Files still staged under the folder `route`. */
  stagedUnder(route: LinkRoute): Array<{ key: string }> {
    if (!this.writes || !route.link.storeId) return [];
    return this.writes.pendingUnder(route.link.storeId, keyOfPath(route.innerPath, true));
  }

  /** A file, a folder, or nothing at `route` (files and folders still being uploaded count). */
  async kindOf(route: LinkRoute): Promise<'file' | 'dir' | undefined> {
    if (this.staged(route)) return 'file';
    try {
      return (await route.link.namespace.lookup(route.innerPath)).kind;
    } catch (err) {
      if (!isStrataError(err, 'FS_NOT_FOUND')) throw err;
      return this.stagedUnder(route).length > 0 ? 'dir' : undefined;
    }
  }

  /** Asks the store itself (never a cached listing) whether anything is under the folder. */
  async isEmptyFolder(route: LinkRoute): Promise<boolean> {
    if (this.stagedUnder(route).length > 0) return false;
    const prefix = keyOfPath(route.innerPath, true);
    const page = await route.link.store!.list(prefix, { maxKeys: 2 });
    return page.objects.every((o) => o.key === prefix);
  }
}

