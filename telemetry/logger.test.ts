import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, pinoOf } from './logger.js';

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, '..');

async function lines(file: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('the process logger', () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-logger-'));
    file = join(dir, 'log', 'strata.log');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('holds records below error until pino loads, then writes them with their own time, bindings and level filter', async () => {
    const logger = createLogger({ level: 'info', format: 'json', file });
    const child = logger.child({ component: 'params' });
    const quiet = logger.child({ component: 'store' }, { level: 'error' });
    child.debug('below the level');
    quiet.warn('below the child level');
    const before = Date.now();
    child.warn({ table: 'emb' }, 'held');
    await new Promise((r) => setTimeout(r, 30));
    expect(await lines(file)).toEqual([]); // not written yet: pino is not loaded
    pinoOf(logger); // what the daemon's HTTP framework asks for
    const written = await lines(file);
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({ level: 40, component: 'params', table: 'emb', msg: 'held', pid: process.pid });
    expect(written[0]!.time).toBeGreaterThanOrEqual(before);
    expect(written[0]!.time).toBeLessThan(before + 25); // the time it was logged, not the time it was written
    child.info('after');
    expect((await lines(file)).map((l) => l.msg)).toEqual(['held', 'after']);
  });

  it('writes an error at once, after the records held before it', async () => {
    const logger = createLogger({ level: 'info', format: 'json', file });
    logger.info('first');
    logger.child({ component: 'cache' }).error({ err: new Error('disk gone') }, 'second');
    const written = await lines(file);
    expect(written.map((l) => l.msg)).toEqual(['first', 'second']);
    expect(written[1]).toMatchObject({ level: 50, component: 'cache', err: { message: 'disk gone' } });
  });

  it('writes held records at the latest a second after the first of them', async () => {
    const logger = createLogger({ level: 'info', format: 'json', file });
    logger.warn('waiting');
    await new Promise((r) => setTimeout(r, 1_300));
    expect((await lines(file)).map((l) => l.msg)).toEqual(['waiting']);
  });

  it('redacts credentials', async () => {
    const logger = createLogger({ level: 'info', format: 'json', file });
    logger.error({ credentials: { secretAccessKey: 'S3CRET' }, headers: { authorization: 'AWS4 abc' } }, 'oops');
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain('S3CRET');
    expect(text).not.toContain('AWS4 abc');
    expect(text).toContain('[redacted]');
  });

  it('writes what it holds when the process exits before pino loads', async () => {
    // A child process: the records must survive an exit with nothing else to run.
    const script = `
      import { createLogger } from './telemetry/logger.ts';
      createLogger({ level: 'info', format: 'json' }).child({ component: 'mount' }).warn({ mountPoint: '/mnt/x' }, 'held at exit');
      process.exit(3);
    `;
    const failed = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, timeout: 30_000 }).catch((err: { code: number; stderr: string }) => err);
    expect('code' in failed && failed.code).toBe(3);
    const line = JSON.parse((failed as { stderr: string }).stderr.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 40, component: 'mount', mountPoint: '/mnt/x', msg: 'held at exit' });
  });
});
