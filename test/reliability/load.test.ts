// Load: 64 concurrent clients (16 processes of 16 uids, 4 clients each, every
// client with its own data connection and its own gRPC channel) mixing
// acquire/touch/release with control calls (get, list, status, list grants,
// create+grant+revoke+delete of their own regions), with the default
// configuration (rate and connection limits included). Zero errors allowed.
// Two equal phases: the broker's open fds must come back to the baseline
// after each, and its RSS must not keep growing from one phase to the next.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../clients/sdk/control-client';
import { NodeChild } from '../support/broker-process';
import { figure, QuietBroker, scale, sleep } from './support';

const PROCESSES = 16;
const CLIENTS_PER_PROCESS = 4;
const PHASE_MS = Number(process.env.SHMBROKER_LOAD_MS ?? scale(8_000, 60_000));

const LOADER = `
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
const { ControlClient } = require(REPO + '/dist/clients/sdk/control-client.js');
const [runtimeDir, clientsArg, regionsArg] = process.argv.slice(2);
const regions = regionsArg.split(',');
const uid = process.getuid();
const readline = require('node:readline');
const rl = readline.createInterface({ input: process.stdin });
const stats = { requests: 0, acquires: 0, control: 0, errors: {} };
const fail = (e) => { const k = (e.reason || e.code || e.message); stats.errors[k] = (stats.errors[k] || 0) + 1; };
async function client(c, until) {
  const data = await connect({ runtimeDir, reconnect: false });
  const ctl = new ControlClient({ runtimeDir });
  let i = 0;
  while (Date.now() < until) {
    i++;
    try {
      const name = regions[(c + i) % regions.length];
      const r = await data.acquire(name, { mode: i % 3 === 0 ? 'ro' : 'rw' });
      const v = new Uint8Array(r.buffer);
      if (r.mode === 'rw') v[(uid * 64 + c) % v.length] = i & 0xff; else void v[0];
      await r.release();
      stats.acquires++;
      stats.requests += 2;
    } catch (e) { fail(e); }
    if (i % 4 === 0) {
      try {
        switch ((i / 4) % 5) {
          case 0: await ctl.call('BrokerService', 'GetRegion', { name: 'regions/' + regions[i % regions.length] }); break;
          case 1: await ctl.call('BrokerService', 'ListRegions', { pageSize: 50 }); break;
          case 2: await ctl.call('BrokerService', 'GetStatus', {}); break;
          case 3: await ctl.call('BrokerService', 'ListGrants', { parent: 'regions/' + regions[i % regions.length] }); break;
          default: {
            const own = 'own-' + uid + '-' + c;
            await ctl.call('BrokerService', 'CreateRegion', { regionId: own, region: { sizeBytes: 8192 } });
            const g = await ctl.call('BrokerService', 'CreateGrant', { parent: 'regions/' + own, grant: { uid: uid + 1, mode: 'ACCESS_MODE_READ_ONLY' } });
            await ctl.call('BrokerService', 'RevokeGrant', { name: g.name });
            await ctl.call('BrokerService', 'DeleteRegion', { name: 'regions/' + own });
            stats.control += 3;
            stats.requests += 3;
          }
        }
        stats.control++;
        stats.requests++;
      } catch (e) { fail(e); }
    }
  }
  data.close();
  ctl.close();
}
report({ ready: true });
rl.on('line', async (line) => {
  const ms = Number(line);
  for (const k of Object.keys(stats)) stats[k] = k === 'errors' ? {} : 0;
  const until = Date.now() + ms;
  await Promise.all(Array.from({ length: Number(clientsArg) }, (_, c) => client(c, until)));
  report({ phase: true, ...stats });
});
rl.on('close', () => process.exit(0));
`;

describe('load', () => {
  let broker: QuietBroker;
  let loaders: NodeChild[] = [];
  const regions = Array.from({ length: 8 }, (_, i) => `load-${i}`);

  beforeAll(async () => {
    broker = await QuietBroker.launch({ backend: 'memfd' });
    const ctl = new ControlClient({ runtimeDir: broker.runtimeDir });
    for (const r of regions) {
      await ctl.call('BrokerService', 'CreateRegion', { regionId: r, region: { sizeBytes: 256 * 1024 } });
      await ctl.call('BrokerService', 'CreateGrant', { parent: `regions/${r}`, grant: { gid: 3000, mode: 'ACCESS_MODE_READ_WRITE' } });
    }
    ctl.close();
  });
  afterAll(async () => {
    loaders.forEach((l) => l.kill());
    await broker?.cleanup();
  });

  it(`${PROCESSES * CLIENTS_PER_PROCESS} concurrent clients, two phases of ${PHASE_MS / 1000} s: zero errors, fds back to baseline, RSS flat`, async () => {
    // Every loader is its own uid, in group 3000 (the grants above).
    loaders = Array.from({ length: PROCESSES }, (_, i) => {
      const uid = 2001 + i;
      return new NodeChild(LOADER, { uid, gid: 3000, args: [broker.runtimeDir, String(CLIENTS_PER_PROCESS), regions.join(',')] });
    });
    for (const l of loaders) await l.next((o) => o.ready, 60_000);
    const baseFds = broker.fdCount();
    const baseRss = broker.rss();
    const phases: any[] = [];
    for (let p = 0; p < 2; p++) {
      const t0 = Date.now();
      let peakFds = baseFds;
      const sampler = setInterval(() => {
        try {
          peakFds = Math.max(peakFds, broker.fdCount());
        } catch {
          // broker gone: the assertions below say so
        }
      }, 250);
      for (const l of loaders) l.send(String(PHASE_MS));
      const results = [];
      for (const l of loaders) results.push(await l.next((o) => o.phase, PHASE_MS + 120_000));
      clearInterval(sampler);
      const seconds = (Date.now() - t0) / 1000;
      const errors: Record<string, number> = {};
      for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + (v as number);
      const requests = results.reduce((a, r) => a + r.requests, 0);
      const fdsAfter = await broker.settleFds(baseFds, 15_000);
      await sleep(1000);
      phases.push({
        phase: p + 1,
        seconds: +seconds.toFixed(1),
        requests,
        acquires: results.reduce((a, r) => a + r.acquires, 0),
        controlCalls: results.reduce((a, r) => a + r.control, 0),
        requestsPerSecond: Math.round(requests / seconds),
        errors,
        peakFds,
        fdsAfter,
        rssAfterMiB: +(broker.rss() / 2 ** 20).toFixed(1),
      });
    }
    const report = { clients: PROCESSES * CLIENTS_PER_PROCESS, baseFds, baseRssMiB: +(baseRss / 2 ** 20).toFixed(1), phases };
    figure('load', report);
    for (const ph of phases) {
      expect(ph.errors).toEqual({});
      expect(ph.fdsAfter).toBe(baseFds);
      expect(ph.acquires).toBeGreaterThan(0);
    }
    expect(broker.alive).toBe(true);
    // A leak grows with the work done; allocator and JIT warm-up do not repeat. Phase 2 must not add more than a little.
    expect(phases[1].rssAfterMiB - phases[0].rssAfterMiB).toBeLessThan(48);
    const leases = broker.query<{ n: number }>('SELECT COUNT(*) AS n FROM leases')[0]!.n;
    expect(leases).toBe(0);
    const status = await broker.json(['status']);
    expect(Number(status.regionCount ?? 0)).toBe(regions.length); // uint64 as a string, absent when 0
  }, 30 * 60_000);
});
