// Issue 16 item 2: a connect-and-send-garbage flood and a lease flood by uid
// 1002 against a broker whose state directory is a 64 MiB tmpfs. The disk use
// stays bounded (refusals are aggregated: beyond 10 a kind, uid and
// interval, one event with a count), the broker stays up, root's create, delete and
// audit verify keep working, and the counts in the audit trail add up to
// exactly what uid 1002 did. Then the low-water mark: with the state
// filesystem nearly full, uid 1002's acquire is refused STATE_LOW_SPACE while
// root still creates, deletes and verifies.
//
// The flood runs 15 s, not the 30 s the issue names: this machine is shared
// by six engineers on 2 cores (load average 15-50 while this was written),
// and the property (rows bounded per interval, counts exact) is the same
// for every interval; the interval is 2 s here, so the flood spans 7+ of them.
// Malformed packets have a bucket of their own (dataPlane.maxMalformedPerSecondPerUid).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { INDIVIDUAL_PER_INTERVAL } from '../../service/audit/refusal-aggregator';
import { type BrokerProcess, runNode, startOnSmallStateDisk } from '../support/broker-process';

const U2 = { uid: 1002, gid: 1002 };
const FLOOD_SECONDS = 15;
const INTERVAL_S = 2;
const LEASE_CAP = 100;
const MALFORMED_RATE = 20;

let stateMount: string;
let broker: BrokerProcess;
let cleanup: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ broker, stateMount, cleanup } = await startOnSmallStateDisk(
    'shmbroker-flood-',
    '64m',
    `dataPlane:\n  maxLeasesPerUid: ${LEASE_CAP}\n  maxConnectsPerSecondPerUid: 50\n  maxMalformedPerSecondPerUid: ${MALFORMED_RATE}\n  refusalAuditIntervalSeconds: ${INTERVAL_S}\n  stateLowWaterBytes: 8388608\n`,
  ));
  await broker.json(['region', 'create', 'pub', '--size', '4KiB']);
  await broker.json(['grant', 'create', 'pub', '--uid', '1002', '--mode', 'ro']);
}, 60_000);

afterAll(async () => {
  await cleanup?.();
});

function usedBytes(): number {
  const st = fs.statfsSync(stateMount);
  return (Number(st.blocks) - Number(st.bfree)) * Number(st.bsize);
}

function refusalsOf(uid: number): Array<{ action: string; reason: string; n: number; rows: number }> {
  const db = new Database(path.join(stateMount, 'shmbroker.db'), { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        `SELECT action, reason, SUM(COALESCE(json_extract(details, '$.count'), 1)) AS n, COUNT(*) AS rows
           FROM audit_events WHERE actor_uid = ? AND result = 'DENIED' GROUP BY action, reason ORDER BY action, reason`,
      )
      .all(uid) as Array<{ action: string; reason: string; n: number; rows: number }>;
  } finally {
    db.close();
  }
}

it(`uid 1002 floods for ${FLOOD_SECONDS} s: bounded disk, broker up, root served, every refusal counted`, async () => {
  const usedBefore = usedBytes();
  const floodStart = Date.now();
  const flood = runNode(
    `const native = require(REPO + '/dist/native');
     const { connect } = require(REPO + '/dist/clients/sdk/index.js');
     const [runtimeDir, seconds] = [process.argv[2], Number(process.argv[3])];
     (async () => {
       // 1. Leases: acquire without releasing until refused, then keep trying.
       const c = await connect({ runtimeDir, reconnect: false });
       let leases = 0, leaseRefusals = 0;
       for (let i = 0; i < ${LEASE_CAP} + 200; i++) {
         try { await c.acquire('pub'); leases++; }
         catch (e) { if (e.reason !== 'TOO_MANY_LEASES') throw e; leaseRefusals++; }
       }
       // 2. Connect, send garbage, wait for the broker to close it; repeat.
       let connects = 0, failedConnects = 0;
       const end = Date.now() + seconds * 1000;
       while (Date.now() < end) {
         let s;
         try { s = native.SeqpacketSocket.connect(runtimeDir + '/data.sock'); } catch { failedConnects++; continue; }
         connects++;
         await new Promise((resolve) => {
           const t = setTimeout(resolve, 1000);
           s.on('error', () => undefined);
           s.on('close', () => { clearTimeout(t); resolve(); });
           s.send(Buffer.from([0xff, 0xff, 0xff, 0x0f]));
         });
         s.close();
       }
       console.log(JSON.stringify({ leases, leaseRefusals, connects, failedConnects }));
       process.exit(0);
     })().catch((e) => { console.error(e); process.exit(3); });`,
    { ...U2, args: [broker.runtimeDir, String(FLOOD_SECONDS)], timeoutMs: (FLOOD_SECONDS + 120) * 1000 },
  );
  // Root keeps administering during the flood.
  let rootOps = 0;
  const deadline = Date.now() + FLOOD_SECONDS * 1000;
  while (Date.now() < deadline) {
    const name = `root-${rootOps}`;
    await broker.json(['region', 'create', name, '--size', '64KiB']);
    expect((await broker.cli(['region', 'delete', name])).code).toBe(0);
    rootOps++;
  }
  const r = await flood;
  expect(r.code, r.stderr).toBe(0);
  const sent = JSON.parse(r.stdout.toString().trim()) as { leases: number; leaseRefusals: number; connects: number; failedConnects: number };
  expect(sent.leases).toBe(LEASE_CAP);
  expect(sent.leaseRefusals).toBe(200);
  expect(rootOps).toBeGreaterThan(0);
  // The broker is up and root still verifies the trail.
  const verify = await broker.json(['audit', 'verify'], { timeoutMs: 120_000 });
  expect(verify.ok).toBe(true);
  // Aggregates are written when their interval ends.
  await new Promise((res) => setTimeout(res, (INTERVAL_S + 1) * 1000));
  const refusals = refusalsOf(1002);
  const count = (action: string, reason?: string) =>
    refusals.filter((x) => x.action === action && (reason === undefined || x.reason === reason)).reduce((a, x) => a + x.n, 0);
  const protocolErrors = count('DataPlaneProtocolError');
  const connectRefusals = count('DataPlaneConnect');
  // Every connection uid 1002 made was refused exactly once: at the door or for its garbage.
  expect(protocolErrors + connectRefusals).toBe(sent.connects);
  expect(count('DataPlaneConnect', 'CONNECTION_RATE_LIMITED')).toBeGreaterThan(0);
  // Malformed packets have their own bucket: beyond it the uid's connections are closed at accept
  // (no decode, no log line), so the garbage that reaches the parser is bounded by rate x time + burst.
  expect(count('DataPlaneConnect', 'MALFORMED_RATE_LIMITED')).toBeGreaterThan(0);
  expect(protocolErrors).toBeLessThanOrEqual(MALFORMED_RATE * ((Date.now() - floodStart) / 1000 + 1));
  expect(count('Acquire', 'TOO_MANY_LEASES')).toBe(200);
  // Rows: at most 10 one by one + 1 aggregate per kind and interval, however many refusals.
  const rows = refusals.reduce((a, x) => a + x.rows, 0);
  const intervals = Math.ceil((Date.now() - floodStart) / (INTERVAL_S * 1000)) + 1;
  expect(rows).toBeLessThanOrEqual((INDIVIDUAL_PER_INTERVAL + 1) * refusals.length * intervals);
  const used = usedBytes() - usedBefore;
  console.log(JSON.stringify({ figure: 'flood', sent, rootOps, refusals, rows, usedBytes: used, load: fs.readFileSync('/proc/loadavg', 'utf8').trim() }));
  expect(used).toBeLessThan(16 * 1024 * 1024);
}, (FLOOD_SECONDS + 240) * 1000);

it('below the low-water mark uid 1002 is refused STATE_LOW_SPACE; root creates, deletes and verifies', async () => {
  const free = Number(fs.statfsSync(stateMount).bavail) * Number(fs.statfsSync(stateMount).bsize);
  const filler = path.join(stateMount, 'filler');
  execFileSync('fallocate', ['-l', String(Math.max(0, free - 4 * 1024 * 1024)), filler]);
  try {
    await new Promise((res) => setTimeout(res, 1100)); // the broker's statfs is at most a second old
    const r = await runNode(
      `const { connect } = require(REPO + '/dist/clients/sdk/index.js');
       connect({ runtimeDir: process.argv[2], reconnect: false }).then((c) => c.acquire('pub')).then(
         () => { console.log('ACQUIRED'); process.exit(0); },
         (e) => { console.log(e.reason); process.exit(0); });`,
      { ...U2, args: [broker.runtimeDir] },
    );
    expect(r.stdout.toString().trim()).toBe('STATE_LOW_SPACE');
    await broker.json(['region', 'create', 'admin-still-works', '--size', '4KiB']);
    expect((await broker.cli(['region', 'delete', 'admin-still-works'])).code).toBe(0);
    expect((await broker.json(['audit', 'verify'], { timeoutMs: 120_000 })).ok).toBe(true);
  } finally {
    fs.rmSync(filler, { force: true });
  }
  await new Promise((res) => setTimeout(res, 1100));
  const again = await runNode(
    `const { connect } = require(REPO + '/dist/clients/sdk/index.js');
     connect({ runtimeDir: process.argv[2], reconnect: false }).then((c) => c.acquire('pub')).then(
       () => { console.log('ACQUIRED'); process.exit(0); }, (e) => { console.log(e.reason); process.exit(0); });`,
    { ...U2, args: [broker.runtimeDir] },
  );
  expect(again.stdout.toString().trim()).toBe('ACQUIRED');
}, 120_000);
