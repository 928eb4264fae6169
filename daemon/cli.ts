import { parseArgs, type ParseArgsConfig } from 'node:util';
import { StrataError } from '../errors/index.js';
import { runMount, runServe } from './mount-command.js';
import { runJobs } from './jobs-command.js';
import { runLinks } from './links-command.js';
import { runParams } from './params-command.js';
import { runStatus } from './status-command.js';
import { runWarmup } from './warmup-command.js';
import { runDistribute } from './distribute-command.js';
import { COMMANDS, helpText } from './help.js';

export class UsageError extends StrataError<'USAGE'> {}

/** Exit codes: 0 done, 1 the command failed, 2 the command line is wrong. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/**
 * Entry point of the `strata` executable: answers the process exit code. Expected
 * failures print one line on stderr (`strata: <message>`), never a stack trace.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(helpText(rest[0]));
      return EXIT.ok;
    }
    if (command === '--version' || command === '-v') {
      process.stdout.write('strata 0.1.0\n');
      return EXIT.ok;
    }
    const spec = COMMANDS[command];
    if (!spec) throw new UsageError('USAGE', `unknown command "${command}"; run strata --help`);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(helpText(command));
      return EXIT.ok;
    }
    const { values, positionals } = parseCommandLine(command, spec.options, rest);
    switch (command) {
      case 'mount':
        return await runMount(values, positionals);
      case 'serve':
        return await runServe(values, positionals);
      case 'status':
        return await runStatus(values);
      case 'links':
        return await runLinks(values, positionals);
      case 'jobs':
        return await runJobs(values, positionals);
      case 'params':
        return await runParams(positionals[0] ?? '', values, positionals.slice(1));
      case 'warmup':
        return await runWarmup(values, positionals);
      case 'distribute':
        return await runDistribute(values, positionals);
      default:
        throw new UsageError('USAGE', `"${command}" is not available yet`);
    }
  } catch (err) {
    return reportFailure(err);
  }
}

function parseCommandLine(command: string, options: ParseArgsConfig['options'], args: string[]) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    // node:util's messages name the option; drop its hint about `--` and positionals.
    const message = (err as Error).message.split('. ')[0] ?? 'bad arguments';
    throw new UsageError('USAGE', `${command}: ${message}; run strata ${command} --help`);
  }
}

function reportFailure(err: unknown): number {
  if (err instanceof StrataError) {
    process.stderr.write(`strata: ${err.message}\n`);
    return err.code === 'USAGE' || err.code === 'CONFIG_INVALID' || err.code === 'STORE_URL_INVALID' ? EXIT.usage : EXIT.failed;
  }
  process.stderr.write(`strata: unexpected failure: ${(err as Error)?.stack ?? String(err)}\n`);
  return EXIT.failed;
}
