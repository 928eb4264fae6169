/** The root's node id in the FUSE protocol. */
export const ROOT_NODE = 1n;

interface Node {
  path: string;
  /** LOOKUPs (and CREATE/MKDIR answers) the kernel has not yet FORGOTten. */
  lookups: bigint;
}

/**
 * The kernel names files by node id, `Filesystem` by path: this table maps one to the
 * other. A node lives from the first answer that names it until the kernel forgets every
 * lookup of it; ids are never reused within a mount, so the generation is always 0.
 */
export class InodeTable {
  readonly #nodes = new Map<bigint, Node>([[ROOT_NODE, { path: '/', lookups: 1n }]]);
  readonly #byPath = new Map<string, bigint>([['/', ROOT_NODE]]);
  #next = ROOT_NODE + 1n;

  /** The path of `nodeId`, or undefined when the kernel names a node it forgot (a bug) */
  pathOf(nodeId: bigint): string | undefined {
    return this.#nodes.get(nodeId)?.path;
  }

  /** The node of `path` if the kernel knows it. */
  nodeOf(path: string): bigint | undefined {
    return this.#byPath.get(path);
  }

  /** Counts one more lookup of `path` and answers its node id (a new one if needed). */
  remember(path: string): bigint {
    const known = this.#byPath.get(path);
    if (known !== undefined) {
      this.#nodes.get(known)!.lookups++;
      return known;
    }
    const id = this.#next++;
    this.#nodes.set(id, { path, lookups: 1n });
    this.#byPath.set(path, id);
    return id;
  }

  /** The kernel dropped `count` lookups of `nodeId`; true when that was the last and the node is gone. */
  forget(nodeId: bigint, count: bigint): boolean {
    if (nodeId === ROOT_NODE) return false;
    const node = this.#nodes.get(nodeId);
    if (!node) return false;
    node.lookups -= count;
    if (node.lookups > 0n) return false;
    this.#nodes.delete(nodeId);
    if (this.#byPath.get(node.path) === nodeId) this.#byPath.delete(node.path);
    return true;
  }

  /** After a rename: the node at `from` (and everything under it) now lives at `to`. */
  move(from: string, to: string): void {
    const displaced = this.#byPath.get(to);
    if (displaced !== undefined) this.#byPath.delete(to);
    const prefix = `${from}/`;
    for (const [id, node] of this.#nodes) {
      if (id === displaced) continue;
      if (node.path === from || node.path.startsWith(prefix)) {
        if (this.#byPath.get(node.path) === id) this.#byPath.delete(node.path);
        node.path = to + node.path.slice(from.length);
        this.#byPath.set(node.path, id);
      }
    }
  }

  /** Every node the kernel knows, with its path. */
  *entries(): IterableIterator<[bigint, string]> {
    for (const [id, node] of this.#nodes) yield [id, node.path];
  }

  /** Nodes the kernel knows, for status and tests. */
  get size(): number {
    return this.#nodes.size;
  }
}

/** The path of `name` inside the folder `parent`. */
export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** The folder holding `path` and the last name in it; the root has no parent. */
export function splitPath(path: string): { parent: string; name: string } | undefined {
  if (path === '/') return undefined;
  const slash = path.lastIndexOf('/');
  return { parent: slash === 0 ? '/' : path.slice(0, slash), name: path.slice(slash + 1) };
}
