/** What an errno means to someone who gave a path or an address, and what to do about it. */
const MEANINGS: Record<string, (target: string) => string> = {
  ENOENT: (t) => `${t} does not exist`,
  EISDIR: (t) => `${t} is a folder where a file is needed`,
  ENOTDIR: (t) => `${t}: a part of the path is a file, not a folder`,
  EEXIST: (t) => `${t} already exists and is not what is needed there (a file where a folder goes?)`,
  EACCES: (t) => `${t}: permission denied`,
  EPERM: (t) => `${t}: operation not permitted`,
  EROFS: (t) => `${t} is on a read-only file system`,
  ENOSPC: (t) => `no space left on the device holding ${t}`,
  EADDRINUSE: (t) => `${t} is already in use (another strata daemon?); choose another --api HOST:PORT`,
  EADDRNOTAVAIL: (t) => `${t} is not an address of this machine; check --api`,
};

/**
 * One line for an operating-system error that escaped a command (a path or port the user
 * gave that the code did not check itself), or undefined for anything else, which is a bug
 * and keeps its stack trace.
 */
export function describeSystemError(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; dest?: string };
  if (typeof e?.code !== 'string' || typeof e.syscall !== 'string') return undefined;
  const meaning = MEANINGS[e.code];
  if (!meaning) return undefined;
  const target = e.address !== undefined ? `${e.address}${e.port !== undefined ? `:${e.port}` : ''}` : (e.dest ?? e.path);
  return target === undefined ? undefined : meaning(target);
}
