import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditTrail } from './audit/audit-trail';
import { BrokerMetrics } from './metrics';
import { QuotaStore } from './store/quota-store';

function get(url: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample line, e.g. sample(text, 'shmbroker_regions{backend="memfd"}'). */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-metrics-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('BrokerMetrics', () => {
  it('serves recorded values over real HTTP in the Prometheus text format', async () => {
    const m = new BrokerMetrics({ processMetrics: true });
    const db = new BetterSqlite3(path.join(dir, 'm.db'));
    const quotas = new QuotaStore(db, {});
    quotas.set({ kind: 'uid', id: 1001 }, { bytes: 1048576, regions: 2 });
    quotas.chargeRegion('a', { uid: 1001, gids: [50] }, 524288);
    let regionCount = 3;
    m.setRegionSource(() => [
      { backend: 'memfd', regions: regionCount, bytes: 3 * 4096 },
      { backend: 'kmod', regions: 1, bytes: 2097152 },
    ]);
    m.setGrantSource(() => 7);
    m.setQuotaSource(() => quotas.list());

    m.recordAcquire('ALLOWED');
    m.recordAcquire('ALLOWED');
    m.recordAcquire('DENIED', 'NO_GRANT');
    m.recordAcquire('DENIED', 'READ_ONLY_GRANT');
    m.recordAcquire('DENIED', 'NO_GRANT');
    m.recordDenial('CreateRegion', 'QUOTA_BYTES');
    m.observeRpc('CreateRegion', 'OK', 0.003);
    m.observeRpc('CreateRegion', 'RESOURCE_EXHAUSTED', 0.0007);
    m.observeRpc('GetStatus', 'OK', 0.0001);
    m.observeRpc('GetRegion', 'NOT_FOUND', 0.0001);
    m.observeDataPlane('acquire', 0.00006);
    m.observeDataPlane('acquire', 0.0002);
    m.setConnectionSource(() => 4);
    const observe = m.rpcObserver();
    observe('/shmbroker.v1.QuotaService/UpdateQuota', 0.002, 7);
    observe('/shmbroker.v1.QuotaService/UpdateQuota', 0.002, 0);
    observe('/grpc.health.v1.Health/Check', 0.001, 99);

    const server = await m.startServer('127.0.0.1:0');
    try {
      expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
      const res = await get(`http://${server.address}/metrics`);
      expect(res.status).toBe(200);
      expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
      const t = res.body;
      expect(t).toContain('# TYPE shmbroker_acquires_total counter');
      expect(t).toContain('# HELP shmbroker_regions Shared-memory regions, by backend.');
      expect(sample(t, 'shmbroker_regions{backend="memfd"}')).toBe(3);
      expect(sample(t, 'shmbroker_regions{backend="kmod"}')).toBe(1);
      expect(sample(t, 'shmbroker_region_bytes{backend="kmod"}')).toBe(2097152);
      expect(sample(t, 'shmbroker_grants')).toBe(7);
      expect(sample(t, 'shmbroker_acquires_total{result="ALLOWED",reason=""}')).toBe(2);
      expect(sample(t, 'shmbroker_acquires_total{result="DENIED",reason="NO_GRANT"}')).toBe(2);
      expect(sample(t, 'shmbroker_acquires_total{result="DENIED",reason="READ_ONLY_GRANT"}')).toBe(1);
      expect(sample(t, 'shmbroker_denials_total{action="Acquire",reason="NO_GRANT"}')).toBe(2);
      expect(sample(t, 'shmbroker_denials_total{action="CreateRegion",reason="QUOTA_BYTES"}')).toBe(1);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_count{method="CreateRegion",code="OK"}')).toBe(1);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_bucket{le="0.001",method="CreateRegion",code="RESOURCE_EXHAUSTED"}')).toBe(1);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_bucket{le="0.0025",method="CreateRegion",code="OK"}')).toBe(0);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_count{method="GetStatus",code="OK"}')).toBe(1);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_count{method="GetRegion",code="NOT_FOUND"}')).toBe(1);
      expect(sample(t, 'shmbroker_dataplane_request_duration_seconds_bucket{le="0.0001",type="acquire"}')).toBe(1);
      expect(sample(t, 'shmbroker_dataplane_request_duration_seconds_count{type="acquire"}')).toBe(2);
      expect(sample(t, 'shmbroker_dataplane_request_duration_seconds_sum{type="acquire"}')).toBeCloseTo(0.00026, 8);
      expect(sample(t, 'shmbroker_dataplane_connections')).toBe(4);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_count{method="QuotaService/UpdateQuota",code="PERMISSION_DENIED"}')).toBe(1);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_count{method="QuotaService/UpdateQuota",code="OK"}')).toBe(1);
      expect(sample(t, 'shmbroker_rpc_duration_seconds_count{method="/grpc.health.v1.Health/Check",code="CODE_99"}')).toBe(1);
      expect(sample(t, 'shmbroker_quota_usage_bytes{subject="uid:1001"}')).toBe(524288);
      expect(sample(t, 'shmbroker_quota_usage_regions{subject="uid:1001"}')).toBe(1);
      expect(sample(t, 'shmbroker_quota_limit_bytes{subject="uid:1001"}')).toBe(1048576);
      expect(sample(t, 'shmbroker_quota_limit_regions{subject="uid:1001"}')).toBe(2);
      expect(sample(t, 'shmbroker_quota_usage_bytes{subject="gid:50"}')).toBe(524288);
      expect(sample(t, 'shmbroker_quota_limit_bytes{subject="gid:50"}')).toBeUndefined(); // unlimited

      // Per-RPC counters in the go-grpc-prometheus shape.
      expect(sample(t, 'grpc_server_handled_total{grpc_type="unary",grpc_service="shmbroker.v1.QuotaService",grpc_method="UpdateQuota",grpc_code="PERMISSION_DENIED"}')).toBe(1);
      expect(sample(t, 'grpc_server_handled_total{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="CODE_99"}')).toBe(1);
      // Open fds: the standard unprefixed process_open_fds (no shmbroker_ duplicate), following new fds.
      expect(t).not.toMatch(/^shmbroker_(open_fds|process_|nodejs_)/m);
      const before = sample(t, 'process_open_fds')!;
      expect(before).toBeGreaterThan(3);
      const fds = Array.from({ length: 10 }, () => fs.openSync('/dev/null', 'r'));
      // Values are read at scrape time: a change in the sources shows at once.
      regionCount = 9;
      quotas.refundRegion('a');
      const t2 = (await get(`http://${server.address}/metrics`)).body;
      for (const fd of fds) fs.closeSync(fd);
      expect(sample(t2, 'process_open_fds')! - before).toBeGreaterThanOrEqual(10);
      expect(sample(t2, 'process_open_fds')! - before).toBeLessThan(14);
      expect(sample(t2, 'shmbroker_regions{backend="memfd"}')).toBe(9);
      expect(sample(t2, 'shmbroker_quota_usage_bytes{subject="uid:1001"}')).toBe(0);
      expect(sample(t2, 'shmbroker_quota_usage_bytes{subject="gid:50"}')).toBeUndefined(); // no usage, no limit: gone

      expect((await get(`http://${server.address}/`)).status).toBe(404);
      expect((await get(`http://${server.address}/metrics/x`)).status).toBe(404);
      expect((await get(`http://${server.address}/metrics`, 'POST')).status).toBe(404);
      const head = await get(`http://${server.address}/metrics?x=1`, 'HEAD');
      expect(head.status).toBe(200);
      expect(head.body).toBe('');
    } finally {
      await server.close();
      db.close();
    }
    await expect(get(`http://${server.address}/metrics`)).rejects.toThrow();
  });

  it('counts acquires and denials from committed audit events', async () => {
    const db = new BetterSqlite3(path.join(dir, 'follow.db'));
    try {
      const trail = new AuditTrail(db);
      const m = new BrokerMetrics();
      const stop = m.followAudit(trail);
      const actor = { pid: 1, uid: 1001, gid: 1001 };
      db.transaction(() => {
        trail.append({ actor, action: 'Acquire', resource: 'regions/a', result: 'ALLOWED' });
        trail.append({ actor, action: 'Acquire', resource: 'regions/a', result: 'DENIED', reason: 'NO_GRANT' });
        trail.append({ actor, action: 'CreateRegion', resource: 'regions/c', result: 'DENIED', reason: 'QUOTA_BYTES' });
        trail.append({ actor, action: 'CreateRegion', resource: 'regions/d', result: 'ALLOWED' });
      })();
      try {
        db.transaction(() => {
          trail.append({ actor, action: 'Acquire', resource: 'regions/a', result: 'DENIED', reason: 'ROLLED_BACK' });
          throw new Error('rollback');
        })();
      } catch {
        // never committed, never counted
      }
      trail.flushCommitted();
      stop();
      db.transaction(() => trail.append({ actor, action: 'Acquire', resource: 'regions/a', result: 'ALLOWED' }))();
      trail.flushCommitted();
      const t = await m.scrape();
      expect(sample(t, 'shmbroker_acquires_total{result="ALLOWED",reason=""}')).toBe(1);
      expect(sample(t, 'shmbroker_acquires_total{result="DENIED",reason="NO_GRANT"}')).toBe(1);
      expect(sample(t, 'shmbroker_denials_total{action="Acquire",reason="NO_GRANT"}')).toBe(1);
      expect(sample(t, 'shmbroker_denials_total{action="CreateRegion",reason="QUOTA_BYTES"}')).toBe(1);
      expect(t).not.toContain('ROLLED_BACK');
    } finally {
      db.close();
    }
  });

  it('two instances do not share a registry; a taken port rejects', async () => {
    const a = new BrokerMetrics();
    const b = new BrokerMetrics({ processMetrics: true });
    a.recordAcquire('ALLOWED');
    expect(await b.scrape()).not.toMatch(/shmbroker_acquires_total\{result="ALLOWED"/);
    expect(await b.scrape()).toContain('\nprocess_cpu_seconds_total ');
    expect(await b.scrape()).toContain('\nnodejs_heap_size_used_bytes ');
    const s = await a.startServer('127.0.0.1:0');
    try {
      await expect(b.startServer(s.address)).rejects.toThrow(/EADDRINUSE/);
      await expect(b.startServer('nonsense')).rejects.toThrow(/HOST:PORT/);
    } finally {
      await s.close();
    }
  });

  it('listens on IPv6 loopback', async () => {
    const m = new BrokerMetrics();
    let s;
    try {
      s = await m.startServer('[::1]:0');
    } catch {
      return; // no IPv6 on this host
    }
    try {
      expect(s.address).toMatch(/^\[::1\]:\d+$/);
      expect((await get(`http://${s.address}/metrics`)).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
