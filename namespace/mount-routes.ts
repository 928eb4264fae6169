import type { Namespace } from './namespace.js';
import type { ObjectStore } from '../store/index.js';
import { normalisePath } from './names.js';

/** A linked bucket prefix as the file system sees it. */
export interface RoutedLink {
  /** Absolute path inside the mount where the link appears (`/` for `strata mount`). */
  readonly path: string;
  readonly name: string;
  readonly namespace: Namespace;
  /** The link's store and its id in block keys: needed to write; absent = read-only. */
  readonly store?: ObjectStore;
  readonly storeId?: string;
  readonly readOnly?: boolean;
  /** When `close()` of a written file returns: once staged durably (async) or once in the store (sync). */
  readonly closeMode?: 'async' | 'sync';
}

/** Where a mount path leads. */
export type Route =
  | { readonly kind: 'link'; readonly link: RoutedLink; readonly innerPath: string }
  /** A folder above one or more links (`/datasets` when a link sits at `/datasets/imagenet`). */
  | { readonly kind: 'virtual'; readonly children: readonly string[] };

/**
 * The table of links in one mount. Link paths never overlap (one is never inside
 * another), so a path belongs to at most one link. Replaced as a whole when links
 * change, so a lookup never sees half an update.
 */
export class MountRoutes {
  readonly #links: readonly RoutedLink[];

  constructor(links: readonly RoutedLink[]) {
    this.#links = [...links].sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /** One link at the root: what `strata mount` serves. */
  static single(namespace: Namespace): MountRoutes {
    return new MountRoutes([{ path: '/', name: 'root', namespace }]);
  }

  get links(): readonly RoutedLink[] {
    return this.#links;
  }

  /**
   * The route for `path`, or undefined when the path is outside every link. Throws
   * `FS_NAME_TOO_LONG` for a path inside a link whose names or key are too long for it.
   */
  route(path: string): Route | undefined {
    const normal = normalisePath(path);
    for (const link of this.#links) {
      if (link.path === '/') return linkRoute(link, normal);
      if (normal === link.path || normal.startsWith(`${link.path}/`)) return linkRoute(link, normal.slice(link.path.length) || '/');
    }
    const above = normal === '/' ? '/' : `${normal}/`;
    const children = new Set<string>();
    for (const link of this.#links) {
      if (link.path.startsWith(above)) children.add(link.path.slice(above.length).split('/')[0]!);
    }
    if (children.size === 0 && normal !== '/') return undefined;
    return { kind: 'virtual', children: [...children].sort() };
  }
}

function linkRoute(link: RoutedLink, innerPath: string): Route {
  link.namespace.checkName(innerPath);
  return { kind: 'link', link, innerPath };
}
