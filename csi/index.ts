export { csiServices, type CsiServices } from './csi-proto.js';
export { CsiError, CsiNodeDriver, GRPC_STATUS, linkName, type LinkApi, type NodePublishRequest } from './node-driver.js';
export { startCsiServer, type CsiServer, type CsiServerConfig } from './server.js';
export { httpLinkApi } from './strata-api.js';
