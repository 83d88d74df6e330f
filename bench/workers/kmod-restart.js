'use strict';
// Runs inside the VM (root, shmbroker.ko loaded): restart time of a kmod
// broker with COUNT regions on record, which it re-adopts from the kernel
// (SHMBROKER_IOC_LIST), against the restart of an empty one.
//   node kmod-restart.js COUNT  ->  one JSON line
const { Broker, sdk } = require('../lib/common');

async function restart(b) {
  await b.stop();
  return b.start();
}

let b;

async function main() {
  const count = Number(process.argv[2]);
  b = new Broker({ backend: 'kmod', base: '/tmp' });
  await b.start();
  const emptyMs = await restart(b);
  const c = new (sdk().ControlClient)({ runtimeDir: b.runtimeDir, deadlineMs: 600_000 });
  let next = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = next++; i < count; i = next++) await c.call('BrokerService', 'CreateRegion', { regionId: `k-${i}`, region: { sizeBytes: 4096 } });
    }),
  );
  const createMs = Date.now() - t0;
  c.close();
  const fullMs = await restart(b);
  const c2 = new (sdk().ControlClient)({ runtimeDir: b.runtimeDir });
  const st = await c2.call('BrokerService', 'GetStatus', {});
  // Every region must have come back ACTIVE (re-adopted), none LOST.
  let active = 0;
  let token = '';
  do {
    const res = await c2.call('BrokerService', 'ListRegions', { pageSize: 1000, pageToken: token });
    active += res.regions.filter((r) => r.state === 'REGION_STATE_ACTIVE').length;
    token = res.nextPageToken;
  } while (token);
  c2.close();
  await b.cleanup();
  process.stdout.write(JSON.stringify({ case: 'kmod-restart', count, emptyMs, fullMs, createMs, regionCount: Number(st.regionCount), active }) + '\n');
}
main().catch((e) => {
  // The broker's own account of the failure, for the report's note.
  const errors = (b?.readLog() ?? '').split('\n').filter((l) => /"level":(50|60)/.test(l)).slice(-3).join('\n');
  process.stderr.write(`${e.stack}\n${errors}\n`);
  process.exit(1);
});
