import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mountEntries } from '../fuse/index.js';
import type { Logger } from '../telemetry/index.js';
import { makeFolders } from '../durable/index.js';

const run = promisify(execFile);

/** gRPC status codes the node service answers with (grpc/doc/statuscodes.md). */
export const GRPC_STATUS = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, ALREADY_EXISTS: 6, FAILED_PRECONDITION: 9, INTERNAL: 13, UNAVAILABLE: 14 } as const;

/** A failed CSI call: the gRPC status and the message the CO shows in the pod's events. */
export class CsiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The node daemon's links, as the driver needs them (`GET|POST|DELETE /v1/links`). */
export interface LinkApi {
  get(name: string): Promise<{ name: string; path: string; store: string; readOnly?: boolean } | undefined>;
  add(link: Record<string, unknown>): Promise<void>;
  /** Removes the link; answers false when the daemon refuses because uploads are pending. */
  remove(name: string): Promise<boolean>;
}

export interface NodePublishRequest {
  readonly volume_id: string;
  readonly target_path: string;
  readonly readonly: boolean;
  readonly volume_capability?: { readonly block?: unknown; readonly mount?: unknown; readonly access_type?: string } | null;
  readonly volume_context: Record<string, string>;
}

/** Volume attributes (a PV's `csi.volumeAttributes`) that become link fields; `store` is required. */
const LINK_ATTRIBUTES = ['store', 'endpoint', 'region'] as const;
/** Link names are at most 63 characters; `csi-` and a volume id up to this length stay readable. */
const MAX_READABLE_ID = 59;

/**
 * The CSI node service over a Strata daemon (`strata serve`) on the same node. A volume is
 * a link of that daemon, named after the volume id, at `/csi/<name>` in its mount;
 * publishing bind-mounts that folder at the pod's target path (read-only when asked) and
 * creates the link first if no pod on the node uses the volume yet; unpublishing unmounts
 * the target and removes the link once no target uses it. Both are idempotent, as the
 * specification requires: a repeated call finds its work done and answers OK.
 */
export class CsiNodeDriver {
  readonly #api: LinkApi;
  readonly #mountRoot: string;
  readonly #logger: Logger;

  constructor(config: { api: LinkApi; mountRoot: string; logger: Logger }) {
    this.#api = config.api;
    this.#mountRoot = config.mountRoot;
    this.#logger = config.logger;
  }

  async publish(request: NodePublishRequest): Promise<void> {
    const { volume_id: volumeId, target_path: target } = request;
    if (!volumeId) throw new CsiError(GRPC_STATUS.INVALID_ARGUMENT, 'volume_id is required');
    if (!target) throw new CsiError(GRPC_STATUS.INVALID_ARGUMENT, 'target_path is required');
    const capability = request.volume_capability;
    if (!capability) throw new CsiError(GRPC_STATUS.INVALID_ARGUMENT, 'volume_capability is required');
    if (capability.block || capability.access_type === 'block') throw new CsiError(GRPC_STATUS.INVALID_ARGUMENT, 'Strata volumes are file systems; block access is not supported');
    const store = request.volume_context.store;
    if (!store) throw new CsiError(GRPC_STATUS.INVALID_ARGUMENT, 'the volume attributes need "store" (s3://bucket/prefix or file:///dir)');

    const name = linkName(volumeId);
    const linkPath = `/csi/${name}`;
    const existing = await this.#api.get(name);
    if (existing && existing.store !== store) {
      throw new CsiError(GRPC_STATUS.ALREADY_EXISTS, `volume ${volumeId} is already served from ${existing.store}, not ${store}`);
    }
    if (!existing) {
      const fields = Object.fromEntries(LINK_ATTRIBUTES.flatMap((k) => (request.volume_context[k] ? [[k, request.volume_context[k]]] : [])));
      const policies = {
        ...(request.volume_context.import ? { import: { mode: request.volume_context.import } } : {}),
        ...(request.volume_context.export ? { export: { mode: request.volume_context.export } } : {}),
        ...(request.volume_context.readOnly === 'true' ? { readOnly: true } : {}),
      };
      await this.#api.add({ name, path: linkPath, ...fields, ...policies });
      this.#logger.info({ volumeId, link: name, store }, 'link created for a volume');
    }

    const source = join(this.#mountRoot, linkPath);
    const current = await targetMount(target);
    if (current) {
      if (current.root !== linkPath) throw new CsiError(GRPC_STATUS.ALREADY_EXISTS, `${target} already has another mount (${current.fsType} ${current.root})`);
      if (current.options.includes('ro') !== request.readonly) throw new CsiError(GRPC_STATUS.ALREADY_EXISTS, `${target} is already published ${request.readonly ? 'read-write' : 'read-only'}`);
      return; // published already: the same volume, the same mode
    }
    await waitForFolder(source);
    await makeFolders(target);
    await run('mount', ['--bind', source, target]);
    if (request.readonly) await run('mount', ['-o', 'remount,bind,ro', target]);
    this.#logger.info({ volumeId, target, readonly: request.readonly }, 'volume published');
  }

  async unpublish(request: { volume_id: string; target_path: string }): Promise<void> {
    const { volume_id: volumeId, target_path: target } = request;
    if (!volumeId) throw new CsiError(GRPC_STATUS.INVALID_ARGUMENT, 'volume_id is required');
    if (!target) throw new CsiError(GRPC_STATUS.INVALID_ARGUMENT, 'target_path is required');
    const name = linkName(volumeId);
    // A stale bind (the daemon restarted under it) unmounts the same way.
    // Mounts stacked on the target by repeated binds: a few at most.
    for (let tries = 0; tries < 4 && (await targetMount(target)); tries++) await run('umount', [target]).catch(() => run('umount', ['-l', target]));
    await rmdir(target).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw new CsiError(GRPC_STATUS.INTERNAL, `cannot remove ${target}: ${err.code}`);
    });
    const users = (await mountEntries()).filter((e) => e.fsType === 'fuse.strata' && e.root === `/csi/${name}`);
    if (users.length === 0 && (await this.#api.get(name))) {
      if (await this.#api.remove(name)) this.#logger.info({ volumeId, link: name }, 'link removed: no pod on this node uses the volume');
      else this.#logger.warn({ volumeId, link: name }, 'link kept: its uploads are still pending');
    }
    this.#logger.info({ volumeId, target }, 'volume unpublished');
  }

  /**
   * After the node daemon restarted, the binds it served are dead (ENOTCONN): each is bound
   * again from the new mount, at the same target, so pods that mount the volume with
   * `mountPropagation: HostToContainer` see it again. Answers how many were repaired.
   */
  async repairStaleTargets(): Promise<number> {
    let repaired = 0;
    for (const entry of await mountEntries()) {
      if (entry.fsType !== 'fuse.strata' || !entry.root.startsWith('/csi/')) continue;
      const alive = await stat(entry.mountPoint).then(() => true, () => false);
      if (alive) continue;
      const source = join(this.#mountRoot, entry.root);
      if (!(await stat(source).then((s) => s.isDirectory(), () => false))) continue; // the daemon is not back yet
      await run('umount', ['-l', entry.mountPoint]);
      await run('mount', ['--bind', source, entry.mountPoint]);
      if (entry.options.includes('ro')) await run('mount', ['-o', 'remount,bind,ro', entry.mountPoint]);
      this.#logger.warn({ target: entry.mountPoint }, 'stale volume bind re-created after a daemon restart');
      repaired++;
    }
    return repaired;
  }
}

/** `csi-<volume id>` when the id is a valid link name, else `csi-` and a hash of it. */
export function linkName(volumeId: string): string {
  if (/^[a-z0-9][a-z0-9._-]*$/.test(volumeId) && volumeId.length <= MAX_READABLE_ID) return `csi-${volumeId}`;
  return `csi-${createHash('sha256').update(volumeId).digest('hex').slice(0, 32)}`;
}

/** The mount at exactly `target`, or undefined. */
async function targetMount(target: string) {
  return (await mountEntries()).filter((e) => e.mountPoint === target).pop();
}

/** A new link's folder appears in the mount once the daemon's routes have it: a few ms. */
async function waitForFolder(path: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await stat(path).then((s) => s.isDirectory(), () => false))) {
    if (Date.now() > deadline) throw new CsiError(GRPC_STATUS.UNAVAILABLE, `${path} did not appear in the Strata mount; is strata serve running with --mount on the node?`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
