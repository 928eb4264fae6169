import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, normalize, relative, sep } from 'node:path';

/** Folders that are not parts of the product: consumers that may reach anywhere. */
const OUTSIDE = new Set(['node_modules', 'dist', 'test', 'bench', 'bin', 'native/build', 'packaging', 'docs', 'docker', '.git']);

/** One relative import found in a source file. */
export interface ImportEdge {
  readonly from: string;
  readonly specifier: string;
  /** Repository-relative path of the imported file (`.ts` for a `.js` specifier). */
  readonly target: string;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** The repository-relative path a relative specifier of `file` names (`.ts` for a `.js` specifier). */
function importedFile(file: string, specifier: string): string {
  return normalize(join(dirname(file), specifier)).split(sep).join('/').replace(/\.js$/, '.ts');
}

async function sources(root: string, dir = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(root, dir), { withFileTypes: true })) {
    const path = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (OUTSIDE.has(path)) continue;
    if (entry.isDirectory()) out.push(...(await sources(root, path)));
    else if (entry.name.endsWith('.ts') && dir !== '') out.push(path);
  }
  return out;
}

/** Every relative import of the product's folders (tests beside the code included). */
export async function importEdges(root: string): Promise<ImportEdge[]> {
  const edges: ImportEdge[] = [];
  for (const file of await sources(root)) {
    const text = await readFile(join(root, file), 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const specifier = (m[1] ?? m[2])!;
      const target = importedFile(file, specifier);
      edges.push({ from: file, specifier, target });
    }
  }
  return edges;
}

/** The folders that are parts: every folder with an index.ts, innermost first for lookups. */
export async function partFolders(root: string, edges: readonly ImportEdge[]): Promise<string[]> {
  const dirs = new Set<string>();
  for (const e of edges) for (let d = dirname(e.from); d !== '.'; d = dirname(d)) dirs.add(d);
  for (const e of edges) for (let d = dirname(e.target); d !== '.'; d = dirname(d)) dirs.add(d);
  const parts: string[] = [];
  for (const d of dirs) {
    const isPart = await stat(join(root, d, 'index.ts')).then(() => true, () => false);
    if (isPart) parts.push(d);
  }
  return parts.sort((a, b) => b.length - a.length);
}

/** The innermost part a file belongs to (`undefined` outside every part). */
export function partOf(file: string, parts: readonly string[]): string | undefined {
  return parts.find((p) => file.startsWith(`${p}/`));
}

/**
 * Imports that reach past another part's door: the imported file is inside a part the
 * importer is not inside, and it is not that part's index.ts.
 */
export function deepImports(edges: readonly ImportEdge[], parts: readonly string[]): string[] {
  const bad: string[] = [];
  for (const e of edges) {
    const targetPart = partOf(e.target, parts);
    if (targetPart === undefined) continue;
    if (e.from.startsWith(`${targetPart}/`)) continue; // inside the same part (or a sub-part of it)
    // A part's test support (`testing/`) serves the tests of other parts too.
    if (e.from.endsWith('.test.ts') && e.target.includes('/testing/')) continue;
    // A door is the index.ts of a part that holds the target and not the importer (a nested
    // part such as params/cluster is a door of its own); anything else reaches past one.
    const doors = parts.filter((p) => e.target.startsWith(`${p}/`) && !e.from.startsWith(`${p}/`));
    if (doors.some((p) => e.target === `${p}/index.ts`)) continue;
    const door = doors.pop()!;
    bad.push(`${e.from} imports ${e.specifier} (use ${relative(dirname(e.from), door)}/index.js)`);
  }
  return bad;
}

/** Static value imports (`import x from`, `export ... from`, `import 'x'`); not `import type`, not `import()`. */
const STATIC_IMPORT = /(?:^|\n)\s*(?:import|export)(?!\s+type\b)\b[^'";]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g;

/**
 * What loading `entry` loads before any of its code runs: the repository's files it reaches
 * through static value imports, and the packages (by name) those import. `import type` is
 * erased by the compiler and `import()` loads later, when it runs, so neither is followed.
 */
export async function staticClosure(root: string, entry: string): Promise<{ files: string[]; packages: string[] }> {
  const files = new Set<string>([entry]);
  const packages = new Set<string>();
  const queue = [entry];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    const text = await readFile(join(root, file), 'utf8');
    for (const m of text.matchAll(STATIC_IMPORT)) {
      const specifier = (m[1] ?? m[2])!;
      if (specifier.startsWith('node:')) continue;
      if (!specifier.startsWith('.')) {
        packages.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!);
        continue;
      }
      const target = importedFile(file, specifier);
      if (!files.has(target)) {
        files.add(target);
        queue.push(target);
      }
    }
  }
  return { files: [...files].sort(), packages: [...packages].sort() };
}

export { relative };
