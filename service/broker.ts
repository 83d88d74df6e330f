// The broker: opens its state, picks its backend, re-adopts what survived,
// and serves the control plane (broker.sock) and the data plane (data.sock).
//
// Why this file is over ~400 lines: Broker.open is the one start-up sequence, in
// order, each step pushing its undo on the same list so a failure part-way
// unwinds exactly what was done; cutting it across files would make that order
// (docs/ARCHITECTURE.md, "Entry points") a back-and-forth read. Everything with
// a rule of its own already lives in its layer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../native';
import { loadShmbrokerGrpc } from '../proto/load';
import { controlSocketPath, dataSocketPath } from '../proto/wire';
import type { GetStatusResponse } from '../proto/generated/shmbroker/v1/GetStatusResponse';
import { brokerStatus } from './broker-status';
import { AuditTrail, loadOrCreateAuditKey, startAuditRetention } from './audit/audit-trail';
import { Auditor, brokerActor } from './audit/audited-operation';
import { auditServiceHandlers } from './rpc/audit-rpc';
import { quotaServiceHandlers } from './rpc/quota-rpc';
import type { Backend, BackendKind } from './backends/backend';
import { brokerServiceHandlers } from './rpc/broker-service';
import { watchRegionsHandler } from './rpc/watch-rpc';
import { RegionWatch } from './regions/region-watch';
import type { Caller } from './identity/caller';
import type { BrokerConfig } from './config';
import { ControlServer } from './rpc/control-server';
import { DataPlane } from './dataplane/data-plane';
import { FailedPreconditionError } from './errors';
import { GrantStore } from './store/grant-store';
import { KMOD_DEVICE, KmodBackend } from './backends/kmod-backend';
import { BrokerMetrics } from './metrics';
import { LeaseStore } from './leases/lease-store';
import { LeaseService } from './leases/lease-service';
import { intervalLog, type Logger } from './logger';
import { MemfdBackend } from './backends/memfd-backend';
import { Policy } from './regions/policy';
import { QuotaStore } from './store/quota-store';
import { RegionManager } from './regions/region-manager';
import { GrantManager } from './regions/grant-manager';
import { RegionAccess } from './regions/region-access';
import { RegionStore } from './store/region-store';
import { Revoker } from './leases/revoker';
import { removeStaleSocket } from './secure-dirs';
import { onCommit, type Db } from './store/state-db';
import { openStartState, type StartState } from './start-state';
import { WalCheckpointer } from './store/wal-checkpointer';
import { CommitBatch } from './store/commit-batch';
import { onWriteFailure } from './write-failures';
import { privatizeStateFiles, type StateLock } from './store/state-dir';
import { StateSpace } from './store/state-space';
import { RefusalAggregator } from './audit/refusal-aggregator';
import { logAuditEvents } from './audit/audit-log';
import { planReload, RESTART_KEYS, type ReloadResult } from './reload';

export const VERSION = '0.1.0';

export interface BrokerOptions {
  runtimeDir: string;
  stateDir: string;
  backend: 'auto' | BackendKind;
  config: BrokerConfig;
  log: Logger;
  /**
   * Kubernetes pod of a peer, from its pid (service/identity/pods: resolvePeerSync).
   * Called once per accepted connection; undefined = uid/gid identity only.
   */
  resolvePod?: (pid: number) => Caller['pod'] | undefined;
  /**
   * The start's first part, already done (service/start-state.ts: `serve`
   * runs it before loading the rest of the broker). Broker.start owns it from
   * then on: a failed start closes it.
   */
  startState?: StartState;
}

export { controlSocketPath, dataSocketPath };

function selectBackend(kind: BrokerOptions['backend'], log: Logger): Backend {
  if (kind === 'memfd') return new MemfdBackend();
  if (kind === 'kmod' || fs.existsSync(KMOD_DEVICE)) {
    try {
      return new KmodBackend(log);
    } catch (err) {
      // Another broker owns the module: never fall back to memfd beside it.
      if (err instanceof FailedPreconditionError && err.reason === 'ALREADY_RUNNING') throw err;
      if (kind === 'kmod') {
        throw new FailedPreconditionError('KMOD_UNAVAILABLE', `--backend kmod: cannot open ${KMOD_DEVICE}: ${(err as Error).message} (is shmbroker.ko loaded?)`);
      }
      log.warn({ err: (err as Error).message }, `${KMOD_DEVICE} exists but cannot be opened; using the memfd backend`);
    }
  }
  return new MemfdBackend();
}

export class Broker {
  private readonly startedAt = Date.now();

  private constructor(
    readonly options: BrokerOptions,
    readonly db: Db,
    readonly backend: Backend,
    readonly audit: AuditTrail,
    readonly quotas: QuotaStore,
    readonly regions: RegionStore,
    readonly grants: GrantStore,
    readonly manager: RegionManager,
    readonly revoker: Revoker,
    readonly dataPlane: DataPlane,
    readonly control: ControlServer,
    readonly metrics: BrokerMetrics,
    readonly leases: LeaseService,
  ) {}

  private metricsServer: { close(): Promise<void>; address: string } | undefined;
  private stopRetention: (() => void) | undefined;
  private stopCountingFailures: (() => void) | undefined;
  private stateLock: StateLock | undefined;
  private checkpointer: WalCheckpointer | undefined;
  private stateSpace: StateSpace | undefined;
  private controlRefusals: RefusalAggregator | undefined;
  private running!: BrokerConfig;
  private applyLive!: (next: BrokerConfig) => void;

  private startRetention(days: number): () => void {
    const log = this.options.log;
    return startAuditRetention(this.audit, days, {
      onPruned: (count) => log.info({ count }, 'audit events past retention pruned (a signed checkpoint keeps the chain verifiable)'),
      onError: (err) => log.error({ err }, 'audit retention failed'),
    });
  }

  /** The configuration in force (after the last reload). */
  get config(): BrokerConfig {
    return this.running;
  }

  /**
   * Takes a new, fully checked configuration (SIGHUP): applies the keys
   * reload.ts lists as reloadable, reports the ones that need a restart and
   * keeps their running values.
   */
  reload(next: BrokerConfig): ReloadResult {
    const plan = planReload(this.running, next);
    const merged = { ...next } as BrokerConfig & Record<string, unknown>;
    for (const k of RESTART_KEYS) {
      if (this.running[k] === undefined) delete merged[k];
      else merged[k] = this.running[k] as never;
    }
    this.applyLive(merged);
    this.running = merged;
    return plan;
  }

  /**
   * All or nothing: if any step fails, everything opened so far is closed
   * again (listeners, sockets, database, backend, state lock) and the error
   * is thrown, so a broker either serves everything or is not running.
   */
  static async start(options: BrokerOptions): Promise<Broker> {
    const undo: Array<() => unknown> = [];
    const started: { checked?: Promise<void> } = {};
    try {
      return await Broker.open(options, undo, started);
    } catch (failure) {
      let err = failure;
      // A corrupt database can fail the start before its integrity check
      // (which runs beside it) answered: the check's verdict is the reason.
      // Awaited before the database is closed below.
      await started.checked?.catch((bad: unknown) => {
        err = bad;
      });
      for (const step of undo.reverse()) {
        try {
          await step();
        } catch {
          // already failing: report the first error, not the clean-up's
        }
      }
      throw err;
    }
  }

  private static async open(options: BrokerOptions, undo: Array<() => unknown>, started: { checked?: Promise<void> }): Promise<Broker> {
    const { log, config } = options;
    // Directories, state lock, no live broker, the database with its
    // integrity check running on a worker thread while the start reads what
    // it needs; nothing is written before it passed (store/state-db.ts).
    const state = options.startState ?? (await openStartState(options.runtimeDir, options.stateDir));
    undo.push(() => state.close());
    const { runtimeDir, stateDir, stateLock, controlPath, dataPath, db, checked } = state;
    started.checked = checked;
    // WAL checkpoints on a worker thread, not inside a commit on the event loop (store/wal-checkpointer.ts).
    const checkpointer = new WalCheckpointer(db.name, {
      onFailure: (err) => log.warn({ err: err.message }, 'WAL checkpoint worker stopped; the broker checkpoints inline again'),
    });
    onCommit(db, () => checkpointer.poke());
    undo.push(() => {
      onCommit(db, undefined);
      checkpointer.close();
    });
    const backend = selectBackend(options.backend, log);
    undo.push(() => backend.close());
    const regions = new RegionStore(db);
    const grants = new GrantStore(db);
    // Every region on record (the longest read of a restart), read while the check runs.
    const onRecord = regions.all();
    // The service definitions (~35 ms of proto parsing) need no state either.
    const pkg = loadShmbrokerGrpc();
    await checked;
    const quotas = new QuotaStore(db, config.defaultQuota, { maxGrantsPerRegion: config.maxGrantsPerRegion });
    const audit = new AuditTrail(db, {
      key: loadOrCreateAuditKey(path.join(stateDir, 'audit.key')),
      // Outside the database: catches a database wiped or rolled back to an older copy.
      anchorFile: path.join(stateDir, 'audit.anchor'),
      groupCommit: config.audit,
    });
    undo.push(() => audit.close());
    const madePrivate = privatizeStateFiles(stateDir);
    if (madePrivate.length > 0) log.warn({ files: madePrivate }, 'state files were readable by others; made 0600');
    // One line per interval while commits keep failing (retried every 100 ms), not one per retry.
    const commitErrors = intervalLog(config.dataPlane.refusalAuditIntervalSeconds * 1000);
    audit.on('commitError', (err: Error) =>
      commitErrors((failures) => log.error({ err: err.message, failures }, 'audit group commit failed; retrying (data-plane acquires are refused until it succeeds)')),
    );
    // Lease endings are audited write-behind, like the rest of the data plane (issue 19).
    const leases = new LeaseService({
      store: new LeaseStore(db),
      backend,
      auditor: new Auditor({ db, audit, writeBehind: true }),
      log,
      windowMs: audit.windowMs,
      failureLogIntervalMs: config.dataPlane.refusalAuditIntervalSeconds * 1000,
    });
    undo.push(() => leases.close());
    if (audit.anchorProblem) log.error({ problem: audit.anchorProblem }, 'AUDIT TRAIL DOES NOT MATCH ITS ANCHOR: the state database was replaced or rolled back');
    // Live copies the running components read at each use: reload() updates them in place.
    const live = {
      policy: { ...config },
      limits: { minBytes: config.regionSize.min, maxBytes: config.regionSize.max, maxGrantsPerRegion: config.maxGrantsPerRegion },
      dataPlane: { ...config.dataPlane },
    };
    const policy = new Policy(live.policy);
    const identify = (cred: native.PeerCred): Caller => {
      const caller: Caller = { ...cred, isAdmin: policy.isAdmin(cred) };
      const pod = options.resolvePod?.(cred.pid);
      if (pod) caller.pod = { namespace: pod.namespace, name: pod.name, serviceAccount: pod.serviceAccount };
      return caller;
    };
    const metrics = new BrokerMetrics({ processMetrics: true });
    // Control-plane changes arriving in one turn share one commit (store/commit-batch.ts).
    const commitBatch = new CommitBatch(db);
    const auditor = new Auditor({ db, audit, batch: commitBatch });

    // Re-adopt what survived; what did not is marked LOST, never silently recreated.
    const { lost, adopted } = backend.adopt(onRecord);
    auditor.record((append) => {
      // States from the records read at start, not a SELECT per region (a
      // restart with ~16,000 memfd regions gone spent 42 ms here).
      const stateOf = new Map(onRecord.map((r) => [r.name, r.state]));
      for (const name of lost) {
        if (stateOf.get(name) !== 'LOST') regions.setState(name, 'LOST');
      }
      append({
        actor: brokerActor(),
        action: 'BrokerStart',
        resource: 'broker',
        result: 'ALLOWED',
        details: { backend: backend.kind, adopted: adopted.length, lost: lost.length, version: VERSION },
      });
    });
    if (lost.length > 0) log.warn({ lost }, 'regions whose memory did not survive the restart are marked LOST');

    const revokerDeps = { leases, graceMs: config.revocationGraceMs, log, enforced: backend.guarantees.revocationEnforced };
    const revoker = new Revoker(revokerDeps);
    undo.push(() => revoker.close());
    const core = { db, regions, grants, leases, backend, policy, audit, auditor, revoker, log };
    const watch = new RegionWatch();
    // One view of the state filesystem's free space for both planes, status and metrics (issue 16 item 2).
    const stateSpace = new StateSpace(stateDir, config.dataPlane.stateLowWaterBytes);
    const access = new RegionAccess({ ...core, stateSpace });
    const manager = new RegionManager({ ...core, access, watch, quotas, limits: live.limits });
    const grantManager = new GrantManager({ ...core, access, watch, quotas, limits: live.limits });
    const dataPlane = new DataPlane({
      ...core,
      limits: live.dataPlane,
      stateSpace,
      identify,
      observe: (type, seconds) => metrics.observeDataPlane(type, seconds),
    });
    revoker.setNotifier(dataPlane);
    // The last lease of a DELETING region takes its memory, charge and row with it (issue 16 item 4).
    leases.onRegionFreed((name) => manager.finishDeletion(name));
    const endedLeases = leases.endLeasesOfExitedHolders(brokerActor());
    if (endedLeases > 0) log.info({ leases: endedLeases }, 'ended the leases of processes that exited while the broker was down');
    const finished = manager.finishPendingDeletions();
    if (finished > 0) log.info({ regions: finished }, 'finished deleting regions whose holders are gone');
    revoker.setExpiryHandler(async () => {
      await grantManager.expireGrants();
      revoker.scheduleExpiry(grants.nextExpiry());
    });

    // Strict audit mode: every reply waits for its audit event on disk. Quota
    // settings (typed by a person) always do: they must survive power loss,
    // and the group commit's sync is what puts them on disk.
    const typedSettings = new Set(['/shmbroker.v1.QuotaService/UpdateQuota', '/shmbroker.v1.QuotaService/DeleteQuota']);
    const settle = (rpc: string): Promise<void> | undefined =>
      audit.sync === 'strict' || typedSettings.has(rpc) ? audit.whenDurable() : undefined;
    const controlAuditErrors = intervalLog(config.dataPlane.refusalAuditIntervalSeconds * 1000);
    // Control-plane refusals no handler audited (see ControlServer's onRefusal), aggregated like the data plane's.
    const controlRefusals = new RefusalAggregator((r, count) => {
      try {
        audit.append({ actor: r.actor, action: r.action, resource: r.resource, result: 'DENIED', reason: r.reason, ...(count ? { details: { aggregated: true, ...count } } : {}) });
      } catch (err) {
        controlAuditErrors((failures) => log.error({ err: (err as Error).message, action: r.action, failures }, 'audit write failed'));
      }
    }, config.dataPlane.refusalAuditIntervalSeconds * 1000);
    undo.push(() => controlRefusals.close());
    const control = new ControlServer({
      log,
      identify,
      observe: metrics.rpcObserver(),
      settle,
      onRefusal: (caller, action, resource, reason) => controlRefusals.refuse({ actor: caller, action, resource, reason }),
      groupCommit: {
        paths: new Set(['CreateRegion', 'CreateGrant', 'DeleteRegion', 'RevokeGrant'].map((m) => `/shmbroker.v1.BrokerService/${m}`)),
        run: (fn) => commitBatch.run(fn),
      },
    });
    metrics.setRegionSource(() => {
      const t = regions.totals();
      return [{ backend: backend.kind, regions: t.count, bytes: t.bytes }];
    });
    metrics.setGrantSource(() => grants.count());
    metrics.setConnectionSource(() => dataPlane.connectionCount());
    metrics.setGaugeSource('shmbroker_fd_limit', () => native.nofileLimit().soft);
    metrics.setGaugeSource('shmbroker_region_ceiling', () => backend.regionCeiling()?.regions ?? 0);
    metrics.setQuotaSource(() => quotas.list());
    metrics.followAudit(audit);
    const stopAuditLog = logAuditEvents(audit, log);
    metrics.setBuildInfo({ version: VERSION, backend: backend.kind, api: 'shmbroker.v1' });
    metrics.setGaugeSource('shmbroker_leases', () => leases.all().length);
    metrics.setGaugeSource('shmbroker_state_free_bytes', () => stateSpace.free());
    metrics.setGaugeSource('shmbroker_state_low_space', () => (stateSpace.low() ? 1 : 0));
    metrics.setGaugeSource('shmbroker_regions_lost', () => regions.all().filter((r) => r.state === 'LOST').length);
    metrics.setGaugeSource('shmbroker_revocations_in_flight', () => revoker.inFlight);
    metrics.setGaugeSource('shmbroker_audit_window_events', () => audit.windowDepth);
    const stopCountingFailures = onWriteFailure((store) => metrics.recordWriteFailure(store));
    undo.push(() => stopCountingFailures());
    audit.on('anchorError', (err: unknown) => {
      metrics.recordWriteFailure('audit');
      log.error({ err }, 'audit anchor write failed');
    });
    const broker = new Broker(options, db, backend, audit, quotas, regions, grants, manager, revoker, dataPlane, control, metrics, leases);
    broker.checkpointer = checkpointer;
    broker.stateLock = stateLock;
    broker.stateSpace = stateSpace;
    broker.controlRefusals = controlRefusals;
    broker.running = config;
    broker.applyLive = (next: BrokerConfig) => {
      Object.assign(live.policy, next);
      Object.assign(live.limits, { minBytes: next.regionSize.min, maxBytes: next.regionSize.max, maxGrantsPerRegion: next.maxGrantsPerRegion });
      Object.assign(live.dataPlane, next.dataPlane);
      revokerDeps.graceMs = next.revocationGraceMs;
      quotas.setDefaults(next.defaultQuota, { maxGrantsPerRegion: next.maxGrantsPerRegion });
      if (next.logLevel !== undefined) log.level = next.logLevel;
      broker.stopRetention?.();
      broker.stopRetention = next.auditRetentionDays ? broker.startRetention(next.auditRetentionDays) : undefined;
    };
    broker.stopCountingFailures = () => {
      stopCountingFailures();
      stopAuditLog();
    };
    control.addService(pkg.BrokerService.service, {
      ...brokerServiceHandlers({ regions: manager, grants: grantManager }, (caller) => broker.status(caller)),
      watchRegions: watchRegionsHandler({ regions: manager, grants: grantManager, access }, watch),
    });
    control.addService(pkg.QuotaService.service, quotaServiceHandlers({ quotas, auditor }));
    control.addService(pkg.AuditService.service, auditServiceHandlers({ audit, auditor }));

    // Both socket paths are checked before either is bound: a refusal (a
    // planted file or symlink) must not leave a listener keeping the process alive.
    removeStaleSocket(dataPath);
    removeStaleSocket(controlPath);
    dataPlane.listen(dataPath);
    undo.push(() => {
      dataPlane.close();
      removeStaleSocket(dataPath);
    });
    await control.listen(controlPath);
    undo.push(async () => {
      await control.close();
      removeStaleSocket(controlPath);
    });
    revoker.scheduleExpiry(grants.nextExpiry());
    if (config.auditRetentionDays) {
      broker.stopRetention = broker.startRetention(config.auditRetentionDays);
      undo.push(() => broker.stopRetention?.());
    }
    if (config.metricsAddr) {
      broker.metricsServer = await metrics.startServer(config.metricsAddr, () => control.isServing());
      log.info({ address: broker.metricsServer.address }, 'metrics served at /metrics (probes at /healthz, /readyz)');
    }
    log.info({ version: VERSION, runtimeDir, stateDir, backend: backend.kind, regions: adopted.length, lost: lost.length }, 'broker serving');
    return broker;
  }

  status(caller: Caller): GetStatusResponse {
    return brokerStatus({ version: VERSION, regions: this.regions, grants: this.grants, backend: this.backend, dataPlane: this.dataPlane, stateSpace: this.stateSpace, startedAt: this.startedAt }, caller);
  }

  async stop(): Promise<void> {
    this.revoker.close();
    this.stopCountingFailures?.();
    await this.metricsServer?.close();
    await this.control.close();
    this.controlRefusals?.close();
    this.dataPlane.close();
    for (const p of [controlSocketPath(this.options.runtimeDir), dataSocketPath(this.options.runtimeDir)]) {
      try {
        removeStaleSocket(p);
      } catch {
        // not ours any more
      }
    }
    this.stopRetention?.();
    this.backend.close();
    this.leases.close();
    this.audit.close();
    onCommit(this.db, undefined);
    this.checkpointer?.close();
    this.db.close();
    this.stateLock?.release();
    this.options.log.info('broker stopped');
  }
}
