'use strict';
// One control-plane client: CreateRegion, then CreateGrant on each, then
// DeleteRegion on each, over gRPC on broker.sock; times every call.
//   node control.js RUNTIME_DIR PREFIX COUNT INFLIGHT GRANT_UID [WARM]
// WARM (default 50) rounds of create+grant+delete on throwaway regions come
// first, so the phases measure a warm broker, not V8 compiling its handlers.
// INFLIGHT 1 = one call at a time; more = that many outstanding calls on the
// one channel. Reports {ready}, then for each phase waits for "go" on stdin
// and reports {phaseDone} (so the caller can read the broker's CPU per phase),
// then reports the result.
const readline = require('node:readline');
const { sdk, lanes } = require('../lib/common');

async function phase(count, inflight, call) {
  const ns = new Array(count);
  // process.hrtime is CLOCK_MONOTONIC, one clock for every process on the
  // host: the caller spans several clients' phases with these two stamps.
  const t0 = process.hrtime.bigint();
  await lanes(count, inflight, async (i) => {
    const s = process.hrtime.bigint();
    await call(i);
    ns[i] = Number(process.hrtime.bigint() - s);
  });
  const t1 = process.hrtime.bigint();
  return { ns, wallNs: Number(t1 - t0), startNs: String(t0), endNs: String(t1) };
}

async function main() {
  const [runtimeDir, prefix, countArg, inflightArg, uidArg, warmArg = '50'] = process.argv.slice(2);
  const count = Number(countArg);
  const inflight = Number(inflightArg);
  const uid = Number(uidArg);
  const c = new (sdk().ControlClient)({ runtimeDir });
  // Warm the channel and the JIT on a few throwaway regions.
  for (let i = 0; i < Number(warmArg); i++) {
    const name = `${prefix}-warm-${i}`;
    await c.call('BrokerService', 'CreateRegion', { regionId: name, region: { sizeBytes: 4096 } });
    await c.call('BrokerService', 'CreateGrant', { parent: `regions/${name}`, grant: { uid, mode: 'ACCESS_MODE_READ_ONLY' } });
    await c.call('BrokerService', 'DeleteRegion', { name: `regions/${name}` });
  }
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  const lines = [];
  const waiters = [];
  rl.on('line', (l) => (waiters.length ? waiters.shift()(l) : lines.push(l)));
  const go = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiters.push(r)));
  let cpuUs = 0;
  async function timed(name, fn) {
    await go();
    const cpu0 = process.cpuUsage();
    const r = await phase(count, inflight, fn);
    const cpu = process.cpuUsage(cpu0);
    cpuUs += cpu.user + cpu.system;
    process.stdout.write(JSON.stringify({ phaseDone: name }) + '\n');
    return r;
  }
  const create = await timed('create', (i) => c.call('BrokerService', 'CreateRegion', { regionId: `${prefix}-${i}`, region: { sizeBytes: 4096 } }));
  const grant = await timed('grant', (i) =>
    c.call('BrokerService', 'CreateGrant', { parent: `regions/${prefix}-${i}`, grant: { uid, mode: 'ACCESS_MODE_READ_ONLY' } }),
  );
  const del = await timed('delete', (i) => c.call('BrokerService', 'DeleteRegion', { name: `regions/${prefix}-${i}` }));
  rl.close();
  const cpu = { user: cpuUs, system: 0 };
  c.close();
  process.stdout.write(JSON.stringify({ result: { create, grant, delete: del, cpuUs: cpu.user + cpu.system } }) + '\n');
}
main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
