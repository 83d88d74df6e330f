// Where the broker listens and how a client finds it (the command-line
// contract in docs/ARCHITECTURE.md): --runtime-dir, else
// SHMBROKER_RUNTIME_DIR, else /run/shmbroker, for every uid (no fallback).
import * as path from 'node:path';

/** The gRPC control plane, in the runtime directory. */
export const CONTROL_SOCKET = 'broker.sock';
/** The SOCK_SEQPACKET data plane, in the runtime directory. */
export const DATA_SOCKET = 'data.sock';
/** root's runtime directory: the one broker of a host. */
export const DEFAULT_RUNTIME_DIR = '/run/shmbroker';
/** Environment variable naming the runtime directory. */
export const RUNTIME_DIR_ENV = 'SHMBROKER_RUNTIME_DIR';

export function controlSocketPath(runtimeDir: string): string {
  return path.join(runtimeDir, CONTROL_SOCKET);
}

export function dataSocketPath(runtimeDir: string): string {
  return path.join(runtimeDir, DATA_SOCKET);
}
