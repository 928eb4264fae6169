/**
 * The ceiling of the FUSE stack on the machine that runs the bench: a minimal fuse-native file system that
 * serves one file from a Buffer in memory, with nothing else in the way. Run as a child
 * process: `tsx bench/lib/buffer-fs.ts MOUNTPOINT SIZE_BYTES`; prints `ready` once mounted,
 * unmounts on SIGTERM.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Fuse = require('fuse-native');

const [mountPoint, sizeText] = process.argv.slice(2);
const size = Number(sizeText);
const data = Buffer.alloc(size);
for (let i = 0; i < size; i += 4096) data.writeUInt32LE(i >>> 0, i);

const now = new Date();
const fileStat = { mode: 0o100444, size, mtime: now, atime: now, ctime: now, nlink: 1, uid: 0, gid: 0 };
const dirStat = { mode: 0o040755, size: 4096, mtime: now, atime: now, ctime: now, nlink: 2, uid: 0, gid: 0 };

const fuse = new Fuse(
  mountPoint,
  {
    getattr: (path: string, cb: (e: number, s?: unknown) => void) =>
      path === '/' ? cb(0, dirStat) : path === '/data.bin' ? cb(0, fileStat) : cb(Fuse.ENOENT),
    readdir: (_p: string, cb: (e: number, n?: string[]) => void) => cb(0, ['data.bin']),
    open: (_p: string, _f: number, cb: (e: number, fd?: number) => void) => cb(0, 1),
    release: (_p: string, _fd: number, cb: (e: number) => void) => cb(0),
    read: (_p: string, _fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => {
      const end = Math.min(pos + len, size);
      if (pos >= end) return cb(0);
      data.copy(buf, 0, pos, end);
      cb(end - pos);
    },
  },
  { autoCache: true, maxRead: 128 * 1024 },
);
fuse.mount((err: Error | null) => {
  if (err) {
    process.stderr.write(`buffer-fs: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => fuse.unmount(() => process.exit(0)));
