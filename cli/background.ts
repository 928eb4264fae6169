import { spawn } from 'node:child_process';
import { closeSync, readFileSync, statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { StrataError } from '../errors/index.js';
import { openLogFile } from '../telemetry/index.js';

/** Set in the environment of the daemon a `--background` parent starts; the daemon then reports readiness to it. */
const CHILD_ENV = 'STRATA_BACKGROUND_CHILD';

/**
 * How long a `--background` parent waits for the daemon to mount: a store check against an
 * endpoint that does not answer gives up within its own connect timeouts and retries (under a
 * minute), so two minutes means the daemon is stuck, not slow.
 */
const READY_TIMEOUT_MS = 120_000;

/** What the daemon tells its `--background` parent once it serves. */
export interface ReadyMessage {
  readonly ready: true;
  /** The line a foreground daemon prints ("mounted ... at ..."). */
  readonly line: string;
}

export class BackgroundError extends StrataError<'MOUNT_FAILED'> {}

/** True in a daemon started by a `--background` parent. */
export function isBackgroundChild(): boolean {
  return process.env[CHILD_ENV] === '1' && typeof process.send === 'function';
}

/**
 * The parent side of `--background`: starts the same command (without `--background`) as a
 * detached daemon, its output appended to `logFile`, and waits until it reports that it
 * serves. Answers 0 then, with the daemon's line on stdout; if the daemon exits first,
 * prints the one-line error it wrote (the last `strata: ` line of its output) and answers
 * its exit code.
 */
export async function runInBackground(command: string, args: readonly string[], logFile: string, entry: string = process.argv[1]!): Promise<number> {
  let out: number;
  try {
    out = openLogFile(logFile);
  } catch (err) {
    throw new BackgroundError('MOUNT_FAILED', `cannot open the log file ${logFile} (${(err as NodeJS.ErrnoException).code}); give --log-file PATH`);
  }
  const logStart = statSync(logFile).size;
  const child = spawn(process.execPath, [...process.execArgv, entry, command, ...args.filter((a) => a !== '--background')], {
    detached: true,
    stdio: ['ignore', out, out, 'ipc'],
    env: { ...process.env, [CHILD_ENV]: '1' },
  });
  closeSync(out);
  const outcome = await new Promise<{ ready: ReadyMessage } | { exit: number | string } | { timeout: true }>((resolve) => {
    const timer = setTimeout(() => resolve({ timeout: true }), READY_TIMEOUT_MS);
    child.once('message', (message: ReadyMessage) => {
      clearTimeout(timer);
      resolve({ ready: message });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ exit: code ?? signal ?? 'unknown' });
    });
  });
  if ('ready' in outcome) {
    child.disconnect();
    child.unref();
    process.stdout.write(`${outcome.ready.line} (pid ${child.pid}, log ${logFile})\n`);
    return 0;
  }
  if ('timeout' in outcome) {
    child.kill('SIGTERM');
    throw new BackgroundError('MOUNT_FAILED', `the daemon did not mount within ${READY_TIMEOUT_MS / 1000} s; stopped it (see ${logFile})`);
  }
  const written = readFileSync(logFile, 'utf8').slice(logStart);
  const reason = written.split('\n').filter((line) => line.startsWith('strata: ')).pop();
  process.stderr.write(reason ? `${reason}\n` : `strata: the daemon exited (${outcome.exit}) before mounting; see ${logFile}\n`);
  return typeof outcome.exit === 'number' && outcome.exit !== 0 ? outcome.exit : 1;
}

/**
 * Called by a daemon once it serves: writes `pidFile` (if asked) and, under a
 * `--background` parent, sends it the ready line and lets it go.
 */
export async function announceReady(line: string, pidFile: string | undefined): Promise<void> {
  if (pidFile) await writeFile(pidFile, `${process.pid}\n`);
  if (isBackgroundChild()) {
    const message: ReadyMessage = { ready: true, line };
    await new Promise<void>((resolve) => process.send!(message, undefined, {}, () => resolve()));
    process.disconnect();
  } else {
    process.stdout.write(`${line}; Ctrl-C unmounts\n`);
  }
}

export async function removePidFile(pidFile: string | undefined): Promise<void> {
  if (pidFile) await rm(pidFile, { force: true });
}
