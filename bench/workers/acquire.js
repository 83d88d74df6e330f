'use strict';
// SDK acquire + map + first touch + release of an already-granted region, in
// a loop, timing each trial. Runs as the grantee in its own process.
//   node acquire.js RUNTIME_DIR REGION TRIALS WARMUP [shared]
const { sdk } = require('../lib/common');

async function main() {
  const [runtimeDir, name, trialsArg, warmupArg, sharedArg] = process.argv.slice(2);
  const shared = sharedArg === 'shared';
  const trials = Number(trialsArg);
  const warmup = Number(warmupArg);
  const client = await sdk().connect({ runtimeDir, reconnect: false });
  const ns = new Array(trials);
  for (let i = -warmup; i < trials; i++) {
    const t0 = process.hrtime.bigint();
    const region = await client.acquire(name, { mode: 'rw', shared });
    const bytes = new Uint8Array(region.buffer);
    bytes[0] += 1;
    await region.release();
    const t1 = process.hrtime.bigint();
    if (i >= 0) ns[i] = Number(t1 - t0);
  }
  client.close();
  const cpu = process.cpuUsage();
  process.stdout.write(JSON.stringify({ result: { ns, cpuUs: cpu.user + cpu.system } }) + '\n');
}
main().catch((e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
