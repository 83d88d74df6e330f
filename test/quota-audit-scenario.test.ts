// Issue 5's Must-show, end to end through the real CLI against a real broker
// process: quotas refuse what they should with the reason named, the audit
// trail shows the refusals, and `audit verify` catches an edited event.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, BrokerProcess, makeTempDir } from './support/broker-process';

const U1 = { uid: 1001, gid: 1001 };

describe('quotas and audit (memfd)', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('1 MiB / 2 regions for uid 1001: 512 KiB and 4 KiB accepted, 768 KiB and a third region refused', async () => {
    const set = await broker.json(['quota', 'set', '--uid', '1001', '--bytes', '1MiB', '--regions', '2']);
    // proto3 JSON: uint64 limits as strings, usage at zero is an empty object
    expect(set).toMatchObject({ name: 'quotas/uid:1001', maxBytes: '1048576', maxRegions: '2', usage: {}, explicitlySet: true });

    expect((await broker.cli(['region', 'create', 'q-a', '--size', '512KiB'], U1)).code).toBe(0);
    expect((await broker.cli(['region', 'create', 'q-b', '--size', '4KiB'], U1)).code).toBe(0);
    const big = await broker.cli(['region', 'create', 'q-c', '--size', '768KiB'], U1);
    expect(big.code).not.toBe(0);
    expect(big.stderr).toMatch(/QUOTA_BYTES/);
    expect(big.stderr.trim().split('\n')).toHaveLength(1);
    const third = await broker.cli(['region', 'create', 'q-d', '--size', '4KiB'], U1);
    expect(third.code).not.toBe(0);
    expect(third.stderr).toMatch(/QUOTA_REGIONS/);

    // The user sees their own quota; not someone else's, and cannot raise it.
    const mine = await broker.json(['quota', 'show'], U1);
    expect(mine).toMatchObject({ maxBytes: '1048576', maxRegions: '2', usage: { bytes: String(516 * 1024), regions: '2' } });
    expect((await broker.cli(['quota', 'show', '--uid', '0'], U1)).stderr).toMatch(/NOT_YOUR_QUOTA/);
    expect((await broker.cli(['quota', 'set', '--uid', '1001', '--bytes', '1GiB'], U1)).stderr).toMatch(/ADMIN_ONLY/);

    // Deleting refunds.
    expect((await broker.cli(['region', 'delete', 'q-b'], U1)).code).toBe(0);
    expect(await broker.json(['quota', 'show', '--uid', '1001'])).toMatchObject({ usage: { bytes: String(512 * 1024), regions: '1' } });
    expect((await broker.cli(['region', 'create', 'q-e', '--size', '4KiB'], U1)).code).toBe(0);
  });

  it('audit list -o json shows the refusals with their reason', async () => {
    const denied: Array<Record<string, any>> = (await broker.json(['audit', 'list', '--result', 'denied'])).events;
    const creates = denied.filter((e) => e.action === 'CreateRegion');
    expect(creates.every((e) => e.result === 'AUDIT_RESULT_DENIED')).toBe(true);
    expect(creates.map((e) => [e.resource, e.reason, e.actor.uid])).toEqual([
      ['regions/q-c', 'QUOTA_BYTES', 1001],
      ['regions/q-d', 'QUOTA_REGIONS', 1001],
    ]);
    // A non-admin lists their own events only.
    const own: Array<Record<string, any>> = (await broker.json(['audit', 'list'], U1)).events;
    expect(own.length).toBeGreaterThan(0);
    expect(own.every((e) => e.actor.uid === 1001)).toBe(true);
    expect((await broker.cli(['audit', 'verify'], U1)).stderr).toMatch(/ADMIN_ONLY/);
    // Region filter by path segment.
    const qa: Array<Record<string, any>> = (await broker.json(['audit', 'list', '--region', 'q-a'])).events;
    expect(qa.every((e) => e.resource === 'regions/q-a' || e.resource.startsWith('regions/q-a/'))).toBe(true);
  });

  it('audit watch streams events as they commit', async () => {
    expect((await broker.cli(['region', 'delete', 'q-e'], U1)).code).toBe(0); // room for exactly one more
    const watcher = spawn(
      'setpriv',
      ['--reuid=1001', '--regid=1001', '--clear-groups', '--', process.execPath, BIN, '--runtime-dir', broker.runtimeDir, 'audit', 'watch', '-o', 'json', '--action', 'CreateRegion'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    watcher.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const lines = async (n: number) => {
      const deadline = Date.now() + 30_000;
      while (out.split('\n').filter(Boolean).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    };
    try {
      // The watch has subscribed once its own WatchAuditEvents call is in the trail.
      for (let i = 0; i < 300; i++) {
        const own = (await broker.json(['audit', 'list', '--action', 'WatchAuditEvents', '--uid', '1001'])).events ?? [];
        if (own.length > 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await broker.cli(['region', 'create', 'w-1', '--size', '4KiB'], U1)).code).toBe(0);
      expect((await broker.cli(['region', 'create', 'w-2', '--size', '4KiB'], U1)).stderr).toMatch(/QUOTA_REGIONS/);
      await lines(2);
    } finally {
      watcher.kill('SIGINT');
    }
    const events = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    expect(events.map((e) => [e.action, e.resource, e.result, e.reason])).toEqual([
      ['CreateRegion', 'regions/w-1', 'AUDIT_RESULT_ALLOWED', undefined],
      ['CreateRegion', 'regions/w-2', 'AUDIT_RESULT_DENIED', 'QUOTA_REGIONS'],
    ]);
    expect((await broker.cli(['region', 'delete', 'w-1'], U1)).code).toBe(0);
  });

  it('audit verify passes, and fails once an event is altered in the database', async () => {
    const ok = await broker.cli(['audit', 'verify']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.toString()).toMatch(/intact/);
    const [refusal] = (await broker.json(['audit', 'list', '--result', 'denied', '--action', 'CreateRegion'])).events as Array<{
      seq: string; // uint64: a string in proto3 JSON
    }>;
    const db = new BetterSqlite3(path.join(broker.stateDir, 'shmbroker.db'));
    db.prepare("UPDATE audit_events SET result = 'ALLOWED', reason = NULL WHERE seq = ?").run(refusal!.seq);
    db.close();
    const bad = await broker.cli(['audit', 'verify']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/AUDIT_TRAIL_TAMPERED/);
    expect(bad.stdout.toString()).toContain(`seq ${refusal!.seq}:`);
    const asJson = await broker.cli(['audit', 'verify', '-o', 'json']);
    const verdict = JSON.parse(asJson.stdout.toString());
    expect(verdict).not.toHaveProperty('ok'); // proto3 JSON leaves ok: false out
    expect(verdict).toMatchObject({ problems: [{ seq: refusal!.seq }] });
  });
});

describe('configuration file', () => {
  it('a bad file stops the broker at start with a message naming the field and line', async () => {
    const dir = makeTempDir();
    const file = path.join(dir, 'broker.yaml');
    fs.writeFileSync(file, 'adminGids: [990]\ndefaultQuota:\n  uid:\n    bytes: lots\n');
    const broker = new BrokerProcess({ dir, config: file });
    await expect(broker.start()).rejects.toThrow(/broker\.yaml:4: defaultQuota\.uid\.bytes: invalid size/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('default quotas from the file apply', async () => {
    const dir = makeTempDir();
    const file = path.join(dir, 'broker.json');
    fs.writeFileSync(file, JSON.stringify({ defaultQuota: { uid: { bytes: '8KiB', regions: 5 } } }));
    const broker = await BrokerProcess.start({ dir, config: file });
    try {
      expect((await broker.cli(['region', 'create', 'd-a', '--size', '8KiB'], U1)).code).toBe(0);
      const r = await broker.cli(['region', 'create', 'd-b', '--size', '4KiB'], U1);
      expect(r.stderr).toMatch(/QUOTA_BYTES/);
      const q = await broker.json(['quota', 'show'], U1);
      expect(q).toMatchObject({ maxBytes: '8192', maxRegions: '5' });
      expect(q).not.toHaveProperty('explicitlySet'); // false: the default applies
    } finally {
      await broker.cleanup();
    }
  });
});

describe('metrics (memfd)', () => {
  it('--metrics-addr serves quota usage, regions, acquires and denials over HTTP', async () => {
    const broker = await BrokerProcess.start({ backend: 'memfd', extraArgs: ['--metrics-addr', '127.0.0.1:0'] });
    try {
      const address = /"address":"([^"]+)","msg":"metrics served/.exec(broker.log)?.[1];
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
      await broker.json(['quota', 'set', '--uid', '1001', '--bytes', '1MiB', '--regions', '2']);
      expect((await broker.cli(['region', 'create', 'm-a', '--size', '512KiB'], U1)).code).toBe(0);
      expect((await broker.cli(['region', 'create', 'm-b', '--size', '768KiB'], U1)).stderr).toMatch(/QUOTA_BYTES/);
      expect((await broker.cli(['region', 'read', 'm-a', '--length', '1'], { uid: 1002, gid: 1002 })).code).not.toBe(0);
      const res = await fetch(`http://${address}/metrics`);
      expect(res.status).toBe(200);
      const text = await res.text();
      const value = (series: string) => {
        const line = text.split('\n').find((l) => l.startsWith(`${series} `));
        return line === undefined ? undefined : Number(line.slice(series.length + 1));
      };
      expect(value('shmbroker_quota_usage_bytes{subject="uid:1001"}')).toBe(524288);
      expect(value('shmbroker_quota_limit_bytes{subject="uid:1001"}')).toBe(1048576);
      expect(value('shmbroker_regions{backend="memfd"}')).toBe(1);
      expect(value('shmbroker_region_bytes{backend="memfd"}')).toBe(524288);
      expect(value('shmbroker_denials_total{action="CreateRegion",reason="QUOTA_BYTES"}')).toBe(1);
      expect(text).toMatch(/shmbroker_acquires_total\{result="DENIED",reason="[A-Z_]+"\} 1/);
      expect(text).toMatch(/shmbroker_rpc_duration_seconds_count\{method="BrokerService\/CreateRegion",code="OK"\} 1/);
      expect(value('process_open_fds')).toBeGreaterThan(5);
      expect((await fetch(`http://${address}/`)).status).toBe(404);
    } finally {
      await broker.cleanup();
    }
  });
});
