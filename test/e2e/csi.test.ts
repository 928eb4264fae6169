import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csiServices, linkName } from '../../csi/index.js';
import { freePort } from '../fixtures/rgw.js';
import { sh, shResult } from '../fixtures/shell.js';
import { cleanupDir, spawnStrata, startServe, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

type Call = (request: unknown, callback: (err: ServiceError | null, response: any) => void) => void;

/**
 * The CSI node plugin driven as the kubelet drives it: gRPC over its unix socket, against a
 * real `strata serve` mount, with real bind mounts at the target paths.
 */
describe('strata csi: the Kubernetes CSI node service', () => {
  let root: string;
  let lake: string;
  let mnt: string;
  let apiPort: number;
  let serve: StrataProcess;
  let csi: StrataProcess;
  let identity: Client;
  let node: Client;
  const socket = () => join(root, 'csi.sock');
  const serveArgs = () => ['--state-dir', join(root, 'state'), '--api', `127.0.0.1:${apiPort}`, '--log-level', 'warn'];
  const rpc = (client: Client, method: string, request: unknown = {}) =>
    new Promise<any>((resolve, reject) => ((client as unknown as Record<string, Call>)[method]!.bind(client))(request, (err, response) => (err ? reject(err) : resolve(response))));
  const mountCap = { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };
  const publish = (volumeId: string, target: string, extra: Record<string, unknown> = {}) =>
    rpc(node, 'NodePublishVolume', { volume_id: volumeId, target_path: target, volume_capability: mountCap, readonly: false, volume_context: { store: `file://${lake}` }, ...extra });
  const link = async (name: string) => (await fetch(`http://127.0.0.1:${apiPort}/v1/links/${name}`)).status;

  beforeAll(async () => {
    root = await tempDir('csi');
    lake = join(root, 'lake');
    mnt = join(root, 'mnt');
    await mkdir(join(lake, 'train'), { recursive: true });
    await mkdir(mnt);
    await writeFile(join(lake, 'train/a.txt'), 'from the lake\n');
    apiPort = await freePort();
    serve = await startServe(mnt, serveArgs());
    csi = spawnStrata(['csi', '--endpoint', `unix://${socket()}`, '--mount', mnt, '--api', `127.0.0.1:${apiPort}`, '--node-id', 'node-a']);
    for (let i = 0; !csi.stdout().includes('listening'); i++) {
      if (csi.child.exitCode !== null || i > 1200) throw new Error(`strata csi did not start: ${csi.stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const { Identity, Node } = csiServices();
    identity = new Identity(`unix://${socket()}`, credentials.createInsecure());
    node = new Node(`unix://${socket()}`, credentials.createInsecure());
  });

  afterAll(async () => {
    identity?.close();
    node?.close();
    await csi?.stop();
    await sh(`for m in $(grep -o " ${root}/pods/[^ ]*" /proc/self/mountinfo | sort -r); do umount -l $m; done; true`);
    await serve?.stop();
    await cleanupDir(root);
  });

  it('answers identity, probe, node info and capabilities', async () => {
    expect(await rpc(identity, 'GetPluginInfo')).toMatchObject({ name: 'csi.strata.io', vendor_version: '0.1.0' });
    expect(await rpc(identity, 'GetPluginCapabilities')).toEqual({ capabilities: [] });
    expect(await rpc(identity, 'Probe')).toEqual({ ready: { value: true } });
    expect(await rpc(node, 'NodeGetInfo')).toMatchObject({ node_id: 'node-a' });
    expect(await rpc(node, 'NodeGetCapabilities')).toEqual({ capabilities: [] });
  });

  it('publishes a link\'s folder at the target (idempotently), read-only when asked, and drops the link with its last target', async () => {
    const podA = join(root, 'pods/a/mount');
    const podB = join(root, 'pods/b/mount');
    await publish('vol-1', podA);
    await publish('vol-1', podA); // the kubelet retries: same answer, no second mount
    expect((await sh(`grep -c " ${podA} " /proc/self/mountinfo`)).trim()).toBe('1');
    expect(await sh(`cat ${podA}/train/a.txt`)).toBe('from the lake\n');
    expect(await link(linkName('vol-1'))).toBe(200);

    await publish('vol-1', podB, { readonly: true });
    expect(await sh(`cat ${podB}/train/a.txt`)).toBe('from the lake\n');
    expect((await shResult(`touch ${podB}/new.txt`)).stderr).toMatch(/Read-only file system/);
    await expect(publish('vol-1', podB, { readonly: false })).rejects.toMatchObject({ code: 6, details: expect.stringContaining('already published read-only') });

    await rpc(node, 'NodeUnpublishVolume', { volume_id: 'vol-1', target_path: podA });
    await expect(stat(podA)).rejects.toThrow(/ENOENT/);
    expect(await link(linkName('vol-1'))).toBe(200); // pod B still uses it
    await rpc(node, 'NodeUnpublishVolume', { volume_id: 'vol-1', target_path: podB });
    await rpc(node, 'NodeUnpublishVolume', { volume_id: 'vol-1', target_path: podB }); // again: nothing to do, OK
    expect(await link(linkName('vol-1'))).toBe(404);
    expect(await sh(`grep -c " ${root}/pods" /proc/self/mountinfo || true`)).toBe('0\n');
  });

  it('refuses what it cannot serve with INVALID_ARGUMENT or ALREADY_EXISTS', async () => {
    const target = join(root, 'pods/c/mount');
    await expect(publish('vol-2', target, { volume_context: {} })).rejects.toMatchObject({ code: 3, details: expect.stringContaining('"store"') });
    await expect(publish('vol-2', target, { volume_capability: { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } } })).rejects.toMatchObject({ code: 3, details: expect.stringContaining('block access') });
    await expect(publish('', target)).rejects.toMatchObject({ code: 3 });
    await publish('vol-2', target);
    await expect(publish('vol-2', join(root, 'pods/d/mount'), { volume_context: { store: `file://${join(root, 'other')}` } })).rejects.toMatchObject({ code: 6, details: expect.stringContaining('already served from') });
    await rpc(node, 'NodeUnpublishVolume', { volume_id: 'vol-2', target_path: target });
    expect(await readdir(join(root, 'pods/c'))).toEqual([]); // the target is gone; its parent is the kubelet's
  });

  it('binds a volume again after the node daemon restarts, so the pod does not keep a dead mount', async () => {
    const target = join(root, 'pods/e/mount');
    await publish('vol-3', target);
    expect(await sh(`cat ${target}/train/a.txt`)).toBe('from the lake\n');
    await serve.stop('SIGKILL');
    expect((await shResult(`ls ${target}`)).stderr).toMatch(/Transport endpoint is not connected/);
    serve = await startServe(mnt, serveArgs()); // the links persist in the state dir
    let read = await shResult(`cat ${target}/train/a.txt`);
    for (let i = 0; read.code !== 0 && i < 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      read = await shResult(`cat ${target}/train/a.txt`);
    }
    expect(read.stdout).toBe('from the lake\n');
    expect(csi.stderr()).toContain('stale volume bind re-created after a daemon restart');
    await rpc(node, 'NodeUnpublishVolume', { volume_id: 'vol-3', target_path: target });
    expect(await link(linkName('vol-3'))).toBe(404);
  });
});
