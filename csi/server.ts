import { rm } from 'node:fs/promises';
import { Server, ServerCredentials, status as grpcStatus, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../telemetry/index.js';
import { csiServices } from './csi-proto.js';
import { CsiError, type CsiNodeDriver, type NodePublishRequest } from './node-driver.js';

export interface CsiServerConfig {
  /** `unix:///csi/csi.sock` (the kubelet's plugin socket) or a path. */
  readonly endpoint: string;
  readonly driverName: string;
  readonly version: string;
  readonly nodeId: string;
  readonly driver: CsiNodeDriver;
  readonly logger: Logger;
}

export interface CsiServer {
  close(): Promise<void>;
}

/** Serves the CSI Identity and Node services on a unix socket (a stale socket file is replaced). */
export async function startCsiServer(config: CsiServerConfig): Promise<CsiServer> {
  const path = config.endpoint.replace(/^unix:\/\//, '');
  await rm(path, { force: true });
  const services = csiServices();
  const server = new Server();
  const unary = <Req, Res>(name: string, handler: (request: Req) => Promise<Res>) => (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    handler(call.request).then(
      (response) => callback(null, response),
      (err: unknown) => {
        const known = err instanceof CsiError;
        if (!known) config.logger.error({ err, rpc: name }, 'CSI call failed');
        else config.logger.warn({ rpc: name, message: err.message }, 'CSI call refused');
        callback({ code: known ? err.status : grpcStatus.INTERNAL, details: known ? err.message : `internal error: ${(err as Error).message}` }, null);
      },
    );
  };
  const identity: UntypedServiceImplementation = {
    GetPluginInfo: unary('GetPluginInfo', async () => ({ name: config.driverName, vendor_version: config.version, manifest: {} })),
    // A node plugin only: no controller service, no topology.
    GetPluginCapabilities: unary('GetPluginCapabilities', async () => ({ capabilities: [] })),
    Probe: unary('Probe', async () => ({ ready: { value: true } })),
  };
  const node: UntypedServiceImplementation = {
    NodePublishVolume: unary('NodePublishVolume', async (request: NodePublishRequest) => (await config.driver.publish(request), {})),
    NodeUnpublishVolume: unary('NodeUnpublishVolume', async (request: { volume_id: string; target_path: string }) => (await config.driver.unpublish(request), {})),
    // No staging (the daemon's one mount is shared), no stats: publish and unpublish only.
    NodeGetCapabilities: unary('NodeGetCapabilities', async () => ({ capabilities: [] })),
    NodeGetInfo: unary('NodeGetInfo', async () => ({ node_id: config.nodeId, max_volumes_per_node: 0 })),
  };
  server.addService(services.Identity.service, identity);
  server.addService(services.Node.service, node);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${path}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  config.logger.info({ endpoint: `unix://${path}`, node: config.nodeId }, 'CSI node service listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}
