// `shmbroker serve`: load and check the whole configuration first (a bad
// file stops the broker before anything is applied), start the broker, and
// shut down cleanly on SIGTERM/SIGINT. SIGHUP reloads the file (reload.ts
// says which keys apply at once and which need a restart); `--print-config`
// prints the effective configuration, defaults included, and exits.
//
// Start-up is all or nothing (Broker.start undoes what it opened), and the
// exit code says which kind of failure it was: EX_CONFIG (78) for a bad
// configuration (file, flags, unsafe directories: a restart cannot fix those,
// so the systemd unit has RestartPreventExitStatus=78), 1 for anything else.
// Readiness: the "broker serving" log line, and sd_notify READY=1 on
// $NOTIFY_SOCKET (Type=notify) only once every listener serves.
import * as path from 'node:path';
import * as os from 'node:os';
import * as native from '../native';
// Types only: the broker's module (grpc-js, the protos, the metrics) loads
// after the start's first part has begun the integrity check (runBroker).
import type { Broker } from './broker';
import type { BackendKind } from './backends/backend';
import { openStartState } from './start-state';
import { discardPreparedIntegrityCheck, prepareIntegrityCheck } from './store/integrity-check';
import * as YAML from 'yaml';
import { ConfigError, loadConfig, parseHostPort, type BrokerConfig } from './config';
import { createLogger, type Logger } from './logger';
import { startPodIdentity } from './identity/pods';

export interface ServeOptions {
  runtimeDir?: string;
  stateDir?: string;
  backend?: string;
  config?: string;
  metricsAddr?: string;
  /** --audit-sync: overrides the config file's audit.sync. */
  auditSync?: 'batch' | 'strict';
  logLevel?: string;
  printConfig?: boolean;
}

/** The file's configuration with the command-line flags applied over it (flags win). */
export function effectiveConfig(options: ServeOptions): BrokerConfig {
  const config = loadConfig(options.config);
  const out: BrokerConfig = { ...config };
  if (options.metricsAddr) out.metricsAddr = options.metricsAddr;
  if (options.logLevel) out.logLevel = options.logLevel as BrokerConfig['logLevel'];
  if (options.auditSync) out.audit = { ...config.audit, sync: options.auditSync };
  return out;
}

/** The effective configuration as a YAML file `--config` accepts (sizes in bytes, durations in ms). */
export function configYaml(config: BrokerConfig, source: string | undefined): string {
  return `# effective configuration: ${source ?? 'built-in defaults'} with command-line flags applied\n${YAML.stringify(config)}`;
}

export function defaultStateDir(uid: number = process.getuid?.() ?? 0): string {
  if (process.env.SHMBROKER_STATE_DIR) return process.env.SHMBROKER_STATE_DIR;
  if (uid === 0) return '/var/lib/shmbroker';
  return path.join(process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'shmbroker');
}

/** sysexits.h EX_CONFIG: the configuration is wrong; restarting will not help. */
export const EX_CONFIG = 78;

/** Reasons that mean "fix the configuration or the filesystem", not "try again". */
const CONFIG_REASONS = new Set(['INVALID_CONFIG', 'UNSAFE_DIRECTORY', 'UNSAFE_SOCKET_PATH', 'UNSAFE_STATE_FILE', 'KMOD_UNAVAILABLE']);

/** The exit code for an error that stopped `serve`. */
export function serveExitCode(err: unknown): number {
  if (err instanceof ConfigError) return EX_CONFIG;
  const reason = (err as { reason?: unknown } | null)?.reason;
  return typeof reason === 'string' && CONFIG_REASONS.has(reason) ? EX_CONFIG : 1;
}

function configError(message: string): Error {
  return Object.assign(new Error(message), { reason: 'INVALID_CONFIG' });
}

function notify(message: string): void {
  const where = process.env.NOTIFY_SOCKET;
  if (where) native.sdNotify(where, message);
}

/** Runs the broker until SIGTERM/SIGINT; a start-up failure carries its `exitCode` (78 or 1). */
export async function serve(options: ServeOptions, runtimeDir: string): Promise<void> {
  try {
    await runBroker(options, runtimeDir);
  } catch (err) {
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { exitCode: serveExitCode(err) });
  }
}

async function runBroker(options: ServeOptions, runtimeDir: string): Promise<void> {
  // Before any file is created: the database, its -wal and -shm, the audit
  // key and anchor are born 0600 (sockets set their own mode explicitly).
  process.umask(0o077);
  const backend = options.backend ?? 'auto';
  if (backend !== 'auto' && backend !== 'kmod' && backend !== 'memfd') {
    throw configError(`--backend must be auto, kmod or memfd, got ${JSON.stringify(backend)}`);
  }
  if (options.metricsAddr !== undefined) {
    try {
      parseHostPort(options.metricsAddr);
    } catch (err) {
      throw configError(`--metrics-addr: ${(err as Error).message}`);
    }
  }
  // Its worker thread boots beside the configuration and module loading
  // (store/integrity-check.ts); the check runs once the database is open.
  if (!options.printConfig) prepareIntegrityCheck();
  const config = effectiveConfig(options);
  if (options.printConfig) {
    process.stdout.write(configYaml(config, options.config));
    return;
  }
  const log = createLogger({ level: config.logLevel });
  // Pod identity: on in a Kubernetes pod, off elsewhere (service/identity/pods).
  const podIdentity = await startPodIdentity(config.podIdentity, (level, msg, fields) => log[level](fields ?? {}, msg));
  let broker: Broker;
  try {
    // Directories, lock, database: its integrity check runs on a worker
    // thread while the rest of the broker's modules load (start-state.ts).
    const startState = await openStartState(runtimeDir, options.stateDir ?? defaultStateDir());
    let loaded: typeof import('./broker');
    try {
      loaded = require('./broker') as typeof import('./broker');
    } catch (err) {
      startState.close();
      throw err;
    }
    broker = await loaded.Broker.start({
      runtimeDir,
      stateDir: startState.stateDir,
      backend: backend as 'auto' | BackendKind,
      config, // flags already applied (effectiveConfig)
      log,
      resolvePod: podIdentity.resolvePeerSync,
      startState, // Broker.start owns it now: a failed start closes it
    });
  } catch (err) {
    await podIdentity.stop(); // its watch would keep the process alive
    throw err;
  } finally {
    discardPreparedIntegrityCheck();
  }
  notify(`READY=1\nMAINPID=${process.pid}\nSTATUS=serving`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      try {
        notify('STOPPING=1');
      } catch {
        // the service manager went away: nothing to tell
      }
      Promise.all([broker.stop(), podIdentity.stop()]).then(() => resolve(), (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      if (!stopping) reload(broker, options, log);
    });
  });
}

/** SIGHUP: the whole file is checked first; a bad file changes nothing. */
function reload(broker: Broker, options: ServeOptions, log: Logger): void {
  let next: BrokerConfig;
  try {
    next = effectiveConfig(options);
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems.map((p) => `${err.file}:${p.line}: ${p.field || '(document)'}: ${p.message}`) : [String(err)];
    log.error({ problems }, 'configuration reload refused; the running configuration stays');
    return;
  }
  const { applied, needRestart } = broker.reload(next);
  log.info({ file: options.config, applied, needRestart }, needRestart.length ? 'configuration reloaded; some changes need a restart' : 'configuration reloaded');
}
