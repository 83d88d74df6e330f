// Where a client finds the broker (docs/ARCHITECTURE.md, "Command line and discovery"):
// --runtime-dir, else SHMBROKER_RUNTIME_DIR, else /run/shmbroker, for every
// uid. Root's broker is the one broker of a host; a per-user broker needs an
// explicit directory. There is no XDG or /tmp fallback: a directory another
// uid could create first is a directory it could serve a fake broker from.
import * as path from 'node:path';
import { DEFAULT_RUNTIME_DIR, RUNTIME_DIR_ENV } from '../../proto/wire';

export { CONTROL_SOCKET, DATA_SOCKET } from '../../proto/wire';

/** The runtime directory when none is given: $SHMBROKER_RUNTIME_DIR, else /run/shmbroker. */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  return env[RUNTIME_DIR_ENV] || DEFAULT_RUNTIME_DIR;
}

/** The absolute runtime directory a client uses: `explicit` if given, else defaultRuntimeDir(). */
export function resolveRuntimeDir(explicit?: string): string {
  return path.resolve(explicit ?? defaultRuntimeDir());
}
