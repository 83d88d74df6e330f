// Loads the shmbroker protos at run time, for the broker, the SDK and the CLI
// alike: grpc-js service definitions through @grpc/proto-loader, and a
// protobufjs codec for the data-plane messages (which travel over a
// SOCK_SEQPACKET socket, not gRPC). The options here are the ones
// scripts/gen-proto-types.js generates the TypeScript types with; keep them
// in step.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import type { ProtoGrpcType as BrokerProto } from './generated/broker';
import type { ProtoGrpcType as QuotaProto } from './generated/quota';
import type { ProtoGrpcType as AuditProto } from './generated/audit';
import type { DataRequest, DataRequest__Output } from './generated/shmbroker/v1/DataRequest';
import type { DataReply, DataReply__Output } from './generated/shmbroker/v1/DataReply';

export const PROTO_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Largest data-plane packet either side sends or accepts (dataplane.proto). */
export const MAX_DATA_PACKET_BYTES = 4096;

function findPackageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'proto', 'shmbroker'))) {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`shmbroker: cannot find the proto directory above ${__dirname}`);
    dir = parent;
  }
}

export const PROTO_DIR = path.join(findPackageRoot(), 'proto');
/** Third-party protos (google/api, google/rpc, grpc/health, grpc/reflection), copied at build time by scripts/build-descriptor-set.js. */
export const PROTO_DEPS_DIR = path.join(findPackageRoot(), 'dist', 'protoset', 'deps');
/** The FileDescriptorSet of every proto, imports included, built by buf (scripts/build-descriptor-set.js). */
export const DESCRIPTOR_SET_PATH = path.join(findPackageRoot(), 'dist', 'protoset', 'descriptor-set.binpb');

export function protoFiles(): string[] {
  const dir = path.join(PROTO_DIR, 'shmbroker', 'v1');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.proto'))
    .sort()
    .map((f) => `shmbroker/v1/${f}`);
}

let packageDefinition: protoLoader.PackageDefinition | undefined;

/** The package definition of every shmbroker proto (cached). */
export function shmbrokerPackageDefinition(): protoLoader.PackageDefinition {
  packageDefinition ??= protoLoader.loadSync(protoFiles(), { ...PROTO_OPTIONS, includeDirs: [PROTO_DIR, PROTO_DEPS_DIR] });
  return packageDefinition;
}

/** The grpc-js object tree of the shmbroker package. */
export type ShmbrokerGrpc = BrokerProto['shmbroker']['v1'] & QuotaProto['shmbroker']['v1'] & AuditProto['shmbroker']['v1'];

export function loadShmbrokerGrpc(): ShmbrokerGrpc {
  const loaded = grpc.loadPackageDefinition(shmbrokerPackageDefinition()) as unknown as { shmbroker: { v1: ShmbrokerGrpc } };
  return loaded.shmbroker.v1;
}

const CONVERSION: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

class Codec<In extends object, Out> {
  constructor(private readonly type: protobuf.Type) {}

  encode(message: In): Buffer {
    // fromObject, not verify: it accepts enum names the way the loader emits them.
    const bytes = this.type.encode(this.type.fromObject(message)).finish();
    // protobufjs's Node writer already returns a Buffer of its own: no copy.
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Throws on malformed input; callers treat that as a protocol error. */
  decode(bytes: Uint8Array): Out {
    return this.type.toObject(this.type.decode(bytes), CONVERSION) as Out;
  }
}

let dataRoot: protobuf.Root | undefined;
function dataPlaneRoot(): protobuf.Root {
  if (!dataRoot) {
    dataRoot = new protobuf.Root();
    dataRoot.resolvePath = (_origin, target) => path.join(PROTO_DIR, target);
    dataRoot.loadSync('shmbroker/v1/dataplane.proto', { keepCase: false });
    dataRoot.resolveAll();
  }
  return dataRoot;
}

let requestCodec: Codec<DataRequest, DataRequest__Output> | undefined;
let replyCodec: Codec<DataReply, DataReply__Output> | undefined;

export function dataRequestCodec(): Codec<DataRequest, DataRequest__Output> {
  requestCodec ??= new Codec(dataPlaneRoot().lookupType('shmbroker.v1.DataRequest'));
  return requestCodec;
}

export function dataReplyCodec(): Codec<DataReply, DataReply__Output> {
  replyCodec ??= new Codec(dataPlaneRoot().lookupType('shmbroker.v1.DataReply'));
  return replyCodec;
}

export type { Codec };
