// Issue 16 item 2 (second pass): the state-disk low-water mark covers the
// control plane too. With the state filesystem (a 32 MiB tmpfs) filled below
// the mark, uid 1001 and uid 1002 cannot create regions or grants
// (STATE_LOW_SPACE), can still delete what they own (a delete frees state),
// root still creates, grants and deletes; `shmbroker status` and the
// shmbroker_state_low_space / shmbroker_state_free_bytes metrics say so.
// Once there is room again, everyone is served.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BrokerProcess, runNode, startOnSmallStateDisk } from '../support/broker-process';

const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
const LOW_WATER = 8 * 1024 * 1024;

let stateMount: string;
let broker: BrokerProcess;
let metricsAddr: string;
let cleanup: (() => Promise<void>) | undefined;

beforeAll(async () => {
  metricsAddr = `127.0.0.1:${20000 + (process.pid % 20000)}`;
  ({ broker, stateMount, cleanup } = await startOnSmallStateDisk('shmbroker-lowwater-', '32m', `dataPlane:\n  stateLowWaterBytes: ${LOW_WATER}\n`, ['--metrics-addr', metricsAddr]));
  await broker.json(['region', 'create', 'u1-old', '--size', '4KiB'], U1);
}, 60_000);

afterAll(async () => {
  await cleanup?.();
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://${metricsAddr}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`${name} not in the scrape`);
  return Number(line.split(' ')[1]);
}

const settle = () => new Promise((res) => setTimeout(res, 1100)); // the broker's statfs is at most a second old

it('below the mark: non-admin creates and grants are STATE_LOW_SPACE, deletes and admins are served; status and metrics say LOW', async () => {
  const before = await broker.json(['status']);
  expect(Number(before.stateLowWaterBytes)).toBe(LOW_WATER);
  expect(before.stateLowSpace ?? false).toBe(false);
  expect(await metric('shmbroker_state_low_space')).toBe(0);

  const free = Number(fs.statfsSync(stateMount).bavail) * Number(fs.statfsSync(stateMount).bsize);
  const filler = path.join(stateMount, 'filler');
  execFileSync('fallocate', ['-l', String(Math.max(0, free - 4 * 1024 * 1024)), filler]);
  try {
    await settle();
    for (const [who, args] of [
      [U2, ['region', 'create', 'u2-new', '--size', '4KiB']],
      [U1, ['region', 'create', 'u1-new', '--size', '4KiB']],
      [U1, ['grant', 'create', 'u1-old', '--uid', '1002']],
    ] as const) {
      const r = await broker.cli([...args], who);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr.toString()).toMatch(/below the low-water mark .*\(STATE_LOW_SPACE\)\n$/);
    }
    const status = await broker.json(['status'], U2);
    expect(status.stateLowSpace).toBe(true);
    expect(Number(status.stateFreeBytes)).toBeLessThan(LOW_WATER);
    expect((await broker.cli(['status'], U2)).stdout.toString()).toMatch(/state disk free: .*low-water mark 8 MiB: LOW, only admins are served/);
    expect(await metric('shmbroker_state_low_space')).toBe(1);
    expect(await metric('shmbroker_state_free_bytes')).toBeLessThan(LOW_WATER);

    // Root keeps full service; the owner may still delete (that frees state).
    await broker.json(['region', 'create', 'root-low', '--size', '4KiB']);
    await broker.json(['grant', 'create', 'root-low', '--uid', '1001']);
    expect((await broker.cli(['region', 'delete', 'root-low'])).code).toBe(0);
    expect((await broker.cli(['region', 'delete', 'u1-old'], U1)).code).toBe(0);
  } finally {
    fs.rmSync(filler, { force: true });
  }
  await settle();
  expect((await broker.json(['status'])).stateLowSpace ?? false).toBe(false);
  expect(await metric('shmbroker_state_low_space')).toBe(0);
  await broker.json(['region', 'create', 'u2-new', '--size', '4KiB'], U2);
  await broker.json(['grant', 'create', 'u2-new', '--uid', '1001'], U2);
}, 120_000);

it('a full state disk: once audit events cannot be written, acquires are refused (fail closed), logged once per interval; served again after', async () => {
  await broker.json(['region', 'create', 'root-pub', '--size', '4KiB']);
  // One acquire with room: lease ids are reserved, so the next acquires need no state write of their own.
  expect((await broker.cli(['region', 'read', 'root-pub', '--length', '1'])).code).toBe(0);
  // Its events are committed behind the reply (10 ms window): wait until they
  // are on disk, or a commit delayed by a loaded machine lands on the full disk
  // and the trail fails closed before the first acquire below.
  await expect.poll(() => metric('shmbroker_audit_window_events'), { timeout: 10_000, interval: 20 }).toBe(0);
  // Fill every free byte. The broker may still be writing behind (the read's
  // lease and audit rows, within their 10 ms window), so the free space can
  // shrink between statfs and fallocate: measure again and retry.
  const filler = path.join(stateMount, 'filler-all');
  for (let attempt = 0; ; attempt++) {
    const st = fs.statfsSync(stateMount);
    try {
      execFileSync('fallocate', ['-l', String(Number(st.bavail) * Number(st.bsize)), filler], { stdio: 'pipe' });
      break;
    } catch (err) {
      if (attempt >= 10) throw err;
      fs.rmSync(filler, { force: true });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const logStart = broker.log.length;
  // Root (an admin: the low-water mark does not apply) acquires until the
  // broker refuses; the first acquires' events queue in memory, their group
  // commit fails, and from then on nothing is handed out.
  const acquire = `
    const { connect } = require(REPO + '/dist/clients/sdk/index.js');
    (async () => {
      const c = await connect({ runtimeDir: process.argv[2], reconnect: false });
      const out = [];
      for (let i = 0; i < 40; i++) {
        try { (await c.acquire('root-pub')).release(); out.push('ACQUIRED'); }
        catch (e) { out.push(e.reason); }
        await new Promise((r) => setTimeout(r, 100));
      }
      console.log(JSON.stringify(out));
      process.exit(0);
    })();`;
  let results: string[];
  try {
    const r = await runNode(acquire, { args: [broker.runtimeDir] });
    results = JSON.parse(r.stdout.toString());
  } finally {
    fs.rmSync(filler, { force: true });
  }
  // The first acquire is handed out (its event waits in memory, as any
  // data-plane event of the open window); its group commit fails, and from
  // then on the trail's failing commit refuses every acquire.
  expect(results[0]).toBe('ACQUIRED');
  const refusedFrom = results.indexOf('STATE_STORAGE_FULL');
  expect(refusedFrom, JSON.stringify(results)).toBeGreaterThanOrEqual(0);
  // Once refused, refused until the disk had room again: nothing handed out unaudited.
  expect(results.slice(refusedFrom).every((x) => x === 'STATE_STORAGE_FULL'), JSON.stringify(results)).toBe(true);
  // ~4 s of commits retried every 100 ms: one log line for the interval (10 s), not one per retry.
  const lines = broker.log.slice(logStart).split('\n').filter((l) => l.includes('audit group commit failed'));
  expect(lines.length).toBeGreaterThanOrEqual(1);
  expect(lines.length).toBeLessThanOrEqual(2);
  await new Promise((res) => setTimeout(res, 500)); // the next retry commits
  const again = await runNode(acquire.replace('i < 40', 'i < 1'), { args: [broker.runtimeDir] });
  expect(JSON.parse(again.stdout.toString())).toEqual(['ACQUIRED']);
  expect((await broker.json(['audit', 'verify'], { timeoutMs: 120_000 })).ok).toBe(true);
}, 120_000);
