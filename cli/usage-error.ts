import { StrataError } from '../errors/index.js';

/** The command line is wrong: the message names the problem and the fix (exit code 2). */
export class UsageError extends StrataError<'USAGE'> {}

/** Exit codes: 0 done, 1 the command failed, 2 the command line is wrong. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;
