// Where a client finds the broker (DESIGN.md, Contract: command line):
// --runtime-dir, else SHMBROKER_RUNTIME_DIR, else /run/shmbroker for root
// and $XDG_RUNTIME_DIR/shmbroker (or /tmp/shmbroker-UID) for anyone else.
import * as path from 'node:path';

export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? 0): string {
  if (env.SHMBROKER_RUNTIME_DIR) return env.SHMBROKER_RUNTIME_DIR;
  if (uid === 0) return '/run/shmbroker';
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'shmbroker');
  return `/tmp/shmbroker-${uid}`;
}

export function resolveRuntimeDir(explicit?: string): string {
  return path.resolve(explicit ?? defaultRuntimeDir());
}

export const CONTROL_SOCKET = 'broker.sock';
export const DATA_SOCKET = 'data.sock';
