// Pod identity: who a local peer is on Kubernetes (namespace, service
// account), from its pid. See resolver.ts for the trust argument and
// deploy/README.md for the deployment requirements (hostPID, RBAC, NODE_NAME).
//
// Integration (broker side):
//   const pi = await startPodIdentity(config.podIdentity, log);
//   ... on each accepted Unix connection, after SO_PEERCRED:
//   const pod = await pi.resolvePeer(cred.pid);   // undefined => uid/gid rights only
//   principalsOf(cred, pod) -> the subjects grants/quotas are matched against;
//   put pod (namespace, name, serviceAccount) on the caller and in audit events.
//   ... on shutdown: await pi.stop();

export * from './cgroup-path';
export * from './pods-api';
export * from './resolver';
export * from './principals';

import { inClusterConfig, PodWatcher, type LogFn, type PodsApiConfig } from './pods-api';
import { PodIdentityResolver, resolveNothing, resolveNothingSync, type ResolvePeer, type ResolvePeerSync } from './resolver';

/** The `podIdentity` block of the broker configuration (service/config.ts). */
export interface PodIdentityConfig {
  /**
   * true, false, or 'auto' (default): on when running in a Kubernetes pod
   * (KUBERNETES_SERVICE_HOST set) with a node name, off otherwise.
   */
  enabled?: boolean | 'auto';
  /** This node's name; default: the NODE_NAME environment variable (downward API spec.nodeName). */
  nodeName?: string;
  /** API server base URL; default: in-cluster (KUBERNETES_SERVICE_HOST/PORT + service account). */
  apiServer?: string;
  /** Bearer token file / CA file when apiServer is set; default the service account's. */
  tokenFile?: string;
  caFile?: string;
  /** How long a connection waits for a just-started pod to reach the cache. Default 1000. */
  missWaitMs?: number;
  /** How long start waits for the first LIST before serving anyway (uid rights until synced). Default 5000. */
  syncTimeoutMs?: number;
}

export interface PodIdentityService {
  enabled: boolean;
  resolvePeer: ResolvePeer;
  /** No wait for a pod the cache has not seen yet; for a synchronous identify step. */
  resolvePeerSync: ResolvePeerSync;
  watcher?: PodWatcher;
  stop(): Promise<void>;
}

/**
 * Start pod identity from configuration. Never throws for a missing cluster:
 * logs why and returns a disabled service whose resolvePeer always gives
 * undefined (uid/gid rights only), so the broker starts either way.
 */
export async function startPodIdentity(
  cfg: PodIdentityConfig | undefined,
  log: LogFn = () => {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<PodIdentityService> {
  const disabled = (why: string, level: 'debug' | 'info' = 'info'): PodIdentityService => {
    log(level, `pod identity disabled: ${why}`);
    return { enabled: false, resolvePeer: resolveNothing, resolvePeerSync: resolveNothingSync, stop: async () => {} };
  };
  const c: PodIdentityConfig = cfg ?? {};
  // Until the configuration file has a podIdentity block, SHMBROKER_POD_IDENTITY
  // (on | off | auto) is the switch; a configured `enabled` wins.
  const fromEnv = env['SHMBROKER_POD_IDENTITY'];
  const envMode = fromEnv === 'on' ? true : fromEnv === 'off' ? false : fromEnv === 'auto' ? 'auto' : undefined;
  if (fromEnv !== undefined && envMode === undefined) log('warn', `SHMBROKER_POD_IDENTITY=${fromEnv} is not on, off or auto; using auto`);
  const mode = c.enabled ?? envMode ?? 'auto';
  if (mode === false) return disabled('switched off (podIdentity.enabled or SHMBROKER_POD_IDENTITY=off)');
  if (mode === 'auto' && !c.apiServer && !env['KUBERNETES_SERVICE_HOST']) return disabled('not running in a Kubernetes pod', 'debug');
  const nodeName = c.nodeName ?? env['NODE_NAME'];
  if (!nodeName) {
    const why = 'no node name (set podIdentity.nodeName, or NODE_NAME from the downward API spec.nodeName)';
    if (mode === true) log('warn', `pod identity requested but ${why}`);
    return disabled(why);
  }
  // From here on, failing to start pod identity is logged loudly: it was asked for.
  let api: PodsApiConfig;
  try {
    if (c.apiServer) {
      api = { baseUrl: c.apiServer };
      if (c.tokenFile) api.tokenFile = c.tokenFile;
      if (c.caFile) api.caFile = c.caFile;
    } else {
      api = inClusterConfig(env);
    }
  } catch (e) {
    log('warn', `pod identity cannot start: ${(e as Error).message}`);
    return disabled((e as Error).message);
  }
  const watcher = new PodWatcher({ api, nodeName, log });
  watcher.start();
  const synced = await watcher.waitForSync(c.syncTimeoutMs ?? 5000);
  if (!synced) log('warn', 'pods API not synced yet; peers get uid/gid rights until it is', { nodeName });
  const resolver = new PodIdentityResolver({
    pods: watcher,
    missWaitMs: c.missWaitMs ?? 1000,
    onUnresolved: (pid, reason) => log('debug', 'peer without pod identity', { pid, reason }),
  });
  return {
    enabled: true,
    resolvePeer: resolver.resolvePeer,
    resolvePeerSync: resolver.resolvePeerSync,
    watcher,
    stop: () => watcher.stop(),
  };
}
