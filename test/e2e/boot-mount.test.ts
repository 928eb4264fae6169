import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sh, shResult } from '../fixtures/shell.js';
import { cleanupDir, runStrata, tempDir } from '../fixtures/strata-process.js';

const REPO = resolve(import.meta.dirname, '../..');

/**
 * Installed use: `--background`, `strata unmount`, mount(8) with `-t fuse.strata` through
 * both helpers it may run, an fstab line, config files, the systemd unit, and logs.
 * mount(8) runs helpers with a fixed PATH, so those tests run in a private mount namespace
 * (unshare -m) where a folder holding a `strata` that runs this tree is bound over
 * /usr/local/bin (and a helper overlaid on /usr/sbin, a test fstab bound over /etc/fstab):
 * nothing outside the namespace sees them.
 */
describe('boot-time mounts', () => {
  let root: string;
  let lake: string;
  let bin: string;
  let argsLog: string;
  let n = 0;
  const mountPoint = async () => {
    const dir = join(root, `mnt-${++n}`);
    await mkdir(dir);
    return dir;
  };
  const stateDir = () => join(root, `state-${n}`);

  beforeAll(async () => {
    root = await tempDir('boot');
    lake = join(root, 'lake');
    await mkdir(join(lake, 'data'), { recursive: true });
    await writeFile(join(lake, 'data/hello.txt'), 'hello from the lake\n');
    bin = join(root, 'bin');
    argsLog = join(root, 'helper-args.log');
    await mkdir(bin);
    // `strata` as an installed one would be found on PATH; it notes how it was called.
    await writeFile(join(bin, 'strata'), `#!/bin/sh\necho "$*" >> ${argsLog}\nexec ${process.execPath} ${join(REPO, 'bin/strata-dev.js')} "$@"\n`);
    await chmod(join(bin, 'strata'), 0o755);
  });

  afterAll(async () => {
    await sh(`for m in ${root}/mnt-*; do grep -q " $m " /proc/self/mountinfo && fusermount -uz "$m"; done; pkill -f -- "--state-dir ${root}/" ; true`).catch(() => undefined);
    await cleanupDir(root);
  });

  it('--background returns once mounted, writes the pid file, and strata unmount stops the daemon cleanly', async () => {
    const mnt = await mountPoint();
    const pidFile = join(root, 'strata.pid');
    const started = await runStrata(['mount', `file://${lake}`, mnt, '--background', '--pid-file', pidFile, '--state-dir', stateDir(), '--api', '127.0.0.1:0']);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    expect(started.stdout).toMatch(new RegExp(`^strata: mounted file://${lake} at ${mnt} \\(admin API http://127\\.0\\.0\\.1:\\d+\\) \\(pid \\d+, log ${stateDir()}/strata\\.log\\)\\n$`));
    // Mounted when the command returned: no wait.
    expect(await sh(`cat ${mnt}/data/hello.txt`)).toBe('hello from the lake\n');
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    expect(started.stdout).toContain(`(pid ${pid},`);
    expect(await sh(`tr '\\0' ' ' < /proc/${pid}/cmdline`)).toContain(`mount file://${lake} ${mnt}`);

    const stopped = await runStrata(['unmount', mnt]);
    expect(stopped).toMatchObject({ code: 0, stdout: `strata: unmounted ${mnt}\n`, stderr: '' });
    expect((await shResult(`kill -0 ${pid}`)).code).not.toBe(0);
    expect(await sh(`grep -c " ${mnt} " /proc/self/mountinfo || true`)).toBe('0\n');
    const log = await readFile(join(stateDir(), 'strata.log'), 'utf8');
    expect(log).toContain('"msg":"mounted"');
    expect(log).toContain('"how":"clean"');
    await expect(readFile(pidFile)).rejects.toThrow(/ENOENT/);
  });

  it('--background answers the daemon\'s error as one line and a non-zero exit, and leaves nothing running', async () => {
    const missing = join(root, 'no-such-dir');
    const failed = await runStrata(['mount', `file://${lake}`, missing, '--background', '--state-dir', join(root, 'state-failed'), '--api', '127.0.0.1:0']);
    expect(failed).toMatchObject({ code: 1, stdout: '', stderr: `strata: mount point ${missing} does not exist; create it with mkdir -p ${missing}\n` });
    expect((await shResult(`pgrep -f -- "--state-dir ${root}/state-failed"`)).code).toBe(1);
  });

  it('strata unmount detaches a mount whose daemon was killed, and refuses what is not a Strata mount', async () => {
    const mnt = await mountPoint();
    const pidFile = join(root, 'killed.pid');
    expect((await runStrata(['mount', `file://${lake}`, mnt, '--background', '--pid-file', pidFile, '--state-dir', stateDir(), '--api', '127.0.0.1:0'])).code).toBe(0);
    await sh(`kill -9 $(cat ${pidFile}); while kill -0 $(cat ${pidFile}) 2>/dev/null; do sleep 0.05; done`);
    expect(await runStrata(['unmount', mnt])).toMatchObject({ code: 0, stdout: `strata: detached ${mnt} (its daemon had exited)\n` });
    expect(await runStrata(['unmount', mnt])).toMatchObject({ code: 1, stderr: `strata: ${mnt} is not mounted\n` });
    expect(await runStrata(['unmount', '/proc'])).toMatchObject({ code: 1, stderr: 'strata: /proc is a proc mount, not a Strata one; use umount\n' });
  });

  it('mount -t fuse.strata works through mount.fuse3 (no helper of our own installed)', async () => {
    const mnt = await mountPoint();
    await writeFile(argsLog, '');
    const out = await sh(
      `unshare -m --propagation private sh -ec '
        mount --bind ${bin} /usr/local/bin
        mount -t fuse.strata file://${lake} ${mnt} -o _netdev,nofail,ro,state_dir=${stateDir()},api=127.0.0.1:0,dram=64MiB
        cat ${mnt}/data/hello.txt
        strata unmount ${mnt}'`,
    );
    expect(out).toContain('hello from the lake\n');
    expect(out).toContain(`strata: unmounted ${mnt}`);
    // mount.fuse3 ran `strata SOURCE MOUNTPOINT -o ...`: it drops _netdev and nofail and adds dev,suid.
    expect((await readFile(argsLog, 'utf8')).split('\n')[0]).toBe(`file://${lake} ${mnt} -o ro,state_dir=${stateDir()},api=127.0.0.1:0,dram=64MiB,dev,suid`);
  });

  it('an fstab line of type fuse.strata mounts with `mount MOUNTPOINT` through /sbin/mount.fuse.strata', async () => {
    const mnt = await mountPoint();
    const sbin = join(root, 'sbin');
    await mkdir(sbin, { recursive: true });
    await sh(`install -m 755 ${join(REPO, 'packaging/mount.fuse.strata')} ${sbin}/mount.fuse.strata`);
    const fstab = join(root, 'fstab');
    await writeFile(fstab, `# test fstab\nfile://${lake} ${mnt} fuse.strata _netdev,nofail,allow_other,state_dir=${stateDir()},api=127.0.0.1:0,dram=64MiB 0 0\n`);
    await writeFile(argsLog, '');
    const out = await sh(
      `unshare -m --propagation private sh -ec '
        mount --bind ${bin} /usr/local/bin
        mount -t overlay overlay -o lowerdir=${sbin}:/usr/sbin /usr/sbin
        mount --bind ${fstab} /etc/fstab
        mount ${mnt}
        grep " ${mnt} " /proc/self/mountinfo
        cat ${mnt}/data/hello.txt
        strata unmount ${mnt}'`,
    );
    expect(out).toMatch(/ - fuse\.strata strata rw,.*allow_other/);
    expect(out).toContain('hello from the lake\n');
    // mount(8) ran our helper, with its options as written (mount.fuse3 would have dropped _netdev and nofail and added dev,suid).
    expect((await readFile(argsLog, 'utf8')).split('\n')[0]).toBe(`file://${lake} ${mnt} -o rw,allow_other,state_dir=${stateDir()},api=127.0.0.1:0,dram=64MiB,_netdev,nofail`);
  });

  it('mount -t fuse.strata answers a wrong option with one line and mount fails', async () => {
    const mnt = await mountPoint();
    const result = await shResult(`unshare -m --propagation private sh -c 'mount --bind ${bin} /usr/local/bin; mount -t fuse.strata file://${lake} ${mnt} -o turbo=1'`);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toBe('strata: mount: unknown option "turbo=1"; Strata takes its flags as -o name=value (strata mount --help lists them)\n');
  });

  it('a config file is read through the flags\' schema, flags win, and strata config check prints what it would run', async () => {
    const mnt = await mountPoint();
    const config = join(root, 'lake.toml');
    await writeFile(config, `# a mount as a service would run it\nstore = "file://${lake}"\nmountpoint = "${mnt}"\ndram = "256MiB"\nstate-dir = "${stateDir()}"\napi = "127.0.0.1:0"\nmetadata-ttl = 5\n`);
    const checked = await runStrata(['config', 'check', config]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toContain(`strata: ${config} is valid\n  store = "file://${lake}"\n  mountpoint = "${mnt}"\n`);
    expect(checked.stdout).toContain('  dram = "256.0 MiB"\n');
    expect(checked.stdout).toContain('  metadata-ttl = 5\n');

    const started = await runStrata(['mount', '--config', config, '--dram', '32MiB', '--background']);
    expect(started.code).toBe(0);
    try {
      const api = /admin API (http:\/\/[^\s)]+)/.exec(started.stdout)![1]!;
      const { tiers } = (await (await fetch(`${api}/v1/cache`)).json()) as { tiers: Array<{ name: string; capacityBytes: number }> };
      expect(tiers.find((t) => t.name === 'dram')!.capacityBytes).toBe(32 * 1024 ** 2);
      expect(await sh(`cat ${mnt}/data/hello.txt`)).toBe('hello from the lake\n');
    } finally {
      expect((await runStrata(['unmount', mnt])).code).toBe(0);
    }

    await writeFile(config, 'dram = "lots"\n');
    expect(await runStrata(['config', 'check', config])).toMatchObject({ code: 2, stdout: '', stderr: 'strata: --dram: "lots" is not a size (use e.g. 512MiB, 4GiB)\n' });
  });

  it('the systemd unit passes systemd-analyze verify with strata installed', async () => {
    const unitDir = join(root, 'units');
    await mkdir(unitDir, { recursive: true });
    await sh(`cp ${join(REPO, 'packaging/systemd/strata@.service')} ${unitDir}/strata@lake.service`);
    // systemd looks a bare ExecStart name up in its own fixed path, which has /usr/local/bin.
    const verified = await shResult(`cd ${unitDir} && unshare -m --propagation private sh -c 'mount --bind ${bin} /usr/local/bin; systemd-analyze verify --man=no ./strata@lake.service'`);
    expect(verified).toMatchObject({ code: 0, stderr: '' });
    // The check is real: without strata where systemd looks, it fails.
    expect((await shResult(`cd ${unitDir} && systemd-analyze verify --man=no ./strata@lake.service`)).stderr).toContain('Command strata is not executable');
  });

  it('logs: JSON into --log-file with no key repeated, pretty lines with --log-format pretty', async () => {
    const mnt = await mountPoint();
    const logFile = join(root, 'logs/daemon.log');
    const started = await runStrata(['mount', `file://${lake}`, mnt, '--background', '--state-dir', stateDir(), '--api', '127.0.0.1:0', '--log-file', logFile, '--log-format', 'json', '--log-level', 'debug']);
    expect(started.stdout).toContain(`log ${logFile})`);
    expect((await runStrata(['unmount', mnt])).code).toBe(0);
    const lines = (await readFile(logFile, 'utf8')).trim().split('\n');
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) {
      const keys = [...line.matchAll(/[{,]"([^"]+)":/g)].map((m) => m[1]);
      expect(new Set(keys).size, line).toBe(keys.length);
    }
    expect(lines.some((l) => l.includes('"component":"params"'))).toBe(true);

    const fg = await mountPoint();
    // SIGINT as soon as the mount shows, which may be before the daemon has finished starting:
    // it still stops cleanly (exit 0) and takes its mount with it.
    const run = await shResult(
      `${process.execPath} ${join(REPO, 'bin/strata-dev.js')} mount file://${lake} ${fg} --state-dir ${stateDir()} --api 127.0.0.1:0 --log-format pretty --log-level debug 2>&1 & pid=$!
       for i in $(seq 600); do grep -q " ${fg} " /proc/self/mountinfo && break; sleep 0.1; done
       kill -INT $pid; wait $pid`,
    );
    const foreground = run.stdout;
    expect(run.code, foreground).toBe(0);
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(` ${fg} `);
    expect(foreground).toMatch(/^\d\d:\d\d:\d\d\.\d{3} DEBUG \[params\] parameter tables recovered tables=0 checking=0/m);
    expect(foreground).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  mounted store=file:\/\/\S+ mountPoint=/m);
    expect(foreground).not.toContain('{"level"');
  });
});
