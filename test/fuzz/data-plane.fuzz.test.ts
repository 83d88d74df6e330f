// The data-plane protocol under fuzzing (test/fuzz/dataplane-fuzzer.js): at
// least 100,000 random, mutated, oversized and fd-carrying packets plus
// half-open, abandoned and idle connections, sent by a process of uid 1001
// that holds a read-write grant. The broker must answer or close every case
// (no hang), stay up, end with exactly the fds it started with, and still
// serve a valid client; the audit chain still verifies.
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, runNode } from '../support/broker-process';
import { figure, QuietBroker, scale } from '../reliability/support';

const CASES = Number(process.env.SHMBROKER_FUZZ_CASES ?? scale(100_000, 1_000_000));
const SEED = Number(process.env.SHMBROKER_FUZZ_SEED ?? Date.now() % 1_000_000);

describe('data-plane fuzzing', () => {
  let broker: QuietBroker;

  beforeAll(async () => {
    // A high rate limit, so that well-formed requests reach the real handlers
    // instead of stopping at the limiter (the limiter has its own test).
    // Refusal counts are written when their interval ends: a 1 s interval, so
    // the count below can wait for the last one to close.
    // The per-uid buckets are lifted so every case reaches the parser (the buckets have their own tests).
    broker = await QuietBroker.launch({ backend: 'memfd', config: 'dataPlane:\n  maxRequestsPerSecondPerUid: 100000000\n  maxMalformedPerSecondPerUid: 100000000\n  refusalAuditIntervalSeconds: 1\n' });
    await broker.json(['region', 'create', 'fuzz', '--size', '16KiB']);
    await broker.cli(['region', 'write', 'fuzz'], { input: Buffer.from('still here') });
    await broker.json(['grant', 'create', 'fuzz', '--uid', '1001', '--mode', 'rw']);
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it(`${CASES} cases: no crash, no hang, no fd leak, valid clients still served`, async () => {
    const baseFds = broker.fdCount();
    const baseRss = broker.rss();
    const r = await run(process.execPath, [path.join(__dirname, 'dataplane-fuzzer.js'), broker.runtimeDir, String(CASES), String(SEED), 'fuzz'], {
      uid: 1001,
      gid: 1001,
      timeoutMs: 30 * 60_000,
    });
    const summary = JSON.parse(r.stdout.toString().trim().split('\n').pop() || '{}');
    figure('data-plane fuzz', summary);
    expect(r.stderr).toBe('');
    expect(summary.errors).toEqual([]);
    expect(summary.hangs).toBe(0);
    expect(summary.cases).toBe(CASES);
    expect(r.code).toBe(0);
    expect(broker.alive).toBe(true);

    const fds = await broker.settleFds(baseFds, 10_000);
    const rss = broker.rss();
    figure('data-plane fuzz broker', { seed: SEED, fdsBefore: baseFds, fdsAfter: fds, rssBeforeMiB: +(baseRss / 2 ** 20).toFixed(1), rssAfterMiB: +(rss / 2 ** 20).toFixed(1) });
    expect(fds).toBe(baseFds);
    const status = await broker.json(['status']);
    expect(status).not.toHaveProperty('dataConnections'); // proto3 JSON omits 0

    const client = await runNode(
      `const { connect } = require(REPO + '/dist/clients/sdk/index.js');
       (async () => {
         const c = await connect({ runtimeDir: process.argv[2], reconnect: false });
         const r = await c.acquire('fuzz', { mode: 'rw' });
         process.stdout.write(Buffer.from(r.buffer, 0, 10).toString());
         await r.release(); c.close();
       })().catch((e) => { console.error(e); process.exit(3); });`,
      { uid: 1001, gid: 1001, args: [broker.runtimeDir] },
    );
    expect(client.stderr).toBe('');
    expect(client.stdout.toString()).toBe('still here');
    expect(await broker.settleFds(baseFds)).toBe(baseFds);
    // The protocol errors were all audited, and the chain holds.
    const verify = await broker.cli(['audit', 'verify', '-o', 'json'], { timeoutMs: 120_000 });
    expect(verify.code).toBe(0);
    // Repeated refusals are aggregated (one event per kind and interval with
    // details.count); connections refused at the door by the per-uid connect
    // rate are closed by the broker too, so both kinds count.
    await new Promise((r) => setTimeout(r, 2_500)); // every refusal interval has ended and been written
    const errors = broker.query<{ n: number }>(
      `SELECT SUM(COALESCE(json_extract(details, '$.count'), 1)) AS n FROM audit_events
        WHERE action = 'DataPlaneProtocolError' OR (action = 'DataPlaneConnect' AND result = 'DENIED')`,
    )[0]!.n;
    figure('data-plane fuzz audited protocol errors', errors);
    expect(errors).toBeGreaterThanOrEqual(summary.closedByBroker * 0.9);
  }, 40 * 60_000);
});
