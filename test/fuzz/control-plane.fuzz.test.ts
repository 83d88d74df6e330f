// The gRPC control plane under property-based fuzzing (fast-check, in
// test/fuzz/control-fuzzer.js): every unary rpc with generated requests and
// with raw protobuf bytes, as an unprivileged uid and as an admin. Every call
// ends in success or a canonical refusal with a reason (never UNKNOWN, never
// an INTERNAL from a handler, never a timeout); afterwards the broker is up,
// its books balance (regions, quota charges) and the audit chain verifies.
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../support/broker-process';
import { figure, QuietBroker, scale } from '../reliability/support';

const RUNS = Number(process.env.SHMBROKER_FUZZ_RUNS ?? scale(150, 5000));
const SEED = Number(process.env.SHMBROKER_FUZZ_SEED ?? Date.now() % 1_000_000);

describe('control-plane fuzzing (fast-check)', () => {
  let broker: QuietBroker;
  beforeAll(async () => {
    broker = await QuietBroker.launch({ backend: 'memfd' });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  for (const who of [
    { name: 'uid 1001', uid: 1001, gid: 1001 },
    { name: 'root (admin)', uid: undefined, gid: undefined },
  ]) {
    it(`${RUNS} runs per rpc as ${who.name}: only canonical refusals`, async () => {
      const r = await run(process.execPath, [path.join(__dirname, 'control-fuzzer.js'), broker.runtimeDir, String(RUNS), String(SEED)], {
        ...(who.uid !== undefined ? { uid: who.uid, gid: who.gid } : {}),
        timeoutMs: 30 * 60_000,
      });
      const summary = JSON.parse(r.stdout.toString().trim().split('\n').pop() || '{}');
      figure(`control-plane fuzz ${who.name}`, { seed: summary.seed, calls: summary.calls, ok: summary.ok, rawCalls: summary.rawCalls, rawOutcomes: summary.rawOutcomes, clientSideUnencodable: summary.clientSideUnencodable, oversized: summary.oversized, seconds: summary.seconds, failures: summary.failures });
      expect(r.stderr).toBe('');
      expect(summary.failures).toEqual([]);
      expect(r.code).toBe(0);
      expect(broker.alive).toBe(true);
    }, 40 * 60_000);
  }

  it('afterwards the books balance and the audit chain verifies', async () => {
    const status = await broker.json(['status']);
    const regions = broker.query<{ name: string; size_bytes: number; owner_uid: number }>('SELECT name, size_bytes, owner_uid FROM regions');
    expect(Number(status.regionCount ?? 0)).toBe(regions.length); // uint64 as a string, absent when 0
    for (const r of regions) expect(r.name).toMatch(/^[a-z0-9][a-z0-9._-]{0,62}$/);
    // Every region is charged to its owner exactly once, and nothing else is charged.
    const charges = broker.query<{ region: string; id: number; bytes: number }>(`SELECT region, id, bytes FROM quota_charges WHERE kind = 'uid'`);
    expect(charges.map((c) => `${c.region}:${c.id}:${c.bytes}`).sort()).toEqual(regions.map((r) => `${r.name}:${r.owner_uid}:${r.size_bytes}`).sort());
    const verify = await broker.cli(['audit', 'verify', '-o', 'json']);
    expect(verify.code).toBe(0);
  });
});
