import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupDir, runStrata, tempDir } from '../fixtures/strata-process.js';

/**
 * Every way a command can fail on bad input: one line on stderr naming the problem (and
 * the fix), the documented exit code (2: the command line or an option is wrong; 1: the
 * command failed; docs/ERRORS.md), nothing on stdout, no stack trace.
 */
describe('user mistakes: one line each', () => {
  let root: string;
  let busy: Server;
  let busyPort: number;
  let closedPort: number;
  const p = (name: string) => join(root, name);

  beforeAll(async () => {
    root = await tempDir('mistakes');
    await mkdir(p('lake'));
    await mkdir(p('mnt'));
    await mkdir(p('folder'));
    await mkdir(p('full'));
    await writeFile(p('full/x'), 'x');
    await writeFile(p('a-file'), 'not a folder\n');
    await writeFile(p('records.in'), Buffer.alloc(24 * 10));
    await writeFile(p('bad.toml'), 'dram = \n');
    busy = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    busyPort = (busy.address() as { port: number }).port;
    const probe = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => probe.once('listening', r));
    closedPort = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
  });

  afterAll(async () => {
    busy.close();
    await cleanupDir(root);
  });

  const lake = () => `file://${p('lake')}`;
  /** A daemon that fails after it has started logging: its info lines are not the answer. */
  const daemon = () => ['--api', '127.0.0.1:0', '--state-dir', p('state'), '--log-level', 'error'];
  const cases: Array<[string, () => string[], number, RegExp]> = [
    ['an unknown command', () => ['mountt'], 2, /^unknown command "mountt"; run strata --help$/],
    ['an unknown option', () => ['mount', lake(), p('mnt'), '--drm', '1GiB'], 2, /^mount: Unknown option '--drm'; run strata mount --help$/],
    ['mount without arguments', () => ['mount'], 2, /^mount needs a store URL and a mount point/],
    ['an unknown store scheme', () => ['mount', 'ftp://x/y', p('mnt')], 2, /^store: unknown store scheme "ftp:\/\/" in "ftp:\/\/x\/y"; use s3:\/\/bucket\[\/prefix\] or file:\/\/\/absolute\/dir$/],
    ['a bad bucket name', () => ['mount', 's3://Bad_Bucket', p('mnt')], 2, /is not a valid bucket name/],
    ['a size that is not one', () => ['mount', lake(), p('mnt'), '--dram', 'lots'], 2, /^--dram: "lots" is not a size \(use e\.g\. 512MiB, 4GiB\)$/],
    ['a non-loopback API without a token', () => ['mount', lake(), p('mnt'), '--api', '0.0.0.0:7070'], 2, /^--api: binding to 0\.0\.0\.0 needs STRATA_TOKEN set/],
    ['a missing mount point', () => ['mount', lake(), p('none'), ...daemon()], 1, /^mount point \S+\/none does not exist; create it with mkdir -p /],
    ['a file as mount point', () => ['mount', lake(), p('a-file'), ...daemon()], 1, /^mount point \S+\/a-file is not a folder$/],
    ['a mount point that is not empty', () => ['mount', lake(), p('full'), ...daemon()], 1, /^mount point \S+\/full is not empty \(1 entries\); use an empty folder$/],
    ['a lake folder that does not exist', () => ['mount', `file://${p('no-lake')}`, p('mnt'), ...daemon()], 1, /no-lake/],
    ['an API port already in use', () => ['mount', lake(), p('mnt'), '--api', `127.0.0.1:${busyPort}`, '--state-dir', p('state'), '--log-level', 'error'], 1, /^127\.0\.0\.1:\d+ is already in use \(another strata daemon\?\); choose another --api HOST:PORT$/],
    // The tables start answering before the schema loads; a mistake it finds still wins over what that start ran into.
    ['a mistake while the API port is in use', () => ['mount', lake(), p('mnt'), '--dram', 'lots', '--api', `127.0.0.1:${busyPort}`, '--state-dir', p('state')], 2, /^--dram: "lots" is not a size/],
    ['a pmem pool path that is somebody\'s file', () => ['mount', lake(), p('mnt'), '--pmem', `${p('a-file')}:64MiB`, ...daemon()], 1, /is an existing file that is not a Strata pool; it is left untouched/],
    ['a state dir that is a file', () => ['mount', lake(), p('mnt'), '--api', '127.0.0.1:0', '--state-dir', p('a-file')], 1, /a-file already exists and is not what is needed there/],
    ['a state dir whose folder cannot be made', () => ['mount', lake(), p('mnt'), '--api', '127.0.0.1:0', '--state-dir', '/proc/strata-none/state'], 1, /^\/proc\/strata-none does not exist$/],
    ['an NVMe tier whose folder cannot be made', () => ['mount', lake(), p('mnt'), ...daemon(), '--nvme', '/proc/strata-none/nvme:1GiB'], 1, /^\/proc\/strata-none does not exist$/],
    ['a log file under a file', () => ['mount', lake(), p('mnt'), ...daemon(), '--log-file', `${p('a-file')}/strata.log`], 1, /a-file already exists and is not what is needed there/],
    ['a log file whose folder cannot be made', () => ['mount', lake(), p('mnt'), ...daemon(), '--log-file', '/proc/strata-none/strata.log'], 1, /^\/proc\/strata-none does not exist$/],
    ['a log file whose folder cannot be made, in the background', () => ['mount', lake(), p('mnt'), ...daemon(), '--log-file', '/proc/strata-none/strata.log', '--background'], 1, /^cannot open the log file \/proc\/strata-none\/strata\.log \(ENOENT\); give --log-file PATH$/],
    ['a missing config file', () => ['mount', '--config', p('none.toml')], 2, /^--config: \S+none\.toml does not exist$/],
    ['a config file that is not TOML', () => ['config', 'check', p('bad.toml')], 2, /bad\.toml:1: not valid TOML/],
    ['config without check', () => ['config', 'lint', p('bad.toml')], 2, /^config takes one action: strata config check FILE$/],
    ['a wrong -o option in the mount helper form', () => [lake(), p('mnt'), '-o', 'turbo=1'], 2, /^mount: unknown option "turbo=1"/],
    ['warmup without paths', () => ['warmup'], 2, /^warmup needs at least one PATH \(or --manifest FILE\)$/],
    ['a missing manifest', () => ['warmup', '--manifest', p('missing.txt')], 2, /^--manifest: \S+missing\.txt does not exist$/],
    ['a manifest that is a folder', () => ['warmup', '--manifest', p('folder')], 2, /^--manifest: \S+folder is a folder; give a file with one path per line$/],
    ['no daemon at --api', () => ['status', '--api', `127.0.0.1:${closedPort}`], 1, /^no Strata daemon answers at http:\/\/127\.0\.0\.1:\d+ \(connect ECONNREFUSED [^)]+\); is it running\? pass --api HOST:PORT$/],
    ['params build into a folder', () => ['params', 'build', '--dim', '4', p('records.in'), p('folder')], 1, /^DEST \S+folder is a folder; give the table's file name, such as \S+folder\/table\.params$/],
    ['params build from a folder', () => ['params', 'build', '--dim', '4', p('folder'), p('out.params')], 1, /^input \S+folder is a folder; give the records file$/],
    ['params build from a missing input', () => ['params', 'build', '--dim', '4', p('none.in'), p('out.params')], 1, /^cannot read input \S+none\.in: it does not exist$/],
    ['params build with a wrong --dim', () => ['params', 'build', '--dim', '5', p('records.in'), p('out.params')], 1, /^input \S+records\.in is 240 bytes, not a multiple of the 28-byte record \(8-byte key \+ 5 x float32\); is --dim right\?$/],
    ['params build with a --dim that is no number', () => ['params', 'build', '--dim', 'x', p('records.in'), p('out.params')], 2, /--dim/],
    ['an unknown params action', () => ['params', 'drop'], 2, /^params needs /],
    ['unmount of a folder that is no mount', () => ['unmount', p('mnt')], 1, /^\S+mnt is not mounted$/],
    ['unmount of another file system', () => ['unmount', '/proc'], 1, /^\/proc is a proc mount, not a Strata one; use umount$/],
    ['unmount without a path', () => ['unmount'], 2, /^unmount needs one mount point/],
    ['links without an action', () => ['links'], 2, /^links needs ls, add, set, rm or sync/],
  ];

  it.concurrent.each(cases)('%s', async (_name, args, code, message) => {
    const result = await runStrata(args(), { STRATA_TOKEN: '' });
    const lines = result.stderr.split('\n');
    expect(lines.length, result.stderr).toBe(2); // one line and its newline
    expect(lines[0]).toMatch(/^strata: /);
    expect(lines[0]!.slice('strata: '.length)).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code).toBe(code);
    expect(result.stdout).toBe('');
  });
});
