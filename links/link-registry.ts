import { readFile } from 'node:fs/promises';
import { makeFolders, writeFileDurably } from '../durable/index.js';
import { dirname, join } from 'node:path';
import { linkCreateSchema, type Link, type LinkInput, type LinkPatch } from './link-schema.js';
import { LinkError } from './link-error.js';

/** Bumped when the file's shape changes; older files are migrated on load. */
const FORMAT_VERSION = 1;

/**
 * The links of one daemon, persisted in `<stateDir>/links.json`. Every change is written
 * to a temporary file, fsync'd and renamed over the old one before it is answered, so a
 * crash leaves either the old or the new set, never a torn file.
 *
 * Invariant: no link's path is the same as, inside, or above another's.
 */
export class LinkRegistry {
  readonly #file: string;
  #links = new Map<string, Link>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(file: string) {
    this.#file = file;
  }

  static async open(stateDir: string): Promise<LinkRegistry> {
    const registry = new LinkRegistry(join(stateDir, 'links.json'));
    await registry.#load();
    return registry;
  }

  list(): Link[] {
    return [...this.#links.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get(name: string): Link {
    const link = this.#links.get(name);
    if (!link) throw new LinkError('LINK_NOT_FOUND', `no link named "${name}"`);
    return link;
  }

  /** Adds a link (validated by the caller with `linkCreateSchema`). */
  add(link: Link): Promise<Link> {
    return this.#mutate((links) => {
      if (links.has(link.name)) throw new LinkError('LINK_EXISTS', `a link named "${link.name}" already exists`);
      for (const other of links.values()) {
        if (overlaps(link.path, other.path)) {
          throw new LinkError('LINK_OVERLAP', `path ${link.path} overlaps link "${other.name}" at ${other.path}; links may not be inside one another`);
        }
      }
      return [new Map(links).set(link.name, link), link];
    });
  }

  update(name: string, patch: LinkPatch): Promise<Link> {
    return this.#mutate((links) => {
      const current = this.get(name);
      const updated: Link = {
      ...current,
      ...(patch.endpoint !== undefined ? { endpoint: patch.endpoint } : {}),
      ...(patch.region !== undefined ? { region: patch.region } : {}),
      ...(patch.import ? { import: patch.import } : {}),
      ...(patch.export ? { export: patch.export } : {}),
      ...(patch.readOnly !== undefined ? { readOnly: patch.readOnly } : {}),
      };
      return [new Map(links).set(name, updated), updated];
    });
  }

  remove(name: string): Promise<Link> {
    return this.#mutate((links) => {
      const link = this.get(name);
      const next = new Map(links);
      next.delete(name);
      return [next, link];
    });
  }

  async #load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const doc = JSON.parse(text) as { version?: number; links?: LinkInput[] };
    if (doc.version !== FORMAT_VERSION || !Array.isArray(doc.links)) {
      throw new LinkError('API_BAD_REQUEST', `${this.#file} is not a Strata links file of version ${FORMAT_VERSION}`);
    }
    for (const raw of doc.links) {
      const link = linkCreateSchema.parse(raw);
      this.#links.set(link.name, link);
    }
  }

  /**
   * Runs one change at a time: `change` sees the current links, answers the next set
   * (or throws), and the next set becomes current only once it is on disk.
   */
  #mutate<T>(change: (links: ReadonlyMap<string, Link>) => [Map<string, Link>, T]): Promise<T> {
    const done = this.#writing.then(async () => {
      const [next, answer] = change(this.#links);
      await this.#save(next);
      this.#links = next;
      return answer;
    });
    this.#writing = done.then(() => undefined, () => undefined);
    return done;
  }

  async #save(next: Map<string, Link>): Promise<void> {
    await makeFolders(dirname(this.#file));
    await writeFileDurably(this.#file, `${JSON.stringify({ version: FORMAT_VERSION, links: [...next.values()] }, null, 2)}\n`);
  }

}

/** True when one path equals, contains or sits inside the other. */
export function overlaps(a: string, b: string): boolean {
  if (a === b || a === '/' || b === '/') return true;
  return a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}
