import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { isStrataError } from '../errors/index.js';
import { S_IFDIR, S_IFMT, S_IFREG } from '../store/index.js';
import type { DirectoryItem, Filesystem } from './filesystem.js';
import type { FuseReplies } from './fuse-replies.js';
import { childPath, type InodeTable } from './inode-table.js';
import {
  IN_HEADER_BYTES,
  Opcode,
  GETATTR_FH,
  RENAME_NOREPLACE,
  SetattrValid,
  attrOut,
  direntsOut,
  direntsPlusFitting,
  direntsPlusOut,
  entryOut,
  nameAt,
  openOut,
  statfsOut,
  writeOut,
  type RequestHeader,
} from './kernel-protocol.js';
import type { OpenPolicy } from './open-policy.js';

/**
 * Request dispatch of the native FUSE session: decodes the arguments of each file-system
 * request (by node id, which the `InodeTable` maps to a path), calls the `Filesystem`, and
 * answers through `FuseReplies`. One job: the translation table from opcodes to calls; the
 * session handles INIT, FORGET and the end of the connection itself.
 */

const E = constants.errno;

/** chown's "leave unchanged" (-1 as an unsigned 32-bit id). */
const ID_UNCHANGED = 0xffff_ffff;

interface OpenDir {
  readonly path: string;
  items?: DirectoryItem[];
}

export class RequestDispatch {
  readonly #fs: Filesystem;
  readonly #inodes: InodeTable;
  readonly #replies: FuseReplies;
  readonly #policy: OpenPolicy;
  readonly #ttl: number;
  readonly #dirs = new Map<number, OpenDir>();
  #nextDir = 1;

  constructor(fs: Filesystem, inodes: InodeTable, replies: FuseReplies, policy: OpenPolicy, ttlSeconds: number) {
    this.#fs = fs;
    this.#inodes = inodes;
    this.#replies = replies;
    this.#policy = policy;
    this.#ttl = ttlSeconds;
  }

  /**
   * The READDIRPLUS answer for `items[offset..]` of `folder`, as many as fit in `size`. A name
   * whose type only a HEAD would tell (mode 0) or whose attributes fail goes without an entry
   * (node 0); "." and ".." always do. Lookups are counted only once the answer is built, for
   * exactly the names it carries, as the kernel counts them.
   */
  async #direntsPlus(folder: string, items: readonly DirectoryItem[], offset: number, size: number): Promise<Buffer> {
    const listed = items.slice(offset, offset + direntsPlusFitting(items, offset, size));
    const paths = listed.map((item) => childPath(folder, item.name));
    const stats = await Promise.all(
      listed.map(async (item, k) => (offset + k < 2 || item.mode === 0 ? undefined : this.#fs.getattr(paths[k]!).catch(() => undefined))),
    );
    const entries = stats.map((stat, k) => ({ nodeId: stat ? this.#inodes.remember(paths[k]!) : 0n, stat }));
    return direntsPlusOut(items, offset, entries, this.#ttl);
  }

  /** Serves one request of the kernel (not INIT, FORGET nor the end of the session). */
  dispatch(request: Buffer, header: RequestHeader): void {
    const { opcode, unique, nodeId } = header;
    const path = this.#inodes.pathOf(nodeId);
    if (path === undefined) {
      this.#replies.fail(unique, -E.ESTALE);
      return;
    }
    const body = IN_HEADER_BYTES;
    const fs = this.#fs;
    switch (opcode) {
      case Opcode.LOOKUP: {
        const target = childPath(path, nameAt(request, body).name);
        this.#replies.serve('lookup', unique, target, async () => {
          try {
            return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
          } catch (err) {
            // A negative entry, cached by the kernel for the TTL like a positive one.
            if (isStrataError(err, 'FS_NOT_FOUND')) return entryOut(0n, undefined, this.#ttl);
            throw err;
          }
        });
        return;
      }
      case Opcode.GETATTR: {
        // fuse_getattr_in: getattr_flags, dummy, fh. fstat of a file unlinked while open names
        // its handle: the path is gone, the handle still answers.
        const flags = request.readUInt32LE(body);
        const fh = Number(request.readBigUInt64LE(body + 8));
        this.#replies.serve('getattr', unique, path, async () => {
          try {
            return attrOut(nodeId, await fs.getattr(path), this.#ttl);
          } catch (err) {
            if (!isStrataError(err, 'FS_NOT_FOUND')) throw err;
            // fstat(2) sends no handle: any handle open on this node answers.
            let handle = flags & GETATTR_FH ? fh : undefined;
            handle ??= this.#policy.handleOn(nodeId);
            const open = handle === undefined ? undefined : fs.getattrOpen(handle);
            if (!open) throw err;
            return attrOut(nodeId, open, 0);
          }
        });
        return;
      }
      case Opcode.SETATTR: {
        const valid = request.readUInt32LE(body);
        const fh = Number(request.readBigUInt64LE(body + 8));
        const size = Number(request.readBigUInt64LE(body + 16));
        // fuse_setattr_in: ... mtime u64 at 40, mtimensec u32 at 60, mode at 68, uid at 76, gid at 80.
        const mtime = Number(request.readBigUInt64LE(body + 40)) * 1000 + Math.floor(request.readUInt32LE(body + 60) / 1e6);
        const mode = request.readUInt32LE(body + 68);
        const uid = request.readUInt32LE(body + 76);
        const gid = request.readUInt32LE(body + 80);
        this.#replies.serve('setattr', unique, path, async () => {
          // Modes, owners and times are kept with the object (docs/SEMANTICS.md).
          if (valid & SetattrValid.SIZE) await fs.truncate(path, size, valid & SetattrValid.FH ? fh : undefined);
          if (valid & SetattrValid.MODE) await fs.chmod(path, mode);
          if (valid & (SetattrValid.UID | SetattrValid.GID)) await fs.chown(path, valid & SetattrValid.UID ? uid : ID_UNCHANGED, valid & SetattrValid.GID ? gid : ID_UNCHANGED);
          if (valid & SetattrValid.MTIME_NOW) await fs.utimens(path, new Date());
          else if (valid & SetattrValid.MTIME) await fs.utimens(path, new Date(mtime));
          return attrOut(nodeId, await fs.getattr(path), this.#ttl);
        });
        return;
      }
      case Opcode.OPEN: {
        const flags = request.readUInt32LE(body);
        this.#replies.serve('open', unique, path, () => this.#policy.open(nodeId, path, flags));
        return;
      }
      case Opcode.CREATE: {
        const { name } = nameAt(request, body + 16);
        const target = childPath(path, name);
        this.#replies.serve('create', unique, target, async () => {
          // fuse_create_in: flags, mode (the kernel applied the umask), umask, open_flags.
          const handle = await fs.create(target, request.readUInt32LE(body + 4));
          const stat = await fs.getattr(target);
          const node = this.#inodes.remember(target);
          return Buffer.concat([entryOut(node, stat, this.#ttl), await this.#policy.created(handle, node, request.readUInt32LE(body))]);
        });
        return;
      }
      case Opcode.READ: {
        const fh = Number(request.readBigUInt64LE(body));
        const offset = Number(request.readBigUInt64LE(body + 8));
        const size = request.readUInt32LE(body + 16);
        this.#replies.serveRead(unique, path, size, () => this.#fs.read(fh, offset, size));
        return;
      }
      case Opcode.WRITE: {
        const fh = Number(request.readBigUInt64LE(body));
        const offset = Number(request.readBigUInt64LE(body + 8));
        const size = request.readUInt32LE(body + 16);
        const data = request.subarray(body + 40, body + 40 + size);
        this.#replies.serve('write', unique, path, async () => writeOut(await fs.write(fh, offset, data)));
        return;
      }
      case Opcode.FLUSH:
        this.#replies.serve('flush', unique, path, async () => (await fs.flush(Number(request.readBigUInt64LE(body))), undefined));
        return;
      case Opcode.FSYNC:
        this.#replies.serve('fsync', unique, path, async () => (await fs.fsync(Number(request.readBigUInt64LE(body))), undefined));
        return;
      case Opcode.RELEASE: {
        const fh = Number(request.readBigUInt64LE(body));
        this.#replies.serve('release', unique, path, async () => {
          this.#policy.closed(fh);
          await fs.release(fh);
          return undefined;
        });
        return;
      }
      case Opcode.STATFS:
        this.#replies.serve('statfs', unique, path, () => statfsOut(fs.statfs()));
        return;
      case Opcode.UNLINK: {
        const target = childPath(path, nameAt(request, body).name);
        this.#replies.serve('unlink', unique, target, async () => (await fs.unlink(target), undefined));
        return;
      }
      case Opcode.RMDIR: {
        const target = childPath(path, nameAt(request, body).name);
        this.#replies.serve('rmdir', unique, target, async () => (await fs.rmdir(target), undefined));
        return;
      }
      case Opcode.MKDIR: {
        const target = childPath(path, nameAt(request, body + 8).name);
        this.#replies.serve('mkdir', unique, target, async () => {
          await fs.mkdir(target);
          return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
        });
        return;
      }
      case Opcode.RENAME:
      case Opcode.RENAME2: {
        const newDir = request.readBigUInt64LE(body);
        const flags = opcode === Opcode.RENAME2 ? request.readUInt32LE(body + 8) : 0;
        const names = opcode === Opcode.RENAME2 ? body + 16 : body + 8;
        const from = nameAt(request, names);
        const to = nameAt(request, from.next);
        const toDir = this.#inodes.pathOf(newDir);
        if (toDir === undefined) {
          this.#replies.fail(unique, -E.ESTALE);
          return;
        }
        const source = childPath(path, from.name);
        const target = childPath(toDir, to.name);
        this.#replies.serve('rename', unique, source, async () => {
          // RENAME_EXCHANGE and RENAME_WHITEOUT have no meaning for objects.
          if (flags & ~RENAME_NOREPLACE) return -E.EINVAL;
          if (flags & RENAME_NOREPLACE && (await fs.getattr(target).then(() => true, () => false))) return -E.EEXIST;
          await fs.rename(source, target);
          this.#inodes.move(source, target);
          return undefined;
        });
        return;
      }
      case Opcode.OPENDIR: {
        const handle = this.#nextDir++;
        this.#dirs.set(handle, { path });
        this.#replies.respond(unique, 'opendir', performance.now(), openOut(handle, 0));
        return;
      }
      case Opcode.READDIR:
      case Opcode.READDIRPLUS: {
        // fuse_read_in: fh, offset, size. READDIRPLUS (every listing, once INIT granted it) also
        // carries each name's entry and attributes, so opening or stat'ing the names listed
        // sends no LOOKUP.
        const plus = opcode === Opcode.READDIRPLUS;
        const fh = Number(request.readBigUInt64LE(body));
        const offset = Number(request.readBigUInt64LE(body + 8));
        const size = request.readUInt32LE(body + 16);
        this.#replies.serve(plus ? 'readdirplus' : 'readdir', unique, path, async () => {
          const dir = this.#dirs.get(fh);
          if (!dir) return -E.EBADF;
          if (!dir.items || offset === 0) {
            dir.items = [{ name: '.', mode: S_IFDIR }, { name: '..', mode: S_IFDIR }, ...(await fs.list(dir.path))];
          }
          return plus ? this.#direntsPlus(dir.path, dir.items, offset, size) : direntsOut(dir.items, offset, size);
        });
        return;
      }
      case Opcode.RELEASEDIR:
        this.#dirs.delete(Number(request.readBigUInt64LE(body)));
        this.#replies.respond(unique, 'releasedir', performance.now(), undefined);
        return;
      case Opcode.FSYNCDIR:
      case Opcode.DESTROY:
        this.#replies.respond(unique, 'fsyncdir', performance.now(), undefined);
        return;
      case Opcode.SYMLINK: {
        // The link's name, then its target, each NUL-terminated.
        const link = nameAt(request, body);
        const linkTarget = nameAt(request, link.next).name;
        const target = childPath(path, link.name);
        this.#replies.serve('symlink', unique, target, async () => {
          await fs.symlink(linkTarget, target);
          return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
        });
        return;
      }
      case Opcode.READLINK:
        this.#replies.serve('readlink', unique, path, async () => Buffer.from(await fs.readlink(path), 'utf8'));
        return;
      case Opcode.LINK: {
        const target = childPath(path, nameAt(request, body + 8).name);
        this.#replies.serve('link', unique, target, () => fs.link(path, target));
        return;
      }
      case Opcode.MKNOD: {
        // fuse_mknod_in: mode, rdev, umask, padding. A regular file is a create; FIFOs,
        // sockets and devices have no object (ENOSYS, as libfuse 2 answers without mknod).
        const mode = request.readUInt32LE(body);
        const target = childPath(path, nameAt(request, body + 16).name);
        this.#replies.serve('mknod', unique, target, async () => {
          if ((mode & S_IFMT) !== S_IFREG) return -E.ENOSYS;
          await fs.release(await fs.create(target, mode));
          return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
        });
        return;
      }
      default:
        // ACCESS, xattrs, locks, fallocate, lseek, ioctl, statx, ...: ENOSYS tells the
        // kernel to stop asking (access is then granted, locks stay local, as before).
        this.#replies.fail(unique, -E.ENOSYS);
    }
  }
}
