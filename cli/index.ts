/**
 * The `strata` command line: parses a command, runs it, answers mistakes with one line.
 * bin/ starts `cli.ts` itself, so that `strata --help` loads nothing more than it needs;
 * this door is for code that drives a command in-process (tests).
 */
export { main } from './cli.js';
export { runParams } from './params-command.js';
