// Runs test/support/pyreflect.py: a client the project did not write (gRPC's
// C core through Debian's python3-grpcio, Google's protobuf runtime), with
// its own types compiled by protoc from upstream files: gRPC's reflection
// proto (Debian's grpc-proto) and google/rpc (the google-proto-files package).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO, run } from './broker-process';

export const PYTHON = '/usr/bin/python3'; // Debian's, where python3-grpcio and python3-protobuf live
const GRPC_PROTO = '/usr/share/grpc-proto';
const GOOGLE_PROTOS = path.dirname(require.resolve('google-proto-files/package.json'));

/** Compiles the client's descriptor set into dir; returns its path. */
export function buildClientProtoset(dir: string): string {
  const out = path.join(dir, 'client.binpb');
  const r = spawnSync('protoc', [
    `-I${GRPC_PROTO}`,
    `-I${GOOGLE_PROTOS}`,
    '--include_imports',
    `--descriptor_set_out=${out}`,
    'grpc/reflection/v1/reflection.proto',
    'google/rpc/status.proto',
    'google/rpc/error_details.proto',
  ]);
  if (r.status !== 0) throw new Error(`protoc failed: ${r.stderr?.toString() ?? r.error}`);
  fs.chmodSync(out, 0o644);
  return out;
}

/** Runs the commands (see pyreflect.py) as uid over the broker socket; one parsed JSON line per command. */
export async function pyreflect(sock: string, protoset: string, commands: unknown[], uid = 1001): Promise<any[]> {
  const r = await run(PYTHON, [path.join(REPO, 'test', 'support', 'pyreflect.py'), sock, protoset, JSON.stringify(commands)], { uid, gid: uid });
  if (r.code !== 0) throw new Error(`pyreflect exited ${r.code}: ${r.stderr}`);
  return r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
}

/** Compiles the broker's own API (proto/shmbroker/v1, with imports) with protoc into dir; returns its path. */
export function buildApiProtoset(dir: string): string {
  const out = path.join(dir, 'api.binpb');
  const protos = fs.readdirSync(path.join(REPO, 'proto', 'shmbroker', 'v1')).filter((f) => f.endsWith('.proto')).map((f) => `shmbroker/v1/${f}`);
  const r = spawnSync('protoc', [`-I${path.join(REPO, 'proto')}`, `-I${GOOGLE_PROTOS}`, '--include_imports', `--descriptor_set_out=${out}`, ...protos]);
  if (r.status !== 0) throw new Error(`protoc failed: ${r.stderr?.toString() ?? r.error}`);
  return out;
}

/**
 * Parses each [type name, JSON text] with python3-protobuf's json_format
 * (test/support/pyjson.py, unknown fields refused); one {ok} or {error} per item.
 */
export async function pyjson(protoset: string, items: Array<[string, string]>): Promise<any[]> {
  const r = await run(PYTHON, [path.join(REPO, 'test', 'support', 'pyjson.py'), protoset], { input: items.map((i) => JSON.stringify(i)).join('\n') });
  if (r.code !== 0) throw new Error(`pyjson exited ${r.code}: ${r.stderr}`);
  return r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
}
