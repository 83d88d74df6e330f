// The proto3 JSON mapping of any shmbroker message, for the CLI's -o json and
// -o yaml: RFC 3339 timestamps, 64-bit integers as strings, enum names,
// fields at their defaults omitted, oneofs as the one field set. The mapping
// is done by @bufbuild/protobuf (protobuf-es, conformant with the protobuf
// conformance suite) over the descriptor set the build makes with buf, so the
// output is what any other implementation's JSON parser accepts as that
// message. Messages come in as the objects @grpc/proto-loader decodes; they
// go through the wire format once (proto-loader's serializer, protobuf-es's
// parser), so both libraries agree on what the message is.
import * as fs from 'node:fs';
import type { JsonValue, Registry } from '@bufbuild/protobuf';
import { DESCRIPTOR_SET_PATH, shmbrokerPackageDefinition } from './load';

// protobuf-es is loaded on the first JSON output, not with the CLI: every
// command, `shmbroker serve` included, loads this module, and loading the
// library took ~27 ms of a broker's start (issue 19, restart time).
let es: { pb: typeof import('@bufbuild/protobuf'); wkt: typeof import('@bufbuild/protobuf/wkt') } | undefined;
function lib(): NonNullable<typeof es> {
  es ??= { pb: require('@bufbuild/protobuf') as typeof import('@bufbuild/protobuf'), wkt: require('@bufbuild/protobuf/wkt') as typeof import('@bufbuild/protobuf/wkt') };
  return es;
}

let registry: Registry | undefined;
function reg(): Registry {
  const { pb, wkt } = lib();
  registry ??= pb.createFileRegistry(pb.fromBinary(wkt.FileDescriptorSetSchema, fs.readFileSync(DESCRIPTOR_SET_PATH)));
  return registry;
}

/** The proto3 JSON of `message`, a value of the message type `typeName` (e.g. "shmbroker.v1.Region"). */
export function toProto3Json(typeName: string, message: object): JsonValue {
  const definition = shmbrokerPackageDefinition()[typeName] as { serialize?: (m: object) => Buffer } | undefined;
  const desc = reg().getMessage(typeName);
  if (!definition?.serialize || !desc) throw new Error(`unknown message type ${typeName}`);
  const { pb } = lib();
  return pb.toJson(desc, pb.fromBinary(desc, definition.serialize(message)), { registry: reg() });
}
