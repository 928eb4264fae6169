/**
 * Where a CPU profile's time went: `npx tsx bench/lib/profile-summary.ts FILE.cpuprofile [TOP]`
 * prints self time by function and by source file (node --cpu-prof output, main thread only:
 * the kernel's and libuv's threads do not show here; compare with the process's CPU time).
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

/** Milliseconds of self time per function and per file, largest first. */
export function summarise(profile: Profile): { totalMs: number; byFunction: Array<[string, number]>; byFile: Array<[string, number]> } {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const frame = nodes.get(id)!.callFrame;
    const file = shortUrl(frame.url) || `(${frame.functionName || 'native'})`;
    if (frame.functionName === '(idle)') return;
    total += ms;
    const fn = `${frame.functionName || '(anonymous)'} ${file}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + ms);
    byFile.set(file, (byFile.get(file) ?? 0) + ms);
  });
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { totalMs: total, byFunction: sorted(byFunction), byFile: sorted(byFile) };
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/(?=[a-z-]+\/[^/]+\.ts$)/, '');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, top = '25'] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: profile-summary FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const { totalMs, byFunction, byFile } = summarise(JSON.parse(await readFile(file, 'utf8')) as Profile);
  const line = ([name, ms]: [string, number]) => `${ms.toFixed(0).padStart(8)} ms ${((100 * ms) / totalMs).toFixed(1).padStart(5)}%  ${name}\n`;
  process.stdout.write(`busy (not idle) on the main thread: ${totalMs.toFixed(0)} ms\n\nby file:\n`);
  for (const entry of byFile.slice(0, Number(top))) process.stdout.write(line(entry));
  process.stdout.write('\nby function:\n');
  for (const entry of byFunction.slice(0, Number(top))) process.stdout.write(line(entry));
}
