// Broker metrics in the Prometheus text format (prom-client), served on
// `--metrics-addr HOST:PORT` at /metrics, beside the /healthz and /readyz
// probes (metrics-server.ts). docs/METRICS.md is the catalogue: every name
// here is listed there, and test/metrics-catalogue.test.ts checks both ways.
//
// Process and Node.js metrics keep their standard unprefixed names
// (process_cpu_seconds_total, process_open_fds, nodejs_heap_size_used_bytes)
// so stock dashboards and alerts find them.
//
// The broker records events (RPCs, data-plane requests, acquires, denials)
// as they happen; state that lives in the database (regions, grants, quota
// usage) is read at scrape time through the sources the broker registers
// (setRegionSource, setGrantSource, setQuotaSource), so the numbers never
// drift from the database. Each registry is private to its BrokerMetrics, so
// several brokers in one process (tests) do not collide.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { startMetricsServer, type MetricsServer, type Readiness } from './metrics-server';
import { codeName } from './errors';
import type { QuotaInfo } from './store/quota-store';

export { codeName };

export interface RegionStat {
  backend: string;
  regions: number;
  bytes: number;
}

// Seconds. The acquire path's floor is ~50 µs (clients/c/README.md: the C floor), so start low.
const DATA_PLANE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export class BrokerMetrics {
  readonly registry = new Registry();

  /** Regions by backend (from setRegionSource at scrape time, or set directly). */
  readonly regions: Gauge<'backend'>;
  /** Bytes of all regions by backend. */
  readonly regionBytes: Gauge<'backend'>;
  /** Live grants. */
  readonly grants: Gauge;
  /** Data-plane acquires by result (ALLOWED/DENIED/ERROR) and reason ('' when allowed). */
  readonly acquires: Counter<'result' | 'reason'>;
  /** Every denied decision, control or data plane, by action and reason. */
  readonly denials: Counter<'action' | 'reason'>;
  /** Control-plane RPC latency by method and status code name. */
  readonly rpcDuration: Histogram<'method' | 'code'>;
  /** Data-plane request latency by request type (acquire, release, offer). */
  readonly dataPlaneDuration: Histogram<'type'>;
  /** Open data-plane connections. */
  readonly dataConnections: Gauge;
  /** 1, labelled with what runs: version, backend, API and Node versions. */
  readonly buildInfo: Gauge<'version' | 'backend' | 'api' | 'node'>;
  /** Per-RPC outcomes in the shape of go-grpc-prometheus (grpc_server_handled_total). */
  readonly grpcHandled: Counter<'grpc_type' | 'grpc_service' | 'grpc_method' | 'grpc_code'>;
  /** Writes that failed, by store: 'audit' (the trail or its anchor) or 'state' (the database). */
  readonly writeFailures: Counter<'store'>;
  /** Quota usage and limits by subject ("uid:1001", "gid:50"); limits only where set. */
  readonly quotaUsageBytes: Gauge<'subject'>;
  readonly quotaUsageRegions: Gauge<'subject'>;
  readonly quotaLimitBytes: Gauge<'subject'>;
  readonly quotaLimitRegions: Gauge<'subject'>;

  private regionSource: (() => RegionStat[]) | undefined;
  private grantSource: (() => number) | undefined;
  private quotaSource: (() => QuotaInfo[]) | undefined;
  private connectionSource: (() => number) | undefined;
  private readonly gaugeSources = new Map<string, () => number>();

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.regions = new Gauge({
      name: 'shmbroker_regions',
      help: 'Shared-memory regions, by backend.',
      labelNames: ['backend'],
      registers,
      collect() {
        self.collectRegions();
      },
    });
    this.regionBytes = new Gauge({
      name: 'shmbroker_region_bytes',
      help: 'Total size of the regions in bytes, by backend.',
      labelNames: ['backend'],
      registers,
    });
    this.grants = new Gauge({
      name: 'shmbroker_grants',
      help: 'Grants in force.',
      registers,
      collect() {
        if (self.grantSource) this.set(self.grantSource());
      },
    });
    this.acquires = new Counter({
      name: 'shmbroker_acquires_total',
      help: 'Data-plane acquire requests, by result and reason.',
      labelNames: ['result', 'reason'],
      registers,
    });
    this.denials = new Counter({
      name: 'shmbroker_denials_total',
      help: 'Denied decisions (control and data plane), by action and reason.',
      labelNames: ['action', 'reason'],
      registers,
    });
    this.rpcDuration = new Histogram({
      name: 'shmbroker_rpc_duration_seconds',
      help: 'Control-plane RPC latency, by method and status code.',
      labelNames: ['method', 'code'],
      buckets: RPC_BUCKETS,
      registers,
    });
    this.dataPlaneDuration = new Histogram({
      name: 'shmbroker_dataplane_request_duration_seconds',
      help: 'Data-plane request latency from receipt to reply sent, by request type.',
      labelNames: ['type'],
      buckets: DATA_PLANE_BUCKETS,
      registers,
    });
    this.dataConnections = new Gauge({
      name: 'shmbroker_dataplane_connections',
      help: 'Open data-plane connections.',
      registers,
      collect() {
        if (self.connectionSource) this.set(self.connectionSource());
      },
    });
    this.buildInfo = new Gauge({
      name: 'shmbroker_build_info',
      help: 'Always 1; the labels say which build runs (version, backend, API version, Node.js version).',
      labelNames: ['version', 'backend', 'api', 'node'],
      registers,
    });
    this.grpcHandled = new Counter({
      name: 'grpc_server_handled_total',
      help: 'Control-plane RPCs completed, by type, service, method and status code (go-grpc-prometheus names).',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers,
    });
    this.writeFailures = new Counter({
      name: 'shmbroker_write_failures_total',
      help: "Failed writes by store: audit (an event or the anchor file) or state (the database); any increase needs a look.",
      labelNames: ['store'],
      registers,
    });
    for (const store of ['audit', 'state']) this.writeFailures.inc({ store }, 0); // present from the start, so rate() works
    // Gauges read at scrape time from the broker's live objects (setGaugeSource).
    for (const [name, help] of GAUGES) {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const source = self.gaugeSources.get(name);
          if (source) this.set(source());
        },
      });
    }
    this.quotaUsageBytes = new Gauge({
      name: 'shmbroker_quota_usage_bytes',
      help: 'Bytes charged against each quota subject.',
      labelNames: ['subject'],
      registers,
      collect() {
        self.collectQuotas();
      },
    });
    this.quotaUsageRegions = new Gauge({
      name: 'shmbroker_quota_usage_regions',
      help: 'Regions charged against each quota subject.',
      labelNames: ['subject'],
      registers,
    });
    this.quotaLimitBytes = new Gauge({
      name: 'shmbroker_quota_limit_bytes',
      help: 'Bytes limit of each quota subject (absent when unlimited).',
      labelNames: ['subject'],
      registers,
    });
    this.quotaLimitRegions = new Gauge({
      name: 'shmbroker_quota_limit_regions',
      help: 'Regions limit of each quota subject (absent when unlimited).',
      labelNames: ['subject'],
      registers,
    });
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Sets shmbroker_build_info's labels (once, at start). */
  setBuildInfo(info: { version: string; backend: string; api: string }): void {
    this.buildInfo.reset();
    this.buildInfo.set({ ...info, node: process.version }, 1);
  }

  /** Reads one of the GAUGES at every scrape, e.g. setGaugeSource('shmbroker_leases', () => leases.count()). */
  setGaugeSource(name: GaugeName, source: () => number): void {
    this.gaugeSources.set(name, source);
  }

  /** Counts a failed write to the audit trail or the state database. */
  recordWriteFailure(store: 'audit' | 'state'): void {
    this.writeFailures.inc({ store });
  }

  /** Reads region counts and bytes per backend at every scrape. */
  setRegionSource(source: () => RegionStat[]): void {
    this.regionSource = source;
  }

  /** Reads the live grant count at every scrape. */
  setGrantSource(source: () => number): void {
    this.grantSource = source;
  }

  /** Reads the open data-plane connection count at every scrape, e.g. `() => dataPlane.connectionCount()`. */
  setConnectionSource(source: () => number): void {
    this.connectionSource = source;
  }

  /**
   * An observer in the shape ControlServer's `observe` option takes
   * (method path, seconds, numeric status code): records rpcDuration with
   * method "BrokerService/CreateRegion" and code "OK", "RESOURCE_EXHAUSTED", ...
   */
  rpcObserver(): (method: string, seconds: number, code: number, type?: 'unary' | 'server_stream') => void {
    // One entry per (method, code, type) seen: the label children, so a call
    // does not parse its method name and hash its labels again (hot path).
    const seen = new Map<string, (seconds: number) => void>();
    return (method, seconds, code, type = 'unary') => {
      const key = `${method} ${code} ${type}`;
      let observe = seen.get(key);
      if (!observe) {
        const name = codeName(code);
        // A watch stream's duration is how long someone watched: not a latency.
        const duration = type === 'unary' ? this.rpcDuration.labels({ method: method.replace(/^\/?shmbroker\.v1\./, ''), code: name }) : undefined;
        const [service = '', rpc = ''] = method.replace(/^\//, '').split('/');
        const handled = this.grpcHandled.labels({ grpc_type: type, grpc_service: service, grpc_method: rpc, grpc_code: name });
        observe = (s: number) => {
          duration?.observe(s);
          handled.inc();
        };
        seen.set(key, observe);
      }
      observe(seconds);
    };
  }

  /** Reads quota usage at every scrape, e.g. `() => quotas.list()`. */
  setQuotaSource(source: () => QuotaInfo[]): void {
    this.quotaSource = source;
  }

  /** Records one control-plane RPC. `code` is the status name ('OK', 'RESOURCE_EXHAUSTED', ...). */
  observeRpc(method: string, code: string, seconds: number): void {
    this.rpcDuration.observe({ method, code }, seconds);
  }

  /** Records one data-plane request (type 'acquire' | 'release' | 'offer' | 'invalid'). */
  observeDataPlane(type: string, seconds: number): void {
    this.dataPlaneDuration.observe({ type }, seconds);
  }

  /** Records an acquire outcome; a DENIED one also counts as a denial. */
  recordAcquire(result: 'ALLOWED' | 'DENIED' | 'ERROR', reason = ''): void {
    this.acquires.inc({ result, reason: result === 'ALLOWED' ? '' : reason });
    if (result === 'DENIED') this.recordDenial('Acquire', reason);
  }

  /** Records a denied decision of any action (RPC name or data-plane request). */
  recordDenial(action: string, reason: string): void {
    this.denials.inc({ action, reason });
  }

  /**
   * Counts acquires and denials from the audit trail's committed events
   * ('event' is emitted only after commit): every 'Acquire' event goes to
   * acquires (and, when DENIED, to denials), every other DENIED event to
   * denials. With this wired, the broker need not call recordAcquire or
   * recordDenial itself (doing both would count twice). Returns an
   * unsubscribe function.
   */
  followAudit(trail: {
    on(event: 'event', listener: (ev: { action: string; result: string; reason?: string }) => void): unknown;
    off(event: 'event', listener: (ev: { action: string; result: string; reason?: string }) => void): unknown;
  }): () => void {
    const listener = (ev: { action: string; result: string; reason?: string }) => {
      if (ev.action === 'Acquire') this.recordAcquire(ev.result as 'ALLOWED' | 'DENIED' | 'ERROR', ev.reason ?? '');
      else if (ev.result === 'DENIED') this.recordDenial(ev.action, ev.reason ?? '');
    };
    trail.on('event', listener);
    return () => trail.off('event', listener);
  }

  /** The exposition text, as served at /metrics. */
  async scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Serves /metrics (and /healthz, /readyz) on HOST:PORT (port 0 picks one;
   * ":9464" is every interface). Resolves once listening, with the bound
   * address. Without `readiness`, /readyz answers 200 while the process runs.
   */
  async startServer(addr: string, readiness?: Readiness): Promise<MetricsServer> {
    return startMetricsServer(addr, this.registry, readiness);
  }

  private collectRegions(): void {
    if (!this.regionSource) return;
    this.regions.reset();
    this.regionBytes.reset();
    for (const s of this.regionSource()) {
      this.regions.set({ backend: s.backend }, s.regions);
      this.regionBytes.set({ backend: s.backend }, s.bytes);
    }
  }

  private collectQuotas(): void {
    if (!this.quotaSource) return;
    for (const g of [this.quotaUsageBytes, this.quotaUsageRegions, this.quotaLimitBytes, this.quotaLimitRegions]) g.reset();
    for (const q of this.quotaSource()) {
      const subject = `${q.subject.kind}:${q.subject.id}`;
      this.quotaUsageBytes.set({ subject }, q.usage.bytes);
      this.quotaUsageRegions.set({ subject }, q.usage.regions);
      if (q.limits.bytes !== undefined) this.quotaLimitBytes.set({ subject }, q.limits.bytes);
      if (q.limits.regions !== undefined) this.quotaLimitRegions.set({ subject }, q.limits.regions);
    }
  }
}

/** Gauges whose value is read from the broker at scrape time (setGaugeSource). */
const GAUGES = [
  ['shmbroker_leases', 'Leases held: regions mapped by client processes right now.'],
  ['shmbroker_regions_lost', 'Regions in state LOST: their memory did not survive a broker restart (memfd), waiting for deletion.'],
  ['shmbroker_revocations_in_flight', 'Leases notified of a revocation and still inside their grace period.'],
  ['shmbroker_audit_window_events', 'Audit events appended but not yet on disk (the open group-commit window).'],
  ['shmbroker_fd_limit', 'RLIMIT_NOFILE of the broker (soft, raised to the hard limit at start).'],
  ['shmbroker_state_free_bytes', 'Bytes free on the state filesystem (f_bavail), at most a second old.'],
  ['shmbroker_state_low_space', '1 while free state space is below dataPlane.stateLowWaterBytes: non-admin work that writes state is refused (STATE_LOW_SPACE).'],
  ['shmbroker_region_ceiling', 'Regions the backend can hold at most (memfd: one broker fd each, so the fd limit less a reserve); 0 when fds do not bound it (kmod).'],
] as const;

export type GaugeName = (typeof GAUGES)[number][0];
