// Where a client finds the broker (DESIGN.md, Contract: command line):
// --runtime-dir, else SHMBROKER_RUNTIME_DIR, else /run/shmbroker, for every
// uid. Root's broker is the one broker of a host; a per-user broker needs an
// explicit directory. There is no XDG or /tmp fallback: a directory another
// uid could create first is a directory it could serve a fake broker from.
import * as path from 'node:path';

export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SHMBROKER_RUNTIME_DIR || '/run/shmbroker';
}

export function resolveRuntimeDir(explicit?: string): string {
  return path.resolve(explicit ?? defaultRuntimeDir());
}

export const CONTROL_SOCKET = 'broker.sock';
export const DATA_SOCKET = 'data.sock';
