// The memfd backend holds one fd per region in the broker, so RLIMIT_NOFILE
// is its ceiling: the broker raises its soft limit to the hard one at start,
// reports the ceiling in `shmbroker status` and as a metric, and refuses a
// region beyond it with RESOURCE_EXHAUSTED / FD_LIMIT_REACHED, naming the
// limit, before anything is allocated or recorded (nothing half-created).
// A real broker under a real limit (prlimit), real clients.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { BIN, BrokerProcess, runNode } from './support/broker-process';

const SOFT = 300;
const HARD = 400;

/** A broker started with RLIMIT_NOFILE soft SOFT, hard HARD. */
class LimitedBroker extends BrokerProcess {
  override async start(): Promise<void> {
    const args = ['serve', '--runtime-dir', this.runtimeDir, '--state-dir', this.stateDir, '--backend', 'memfd', ...(this.options.config ? ['--config', this.options.config] : [])];
    const proc = spawn('prlimit', [`--nofile=${SOFT}:${HARD}`, '--', process.execPath, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.log = '';
    proc.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    const deadline = Date.now() + 60_000;
    while (!this.log.includes('"broker serving"')) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`broker exited during start:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`broker did not start:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

describe('fd ceiling (memfd)', () => {
  let broker: LimitedBroker;
  afterAll(async () => broker?.cleanup());

  it('raises the soft limit, reports the ceiling, and refuses past it with a reason naming the limit', { timeout: 300_000 }, async () => {
    const dir = fs.mkdtempSync('/tmp/shmbroker-fdceiling-');
    fs.chmodSync(dir, 0o755);
    const config = path.join(dir, 'config.yaml');
    fs.writeFileSync(config, 'defaultQuota:\n  uid: unlimited\n');
    broker = new LimitedBroker({ dir, config });
    await broker.start();
    // Soft raised to hard at start.
    const limits = fs.readFileSync(`/proc/${broker.pid}/limits`, 'utf8');
    expect(limits).toMatch(new RegExp(`Max open files\\s+${HARD}\\s+${HARD}`));
    const status = await broker.json(['status']);
    expect(Number(status.fdLimit)).toBe(HARD);
    const ceiling = Number(status.regionCeiling);
    expect(ceiling).toBeGreaterThan(0);
    expect(ceiling).toBeLessThan(HARD);
    expect(status.regionCeilingSource).toBe(`one fd per region; RLIMIT_NOFILE ${HARD}`);
    const text = await broker.cli(['status']);
    expect(text.stdout.toString()).toContain(`region ceiling:      ${ceiling} (one fd per region; RLIMIT_NOFILE ${HARD})`);

    // Fill to the ceiling, then one more.
    const r = await runNode(
      `const { ControlClient } = require(REPO + '/dist/clients/sdk/control-client.js');
       (async () => {
         const c = new ControlClient({ runtimeDir: process.argv[2] });
         let made = 0, refusal;
         for (let i = 0; i < ${HARD}; i++) {
           try { await c.call('BrokerService', 'CreateRegion', { regionId: 'r' + i, region: { sizeBytes: 4096 } }); made++; }
           catch (e) { refusal = { code: e.code, reason: e.reason, message: e.message, at: i }; break; }
         }
         // The broker still serves: a read, and a region fits again once one is deleted.
         const list = await c.call('BrokerService', 'ListRegions', { pageSize: 1 });
         await c.call('BrokerService', 'DeleteRegion', { name: 'regions/r0' });
         await c.call('BrokerService', 'CreateRegion', { regionId: 'again', region: { sizeBytes: 4096 } });
         console.log(JSON.stringify({ made, refusal, listed: list.regions.length }));
         c.close();
       })().catch((e) => { console.error(e); process.exit(1); });`,
      { args: [broker.runtimeDir], timeoutMs: 240_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.toString().trim().split('\n').pop()!);
    expect(out.made).toBe(ceiling);
    expect(out.refusal).toMatchObject({ code: 'RESOURCE_EXHAUSTED', reason: 'FD_LIMIT_REACHED', at: ceiling });
    expect(out.refusal.message).toContain(`ceiling of ${ceiling} regions`);
    expect(out.refusal.message).toContain(`RLIMIT_NOFILE ${HARD}`);
    expect(out.listed).toBe(1);

    // Nothing half-created: no row, no quota charge, and a DENIED audit event for the refused one.
    const db = new Database(path.join(broker.stateDir, 'shmbroker.db'), { readonly: true });
    try {
      expect(db.prepare(`SELECT COUNT(*) AS n FROM regions WHERE name = ?`).get(`r${ceiling}`)).toEqual({ n: 0 });
      expect(db.prepare(`SELECT COUNT(*) AS n FROM regions`).get()).toEqual({ n: ceiling });
      const denied = db.prepare(`SELECT reason FROM audit_events WHERE action = 'CreateRegion' AND resource = ?`).all(`regions/r${ceiling}`);
      expect(denied).toEqual([{ reason: 'FD_LIMIT_REACHED' }]);
    } finally {
      db.close();
    }
    // The broker held one fd per region and stayed under its limit.
    expect(broker.fdCount()).toBeLessThan(HARD);
  });
});
