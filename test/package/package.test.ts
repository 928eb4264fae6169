import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sh, shResult } from '../fixtures/shell.js';

const REPO = resolve(import.meta.dirname, '../..');

/**
 * The package as users get it: `npm pack` (its `prepare` step builds dist/), the tarball
 * installed into an empty folder (the install step builds the native addons there), and
 * the installed `strata` run through npx. Dependencies come from npm's cache when it has them.
 */
describe('the packed strata package', () => {
  let work: string;
  let tarball: string;
  let app: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-package-'));
    const packed = await sh(`npm pack --silent --pack-destination ${work}`, { cwd: REPO, timeoutMs: 180_000 });
    tarball = join(work, packed.trim().split('\n').pop()!);
    app = join(work, 'app');
    await sh(`mkdir -p ${app} && cd ${app} && npm init -y >/dev/null && npm install --prefer-offline --no-audit --no-fund ${tarball} 2>&1`, { timeoutMs: 300_000 });
  }, 600_000);

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('holds the compiled code, the bin and the addon sources, and nothing of the development tree', async () => {
    const files = (await sh(`tar tzf ${tarball}`)).trim().split('\n').map((f) => f.replace(/^package\//, ''));
    expect(files).toContain('bin/strata.js');
    expect(files).toContain('dist/cli/cli.js');
    expect(files).toContain('dist/params/lookup-worker.js');
    expect(files).toContain('native/binding.gyp');
    expect(files).toContain('native/src/strata_lookup.c');
    expect(files).toContain('README.md');
    for (const f of files) expect(f).not.toMatch(/(^|\/)(test|bench|\.ci|scripts)\/|\.test\.js$|\.ts$|^bin\/strata-dev\.js$|^native\/build\//);
    const manifest = JSON.parse(await sh(`tar xzOf ${tarball} package/package.json`)) as { private?: boolean; dependencies: Record<string, string> };
    expect(manifest.private).toBeUndefined();
    expect(manifest.dependencies).not.toHaveProperty('tsx');
  });

  it('installs into an empty folder with its addons built, and npx strata --help answers', async () => {
    expect(await readdir(join(app, 'node_modules/strata/native/build/Release'))).toEqual(expect.arrayContaining(['strata_lookup.node', 'strata_mmap.node']));
    const help = await shResult('npx --no-install strata --help', { cwd: app });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: strata <command> [options]');
    expect(help.stderr).toBe('');
    const wrong = await shResult('npx --no-install strata no-such-command', { cwd: app });
    expect(wrong).toMatchObject({ code: 2, stderr: 'strata: unknown command "no-such-command"; run strata --help\n' });
  });
});
