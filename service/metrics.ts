// Broker metrics in the Prometheus text format (prom-client), served on
// `--metrics-addr HOST:PORT` at /metrics (everything else is 404).
//
// The broker records events (RPCs, data-plane requests, acquires, denials)
// as they happen; state that lives in the database (regions, grants, quota
// usage) is read at scrape time through the sources the broker registers
// (setRegionSource, setGrantSource, setQuotaSource), so the numbers never
// drift from the database. Each registry is private to its BrokerMetrics, so
// several brokers in one process (tests) do not collide.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as fs from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { parseHostPort } from './config';
import { codeName } from './errors';
import type { QuotaInfo } from './store/quota-store';

export { codeName };

export interface RegionStat {
  backend: string;
  regions: number;
  bytes: number;
}

// Seconds. The acquire path's floor is ~50 µs (DESIGN.md), so start low.
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
  /** Open file descriptors of the broker process (/proc/self/fd). */
  readonly openFds: Gauge;
  /** Quota usage and limits by subject ("uid:1001", "gid:50"); limits only where set. */
  readonly quotaUsageBytes: Gauge<'subject'>;
  readonly quotaUsageRegions: Gauge<'subject'>;
  readonly quotaLimitBytes: Gauge<'subject'>;
  readonly quotaLimitRegions: Gauge<'subject'>;

  private regionSource: (() => RegionStat[]) | undefined;
  private grantSource: (() => number) | undefined;
  private quotaSource: (() => QuotaInfo[]) | undefined;
  private connectionSource: (() => number) | undefined;

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
    this.openFds = new Gauge({
      name: 'shmbroker_open_fds',
      help: 'Open file descriptors of the broker process.',
      registers,
      collect() {
        const n = countOpenFds();
        if (n !== undefined) this.set(n);
      },
    });
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
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'shmbroker_' });
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
  rpcObserver(): (method: string, seconds: number, code: number) => void {
    return (method, seconds, code) => this.observeRpc(method.replace(/^\/?shmbroker\.v1\./, ''), codeName(code), seconds);
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
   * Serves /metrics on HOST:PORT (port 0 picks one; ":9464" is every
   * interface). Resolves once listening, with the bound address.
   */
  async startServer(addr: string): Promise<{ close(): Promise<void>; address: string }> {
    const { host, port } = parseHostPort(addr);
    const server = http.createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      if (url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
        return;
      }
      this.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': this.registry.contentType });
          res.end(req.method === 'HEAD' ? undefined : text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics collection failed: ${String(err)}\n`);
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host || undefined, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as AddressInfo;
    const address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    return {
      address,
      close: () =>
        new Promise<void>((resolve, reject) => {
          server.close((err) => (err ? reject(err) : resolve()));
          server.closeAllConnections();
        }),
    };
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

function countOpenFds(): number | undefined {
  try {
    return fs.readdirSync('/proc/self/fd').length - 1; // minus the directory handle readdir itself holds
  } catch {
    return undefined;
  }
}
