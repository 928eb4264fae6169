import { parseArgs, type ParseArgsConfig } from 'node:util';
import { StrataError } from '../errors/index.js';
import { COMMANDS, helpText } from './help.js';
import { describeSystemError } from './system-errors.js';
import { EXIT, UsageError } from './usage-error.js';

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
    // mount(8) through mount.fuse3 (or /sbin/mount.fuse.strata) runs `strata SOURCE MOUNTPOINT -o ...`.
    if (command.includes('://')) return await (await import('./mount-helper-command.js')).runMountHelper(argv, main);
    const spec = COMMANDS[command];
    if (!spec) throw new UsageError('USAGE', `unknown command "${command}"; run strata --help`);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(helpText(command));
      return EXIT.ok;
    }
    const { values, positionals } = parseCommandLine(command, spec.options, rest);
    // Each command's module is loaded when it runs: the API clients (warmup, links, jobs...)
    // then start without loading the daemon, its SDK and its addons (0.55 s -> 0.2 s here).
    switch (command) {
      case 'mount':
        return await (await import('./mount-command.js')).runMount(values, positionals, rest);
      case 'serve':
        return await (await import('./mount-command.js')).runServe(values, positionals, rest);
      case 'unmount':
        return await (await import('./unmount-command.js')).runUnmount(values, positionals);
      case 'csi':
        return await (await import('./csi-command.js')).runCsi(values, positionals);
      case 'config':
        return await (await import('./config-command.js')).runConfig(values, positionals);
      case 'status':
        return await (await import('./status-command.js')).runStatus(values);
      case 'links':
        return await (await import('./links-command.js')).runLinks(values, positionals);
      case 'jobs':
        return await (await import('./jobs-command.js')).runJobs(values, positionals);
      case 'params':
        return await (await import('./params-command.js')).runParams(positionals[0] ?? '', values, positionals.slice(1));
      case 'warmup':
        return await (await import('./warmup-command.js')).runWarmup(values, positionals);
      case 'distribute':
        return await (await import('./distribute-command.js')).runDistribute(values, positionals);
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
  const systemError = describeSystemError(err);
  if (systemError) {
    process.stderr.write(`strata: ${systemError}\n`);
    return EXIT.failed;
  }
  process.stderr.write(`strata: unexpected failure: ${(err as Error)?.stack ?? String(err)}\n`);
  return EXIT.failed;
}
