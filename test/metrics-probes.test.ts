// Metrics scraped from a real broker and checked by name against the
// catalogue in docs/METRICS.md (both ways), the gauges an alert needs moving
// with real clients and a real restart, and the /healthz and /readyz probes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsServer } from '../service/metrics-server';
import { BrokerProcess, NodeChild, REPO } from './support/broker-process';

const PKG = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
const CATALOGUE = fs.readFileSync(path.join(REPO, 'docs/METRICS.md'), 'utf8');

const HOLDER = `
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
(async () => {
  const client = await connect({ runtimeDir: process.argv[2] });
  const region = await client.acquire(process.argv[3], { mode: 'ro' });
  client.on('reconnect', () => report({ event: 'reconnected' }));
  report({ event: 'acquired', lease: region.leaseId });
  process.stdin.on('data', () => { client.close(); process.exit(0); });
})().catch((e) => { report({ event: 'error', message: e.message }); process.exit(3); });
`;

function metricsAddress(log: string): string {
  const all = [...log.matchAll(/"address":"([^"]+)","msg":"metrics served/g)];
  const a = all.at(-1)?.[1];
  if (!a) throw new Error(`no metrics address in the log:\n${log}`);
  return a;
}

async function scrape(broker: BrokerProcess): Promise<{ text: string; value(series: string): number | undefined; names: Set<string> }> {
  const res = await fetch(`http://${metricsAddress(broker.log)}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  return {
    text,
    value(series: string) {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    },
    names: new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!)),
  };
}

describe('metrics and probes (memfd, real broker)', () => {
  let broker: BrokerProcess;
  let holder: NodeChild | undefined;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd', extraArgs: ['--metrics-addr', '127.0.0.1:0'] });
    for (const name of ['held', 'orphan']) await broker.json(['region', 'create', name, '--size', '4KiB']);
    await broker.json(['grant', 'create', 'held', '--uid', '1001']);
  });
  afterAll(async () => {
    holder?.proc.kill('SIGKILL');
    await broker?.cleanup();
  });

  it('every metric served is in docs/METRICS.md and every documented metric is served', async () => {
    const { names } = await scrape(broker);
    // The broker's own: first column of the table; the standard ones: named in the text.
    const documented = new Set([
      ...[...CATALOGUE.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1]!),
      ...[...CATALOGUE.matchAll(/`((?:process|nodejs)_[a-z0-9_]+)`/g)].map((m) => m[1]!),
    ]);
    expect(documented.size).toBeGreaterThan(25);
    const families = [...CATALOGUE.matchAll(/`(nodejs_[a-z_]+)\*`/g)].map((m) => m[1]!);
    for (const n of names) {
      expect(documented.has(n) || families.some((f) => n.startsWith(f)), `${n} is served but not in docs/METRICS.md`).toBe(true);
    }
    for (const n of documented) expect(names.has(n), `${n} is documented but not served`).toBe(true);
  });

  it('process and Node.js metrics under their standard names, once', async () => {
    const { names, value } = await scrape(broker);
    for (const n of ['process_cpu_seconds_total', 'process_open_fds', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(names.has(n), n).toBe(true);
    }
    expect([...names].filter((n) => /^shmbroker_(process|nodejs|open_fds)/.test(n))).toEqual([]);
    expect(value('process_open_fds')).toBe(fs.readdirSync(`/proc/${broker.pid}/fd`).length);
  });

  it('shmbroker_build_info says which version runs on which backend', async () => {
    const { value } = await scrape(broker);
    expect(value(`shmbroker_build_info{version="${PKG.version}",backend="memfd",api="shmbroker.v1",node="${process.version}"}`)).toBe(1);
  });

  it('grpc_server_handled_total counts each RPC by service, method and code', async () => {
    await broker.cli(['region', 'show', 'nope']);
    const { value } = await scrape(broker);
    const s = (method: string, code: string) =>
      value(`grpc_server_handled_total{grpc_type="unary",grpc_service="shmbroker.v1.BrokerService",grpc_method="${method}",grpc_code="${code}"}`);
    expect(s('CreateRegion', 'OK')).toBe(2);
    expect(s('CreateGrant', 'OK')).toBe(1);
    expect(s('GetRegion', 'NOT_FOUND')).toBe(1);
  });

  it('leases held, write failures and the audit window are there from the start and follow real clients', async () => {
    const before = await scrape(broker);
    expect(before.value('shmbroker_leases')).toBe(0);
    expect(before.value('shmbroker_revocations_in_flight')).toBe(0);
    expect(before.value('shmbroker_audit_window_events')).toBe(0);
    expect(before.value('shmbroker_write_failures_total{store="audit"}')).toBe(0);
    expect(before.value('shmbroker_write_failures_total{store="state"}')).toBe(0);
    holder = new NodeChild(HOLDER, { uid: 1001, args: [broker.runtimeDir, 'held'] });
    await holder.next((o) => o.event === 'acquired');
    expect((await scrape(broker)).value('shmbroker_leases')).toBe(1);
  });

  it('after kill -9 and a restart: the region nobody held is LOST (shmbroker_regions_lost), the held one comes back', async () => {
    expect((await scrape(broker)).value('shmbroker_regions_lost')).toBe(0);
    await broker.kill9();
    await broker.start();
    await holder!.next((o) => o.event === 'reconnected');
    const after = await scrape(broker);
    expect(after.value('shmbroker_regions_lost')).toBe(1);
    expect(after.value('shmbroker_leases')).toBe(1);
  });

  it('/healthz and /readyz answer 200 on a serving broker; other paths and methods 404', async () => {
    const base = `http://${metricsAddress(broker.log)}`;
    const h = await fetch(`${base}/healthz`);
    expect([h.status, await h.text()]).toEqual([200, 'ok\n']);
    const r = await fetch(`${base}/readyz`);
    expect([r.status, await r.text()]).toEqual([200, 'ready\n']);
    expect((await fetch(`${base}/readyz`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});

describe('/readyz follows the readiness it is given; /healthz does not', () => {
  it('503 while not serving, 200 once serving; liveness 200 throughout', async () => {
    let serving = false;
    const server = await startMetricsServer('127.0.0.1:0', new Registry(), () => serving);
    try {
      const base = `http://${server.address}`;
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      serving = true;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`, { method: 'HEAD' })).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
