import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, '..');

describe('the last-resort handler', () => {
  it('logs and counts an unhandled rejection and an uncaught exception, and the process goes on', async () => {
    // A child process: the test runner has handlers of its own for stray errors.
    const script = `
      import { installLastResort } from './telemetry/last-resort.ts';
      import { createLogger, metricsRegistry } from './telemetry/index.ts';
      installLastResort(createLogger({ level: 'info' }));
      Promise.reject(new Error('a stray rejection'));
      setTimeout(() => { throw new Error('a stray exception'); }, 10);
      setTimeout(async () => {
        const text = await metricsRegistry.metrics();
        process.stdout.write('\\nSTILL HERE ' + text.split('\\n').filter((l) => l.startsWith('strata_unhandled_errors_total{')).join(' ') + '\\n');
      }, 100);
    `;
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, timeout: 30_000 });
    const log = stdout + stderr;
    expect(log).toContain('a stray rejection');
    expect(log).toContain('a stray exception');
    expect(log).toMatch(/"level":60/); // fatal
    expect(stdout).toMatch(/STILL HERE .*kind="unhandled-rejection"\} 1/);
    expect(stdout).toMatch(/kind="uncaught-exception"\} 1/);
  });
});
