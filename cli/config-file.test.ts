import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readConfigFile, withConfigFile } from './config-file.js';
import { mountHelperArgs } from './mount-helper.js';
import { PrettyLogStream } from '../telemetry/index.js';

describe('config files (TOML, the flag names)', () => {
  let dir: string;
  const file = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads flags, booleans and numbers as the command line gives them', async () => {
    const path = await file('ok.toml', 'store = "s3://models/prod"\nmountpoint = "/mnt/models"\ndram = "2GiB"\nstate-dir = "/var/lib/strata"\nallow-other = true\nlookup-threads = 4\n');
    expect(await readConfigFile(path)).toEqual({ store: 's3://models/prod', mountpoint: '/mnt/models', dram: '2GiB', 'state-dir': '/var/lib/strata', 'allow-other': true, 'lookup-threads': '4' });
  });

  it('lets a command-line flag win over the file', async () => {
    const path = await file('win.toml', 'dram = "2GiB"\nclose = "sync"\n');
    expect(await withConfigFile({ config: path, dram: '64MiB', region: undefined })).toEqual({ config: path, dram: '64MiB', close: 'sync' });
  });

  it.each([
    ['unknown.toml', 'drams = "1GiB"\n', /unknown option "drams"; strata mount --help lists them$/],
    ['snake.toml', 'state_dir = "/x"\n', /unknown option "state_dir" \(options are written as on the command line, e\.g\. state-dir\)/],
    ['type.toml', 'allow-other = "yes"\n', /"allow-other" must be true or false$/],
    ['table.toml', '[dram]\nsize = 1\n', /"dram" must be a string \(not a table or list\)$/],
    ['config.toml', 'config = "/other.toml"\n', /unknown option "config"/],
    ['syntax.toml', 'dram = \n', /syntax\.toml:1: not valid TOML/],
  ])('refuses %s with one line naming the problem', async (name, text, message) => {
    const path = await file(name, text);
    const err = await readConfigFile(path).catch((e: Error & { code: string }) => e);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID' });
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });

  it('names a missing file or a folder', async () => {
    await expect(readConfigFile(join(dir, 'none.toml'))).rejects.toThrow(/--config: .*none\.toml does not exist$/);
    await expect(readConfigFile(dir)).rejects.toThrow(/is a folder, not a file$/);
  });
});

describe('mount helper arguments (mount(8), fstab, mount.fuse3)', () => {
  it('turns -o options into flags and mounts in the background', () => {
    expect(mountHelperArgs(['s3://b/p', '/mnt/x', '-o', 'rw,_netdev,nofail,dev,suid,allow_other,endpoint=http://10.0.0.1:7480,dram=2GiB,state_dir=/var/lib/s,x-systemd.automount'])).toEqual({
      args: ['s3://b/p', '/mnt/x', '--background', '--allow-other', '--endpoint', 'http://10.0.0.1:7480', '--dram', '2GiB', '--state-dir', '/var/lib/s'],
      fake: false,
    });
  });
  it('reads ro, -r, -f, -n, -v, -t and several -o', () => {
    expect(mountHelperArgs(['file:///l', '/m', '-n', '-v', '-t', 'fuse.strata', '-o', 'ro', '-oclose=sync', '-f'])).toEqual({ args: ['file:///l', '/m', '--background', '--read-only', '--close', 'sync'], fake: true });
    expect(mountHelperArgs(['file:///l', '/m', '-r']).args).toContain('--read-only');
  });
  it.each([
    [['file:///l', '/m', '-o', 'turbo=1'], /unknown option "turbo=1"/],
    [['file:///l', '/m', '-o', 'dram'], /option "dram" needs a value/],
    [['file:///l', '/m', '-o', 'allow_other=1'], /option "allow-other" takes no value/],
    [['file:///l', '/m', '-o', 'background'], /unknown option "background"/],
    [['file:///l', '-o', 'ro'], /give a store URL and a mount point/],
    [['file:///l', '/m', '-x'], /unknown mount helper flag -x/],
  ])('refuses %j with one line', (argv, message) => {
    expect(() => mountHelperArgs(argv)).toThrow(message);
  });
  it('ignores unknown options when sloppy (-s)', () => {
    expect(mountHelperArgs(['file:///l', '/m', '-s', '-o', 'turbo=1,ro']).args).toEqual(['file:///l', '/m', '--background', '--read-only']);
  });
});

describe('pretty log lines', () => {
  const lines: string[] = [];
  const pretty = (color: boolean) => new PrettyLogStream({ write: (t: string) => lines.push(t) }, color);
  it('puts time, level, component and message first, then the fields', () => {
    const line = pretty(false).format({ level: 40, time: Date.UTC(2026, 0, 2, 3, 4, 5, 678), pid: 1, component: 'cache', msg: 'tier read failed', tier: 'nvme', path: '/a b', n: 3, err: { message: 'EIO: boom', stack: 'Error: EIO\n    at x' } });
    expect(line).toBe('03:04:05.678 WARN  [cache] tier read failed tier=nvme path="/a b" n=3 err="EIO: boom"');
  });
  it('colours on request and shows the stack of an error-level line', () => {
    const line = pretty(true).format({ level: 50, time: 0, msg: 'failed', err: { message: 'x', stack: 'Error: x\n    at f (a.js:1)' } });
    expect(line).toContain('\x1b[31mERROR\x1b[0m');
    expect(line.split('\n')[1]).toBe('    at f (a.js:1)');
  });
  it('passes a line that is not JSON through', () => {
    pretty(false).write('plain\n');
    expect(lines.pop()).toBe('plain\n');
  });
});
