import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Endpoint } from '../../test/fixtures/rgw.js';
import { shell } from './harness.js';

/**
 * Other FUSE clients of the same gateway, as reference rows next to Strata: s3fs and rclone
 * (Debian's packages). A bench skips a peer that is not installed, with a printed line.
 */
export type PeerName = 's3fs' | 'rclone';

/** A mounted peer: its process (for its CPU time) and how to unmount it. */
export interface PeerMount {
  readonly name: PeerName;
  readonly pid: number;
  /** The last lines the peer wrote to stderr (why a read failed). */
  errors(): string;
  unmount(): Promise<void>;
}

/** Whether `command` is on PATH; prints the skip line when it is not. */
export async function peerInstalled(name: PeerName): Promise<boolean> {
  const found = await shell(`command -v ${name} || true`);
  if (found.trim()) return true;
  process.stdout.write(`(${name} is not installed: its reference row is skipped)\n`);
  return false;
}

/**
 * Mounts `bucket` at `mnt` with `name` in the foreground (so its pid is the one doing the work)
 * and resolves once the mount shows in /proc/mounts. Neither peer caches data on disk: s3fs
 * without `use_cache`, rclone with its default `--vfs-cache-mode off`, so every read goes to
 * the store, as a cold read through Strata does.
 */
export async function mountPeer(name: PeerName, s3: S3Endpoint, bucket: string, mnt: string, work: string): Promise<PeerMount> {
  let child: ChildProcess;
  if (name === 's3fs') {
    const passwd = join(work, 's3fs.passwd');
    await writeFile(passwd, `${s3.accessKeyId}:${s3.secretAccessKey}\n`, { mode: 0o600 });
    child = spawn('s3fs', [bucket, mnt, '-f', '-o', `url=${s3.endpoint},use_path_request_style,passwd_file=${passwd},endpoint=${s3.region}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  } else {
    // Values holding ':' are quoted, as rclone's connection-string syntax requires.
    const remote = `:s3,provider=Ceph,env_auth=false,access_key_id=${s3.accessKeyId},secret_access_key=${s3.secretAccessKey},endpoint='${s3.endpoint}':${bucket}`;
    // rclone cannot apply AWS_CA_BUNDLE to its transport and refuses to start with it set (plain HTTP here).
    const { AWS_CA_BUNDLE: _unused, ...env } = process.env;
    child = spawn('rclone', ['mount', remote, mnt, '--read-only'], { stdio: ['ignore', 'ignore', 'pipe'], env });
  }
  let errors = '';
  child.stderr!.on('data', (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-2000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (!(await readFile('/proc/mounts', 'utf8')).includes(` ${mnt} `)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not mount ${bucket} at ${mnt}: ${errors.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    pid: child.pid!,
    errors: () => errors.trim().split('\n').slice(-3).join(' | '),
    async unmount() {
      await shell(`fusermount -u ${mnt} || umount -l ${mnt} || true`);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc. */
export async function cpuSecondsOf(pid: number): Promise<number> {
  const { user, system } = await cpuTimesOf(pid);
  return user + system;
}

/** User and system CPU seconds (all threads) a process has used so far, from /proc. */
export async function cpuTimesOf(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
}

/**
 * CPU time of the whole machine, from /proc/stat: seconds all cores spent busy (user, nice,
 * system, irq, softirq) and seconds the hypervisor gave to others (steal). On a small shared
 * machine the gateway, the client and the readers share the same cores; this shows whether a
 * row was bound by the machine's CPU rather than by the client under test.
 */
export async function machineCpu(): Promise<{ busy: number; steal: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!;
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: (user! + nice! + system! + irq! + softirq!) / CLOCK_TICKS, steal: steal! / CLOCK_TICKS };
}

/** Linux's USER_HZ, which /proc reports times in (100 on every mainstream architecture). */
const CLOCK_TICKS = 100;
