#!/usr/bin/env node
'use strict';
// Profiles the broker (node --cpu-prof) under one benchmark loop and prints
// where its time goes, to explain a missed goal.
//   node bench/profile.js acquire [SIZE] [TRIALS]   SDK acquire+touch+release loop (client as uid 65534 when root)
//   node bench/profile.js create [COUNT] [disk] [INFLIGHT]
//                                                   CreateRegion (state on /dev/shm, or on disk as shipped),
//                                                   one at a time or INFLIGHT calls in flight on one channel:
//                                                   COUNT warm-up creates, then COUNT measured; the broker's
//                                                   summary covers only the measured ones
// Profiles land in a temp dir, printed at the end (open them in Chrome DevTools).
const fs = require('node:fs');
const path = require('node:path');
const { Broker, Worker, sdk, granteeUid, makeTempDir, lanes } = require('./lib/common');
const { summarise } = require('./lib/cpuprofile');

async function main() {
  const [what = 'acquire', a1, a2, a3] = process.argv.slice(2);
  const inflight = Number(a3 ?? 1);
  // COUNT calls of fn(i), `inflight` at a time.
  const inLanes = (count, fn) => lanes(count, inflight, fn);

  const dir = makeTempDir('shmbroker-profile-');
  fs.chmodSync(dir, 0o777);
  const disk = what === 'create' && a2 === 'disk';
  const b = await Broker.start({ base: disk ? undefined : '/dev/shm', nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${path.join(dir, 'broker')}`] });
  const c = new (sdk().ControlClient)({ runtimeDir: b.runtimeDir });
  let n;
  let marker;
  if (what === 'create') {
    // A running broker, not one compiling its handlers: warm up, then mark the start of the measured part.
    await inLanes(Number(a1 ?? 2000), (i) => c.call('BrokerService', 'CreateRegion', { regionId: `w${i}`, region: { sizeBytes: 4096 } }));
    for (let i = 0; i < 200; i++) await c.call('BrokerService', 'GetStatus', {});
    marker = 'getStatus';
  }
  const c0 = b.cpuMs();
  const t0 = Date.now();
  if (what === 'acquire') {
    const size = Number(a1 ?? 4096);
    n = Number(a2 ?? 2000);
    const uid = granteeUid();
    await c.call('BrokerService', 'CreateRegion', { regionId: 'p', region: { sizeBytes: size } });
    if (uid !== undefined) await c.call('BrokerService', 'CreateGrant', { parent: 'regions/p', grant: { uid, mode: 'ACCESS_MODE_READ_WRITE' } });
    const w = new Worker('acquire', [b.runtimeDir, 'p', String(n), '0'], { uid, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${path.join(dir, 'client')}`] });
    await w.done();
  } else if (what === 'create') {
    n = Number(a1 ?? 2000);
    await inLanes(n, (i) => c.call('BrokerService', 'CreateRegion', { regionId: `x${i}`, region: { sizeBytes: 4096 } }));
  } else throw new Error(`unknown: ${what}`);
  const cpu = b.cpuMs() - c0;
  console.log(`${n} ${what} in ${Date.now() - t0} ms; broker CPU ${((cpu * 1000) / n).toFixed(0)} µs per ${what} (${disk ? 'disk' : 'tmpfs'}, ${inflight} in flight; load ${require('node:os').loadavg().map((x) => x.toFixed(2)).join(' ')})`);
  c.close();
  await b.stop();
  for (const side of ['broker', 'client']) {
    const d = path.join(dir, side);
    if (!fs.existsSync(d)) continue;
    for (const f of fs.readdirSync(d)) {
      const s = summarise(path.join(d, f), 20, side === 'broker' ? marker : undefined);
      console.log(`\n== ${side}: ${path.join(d, f)}\nbusy ${s.busyMs.toFixed(0)} ms (idle ${s.idleMs.toFixed(0)} ms)\n-- self`);
      for (const r of s.self) console.log(`${String(r.pctBusy).padStart(5)}%  ${r.fn}`);
      console.log('-- inclusive');
      for (const r of s.inclusive) console.log(`${String(r.pctBusy).padStart(5)}%  ${r.fn}`);
    }
  }
  await b.cleanup();
}
main().catch((e) => {
  console.error(e.stack ?? e);
  process.exit(1);
});
