// `shmbroker serve`: load and check the whole configuration first (a bad
// file stops the broker before anything is applied), start the broker, and
// shut down cleanly on SIGTERM/SIGINT.
import * as path from 'node:path';
import * as os from 'node:os';
import { Broker } from './broker';
import type { BackendKind } from './backends/backend';
import { loadConfig } from './config';
import { createLogger } from './logger';
import { startPodIdentity } from './identity/pods';

export interface ServeOptions {
  runtimeDir?: string;
  stateDir?: string;
  backend?: string;
  config?: string;
  metricsAddr?: string;
}

export function defaultStateDir(uid: number = process.getuid?.() ?? 0): string {
  if (process.env.SHMBROKER_STATE_DIR) return process.env.SHMBROKER_STATE_DIR;
  if (uid === 0) return '/var/lib/shmbroker';
  return path.join(process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'shmbroker');
}

export async function serve(options: ServeOptions, runtimeDir: string): Promise<void> {
  const backend = options.backend ?? 'auto';
  if (backend !== 'auto' && backend !== 'kmod' && backend !== 'memfd') {
    throw new Error(`--backend must be auto, kmod or memfd, got ${JSON.stringify(backend)}`);
  }
  const config = loadConfig(options.config);
  const log = createLogger();
  // Pod identity: on in a Kubernetes pod, off elsewhere (service/identity/pods).
  const podIdentity = await startPodIdentity(config.podIdentity, (level, msg, fields) => log[level](fields ?? {}, msg));
  const broker = await Broker.start({
    runtimeDir,
    stateDir: options.stateDir ?? defaultStateDir(),
    backend: backend as 'auto' | BackendKind,
    config: options.metricsAddr ? { ...config, metricsAddr: options.metricsAddr } : config,
    log,
    resolvePod: podIdentity.resolvePeerSync,
  }).catch(async (err: unknown) => {
    await podIdentity.stop(); // its watch would keep the process alive
    throw err;
  });
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      Promise.all([broker.stop(), podIdentity.stop()]).then(() => resolve(), (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
