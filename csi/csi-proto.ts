import { fromJSON, type Options } from '@grpc/proto-loader';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/**
 * The part of the CSI specification (v1, `csi.v1`) a node plugin without staging serves:
 * the Identity service and the Node service's capabilities, info, publish and unpublish.
 * Written from the specification's messages with its field numbers (the wire format);
 * `google.protobuf.BoolValue` is declared here as `BoolValue`, which has the same encoding.
 * Fields of messages not listed here are skipped by the decoder, as protobuf allows.
 */
const CSI_PROTO = `
syntax = "proto3";
package csi.v1;

service Identity {
  rpc GetPluginInfo (GetPluginInfoRequest) returns (GetPluginInfoResponse) {}
  rpc GetPluginCapabilities (GetPluginCapabilitiesRequest) returns (GetPluginCapabilitiesResponse) {}
  rpc Probe (ProbeRequest) returns (ProbeResponse) {}
}

service Node {
  rpc NodePublishVolume (NodePublishVolumeRequest) returns (NodePublishVolumeResponse) {}
  rpc NodeUnpublishVolume (NodeUnpublishVolumeRequest) returns (NodeUnpublishVolumeResponse) {}
  rpc NodeGetCapabilities (NodeGetCapabilitiesRequest) returns (NodeGetCapabilitiesResponse) {}
  rpc NodeGetInfo (NodeGetInfoRequest) returns (NodeGetInfoResponse) {}
}

message BoolValue { bool value = 1; }

message GetPluginInfoRequest {}
message GetPluginInfoResponse {
  string name = 1;
  string vendor_version = 2;
  map<string, string> manifest = 3;
}

message GetPluginCapabilitiesRequest {}
message GetPluginCapabilitiesResponse { repeated PluginCapability capabilities = 1; }
message PluginCapability {
  message Service {
    enum Type {
      UNKNOWN = 0;
      CONTROLLER_SERVICE = 1;
      VOLUME_ACCESSIBILITY_CONSTRAINTS = 2;
      GROUP_CONTROLLER_SERVICE = 3;
    }
    Type type = 1;
  }
  oneof type { Service service = 1; }
}

message ProbeRequest {}
message ProbeResponse { BoolValue ready = 1; }

message NodeGetCapabilitiesRequest {}
message NodeGetCapabilitiesResponse { repeated NodeServiceCapability capabilities = 1; }
message NodeServiceCapability {
  message RPC {
    enum Type {
      UNKNOWN = 0;
      STAGE_UNSTAGE_VOLUME = 1;
      GET_VOLUME_STATS = 2;
      EXPAND_VOLUME = 3;
      VOLUME_CONDITION = 4;
      SINGLE_NODE_MULTI_WRITER = 5;
      VOLUME_MOUNT_GROUP = 6;
    }
    Type type = 1;
  }
  oneof type { RPC rpc = 1; }
}

message NodeGetInfoRequest {}
message NodeGetInfoResponse {
  string node_id = 1;
  int64 max_volumes_per_node = 2;
}

message VolumeCapability {
  message BlockVolume {}
  message MountVolume {
    string fs_type = 1;
    repeated string mount_flags = 2;
    string volume_mount_group = 3;
  }
  message AccessMode {
    enum Mode {
      UNKNOWN = 0;
      SINGLE_NODE_WRITER = 1;
      SINGLE_NODE_READER_ONLY = 2;
      MULTI_NODE_READER_ONLY = 3;
      MULTI_NODE_SINGLE_WRITER = 4;
      MULTI_NODE_MULTI_WRITER = 5;
      SINGLE_NODE_SINGLE_WRITER = 6;
      SINGLE_NODE_MULTI_WRITER = 7;
    }
    Mode mode = 1;
  }
  oneof access_type {
    BlockVolume block = 1;
    MountVolume mount = 2;
  }
  AccessMode access_mode = 3;
}

message NodePublishVolumeRequest {
  string volume_id = 1;
  map<string, string> publish_context = 2;
  string staging_target_path = 3;
  string target_path = 4;
  VolumeCapability volume_capability = 5;
  bool readonly = 6;
  map<string, string> secrets = 7;
  map<string, string> volume_context = 8;
}
message NodePublishVolumeResponse {}

message NodeUnpublishVolumeRequest {
  string volume_id = 1;
  string target_path = 2;
}
message NodeUnpublishVolumeResponse {}
`;

/** Field names as in the specification (snake_case), enums as their names, 64-bit integers as numbers. */
const LOADER_OPTIONS: Options = { keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true };

export interface CsiServices {
  readonly Identity: ServiceClientConstructor;
  readonly Node: ServiceClientConstructor;
}

/** The `csi.v1` services, for a server (their `.service`) or a client (tests, tools). */
export function csiServices(): CsiServices {
  const root = protobuf.parse(CSI_PROTO, { keepCase: true }).root;
  const loaded = loadPackageDefinition(fromJSON(root.toJSON(), LOADER_OPTIONS));
  const v1 = (loaded.csi as GrpcObject).v1 as GrpcObject;
  return { Identity: v1.Identity as ServiceClientConstructor, Node: v1.Node as ServiceClientConstructor };
}
