'use strict';
// 6. Region events: a notify → wake → notify-back round trip between two
// processes through region doorbells (bench/c/events_bench.c, libshmbroker),
// with 1 and with 8 waiters on the notified region, beside two baselines
// measured in the same run: a raw eventfd ping-pong between two C processes
// (the floor) and the same ping-pong through iceoryx (Debian's iceoryx 2.0
// C binding, RouDi started here; 64-byte samples, waitsets), when installed.
// The SDK's round trip (region.notify / region.wait) is reported beside it.
// Goals: p50 ≤ 1.5× the eventfd floor and ≤ 1.0× iceoryx.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const { Broker, Worker, REPO, buildC, runJson, latency, sleep, sdk } = require('../lib/common');

const ICEORYX_INCLUDE = '/usr/include/iceoryx/v2.0.3';

function buildEventsBench() {
  const cdir = path.join(REPO, 'clients', 'c');
  execFileSync('make', ['-s', '-C', cdir, 'lib'], { stdio: ['ignore', 'ignore', 'inherit'] });
  return buildC('events_bench', [`-I${path.join(cdir, 'include')}`, path.join(cdir, 'build', 'libshmbroker.a')]);
}

async function iceoryxRun(bin, rounds, env) {
  // One RouDi per run, stopped afterwards.
  const roudi = spawn('iox-roudi', [], { stdio: 'ignore' });
  try {
    await sleep(1000);
    if (roudi.exitCode !== null) throw new Error(`iox-roudi exited ${roudi.exitCode} (another RouDi running?)`);
    return runJson(bin, [String(rounds)], { env, timeout: 300_000 }).ns;
  } finally {
    roudi.kill('SIGTERM');
    await new Promise((r) => (roudi.exitCode !== null ? r() : roudi.once('exit', r)));
  }
}

module.exports = async function events(ctx) {
  const G = '6. Region events';
  const rounds = ctx.quick ? 500 : 5000;
  const trials = ctx.quick ? 1 : 3;
  const bin = buildEventsBench();
  let iceBin = null;
  if (fs.existsSync(path.join(ICEORYX_INCLUDE, 'iceoryx_binding_c', 'wait_set.h'))) {
    iceBin = buildC('iceoryx_pingpong', [`-I${ICEORYX_INCLUDE}`, '-liceoryx_binding_c']);
  } else {
    ctx.note('iceoryx baseline not measured: Debian packages iceoryx and libiceoryx-binding-c-dev are not installed');
  }
  const broker = await Broker.start();
  const admin = new (sdk().ControlClient)({ runtimeDir: broker.runtimeDir });
  // Every method runs under the same two placements (bench/c/bench_pin.h):
  // pinger and peers on different cores (the usual producer/consumer
  // layout, and the headline figure ids), and all on one core.
  const placements = [
    { key: 'cross', cpus: [0, 1], prefix: 'events', text: 'pinger and peers pinned to different cores' },
    { key: 'same', cpus: [0, 0], prefix: 'events.same_core', text: 'every process pinned to one core' },
  ].filter((p) => Math.max(...p.cpus) < os.cpus().length);
  const ns = Object.fromEntries(placements.map((p) => [p.key, { floor: [], one: [], eight: [], ice: [], sdk: [] }]));
  let n = 0;
  const fresh = async () => {
    // Fresh regions per run: the waiters count notifies from sequence 0.
    n++;
    for (const r of ['ping', 'pong']) await admin.call('BrokerService', 'CreateRegion', { regionId: `ev-${r}-${n}`, region: { sizeBytes: 4096 } });
    return [`ev-ping-${n}`, `ev-pong-${n}`];
  };
  try {
    for (let t = 0; t < trials; t++) {
      for (const pl of placements) {
        const m = ns[pl.key];
        const env = { ...process.env, SHMBROKER_RUNTIME_DIR: broker.runtimeDir, BENCH_CPUS: pl.cpus.join(',') };
        // Interleaved, so a change in machine load hits every method alike.
        m.floor.push(...runJson(bin, ['eventfd', String(rounds)], { env }).ns);
        for (const [waiters, key] of [[1, 'one'], [8, 'eight']]) {
          const [ping, pong] = await fresh();
          m[key].push(...runJson(bin, ['shmb', ping, pong, String(waiters), String(rounds)], { env, timeout: 300_000 }).ns);
        }
        if (iceBin) m.ice.push(...(await iceoryxRun(iceBin, rounds, env)));
        const [ping, pong] = await fresh();
        const warmup = 200;
        const responder = new Worker('events', [broker.runtimeDir, ping, pong, 'responder', String(rounds + warmup)], { cpu: pl.cpus[1] });
        await responder.next((o) => o.ready);
        const pinger = new Worker('events', [broker.runtimeDir, ping, pong, 'pinger', String(rounds), String(warmup)], { cpu: pl.cpus[0] });
        pinger.proc.stdin.write('go\n');
        m.sdk.push(...(await pinger.next((o) => o.ns)).ns);
        await responder.next((o) => o.done);
      }
    }
  } finally {
    admin.close();
    await broker.cleanup();
  }
  for (const pl of placements) figures(ctx, G, pl, ns[pl.key]);
  ctx.note(`region events: ${trials} trial(s) of ${rounds} round trips per method and placement (after 200 warm-up rounds), interleaved; every process separate, the broker idle during the runs (it is not on the notify path). Placements: ${placements.map((p) => `${p.text} (CPUs ${p.cpus.join(',')}; ids ${p.prefix}.*)`).join('; ')}. Unpinned, a ping-pong lands wherever the scheduler puts it, and on this VM a wake on another, idle core costs ~30 µs against ~4 µs on the same core, so every method runs under the same placement.`);
};

function figures(ctx, G, pl, ns) {
  const L = Object.fromEntries(Object.entries(ns).map(([k, v]) => [k, v.length ? latency(v) : null]));
  const P = pl.prefix;
  const where = pl.key === 'same' ? ' (one core)' : '';
  const floorLabel = `raw eventfd ping-pong between two C processes (the floor)${where}`;
  for (const [q, key] of [['p50', 'p50_us'], ['p99', 'p99_us']]) {
    ctx.figure({
      id: `${P}.notify_wake.${q}`,
      group: G,
      label: `C: notify → the other process wakes and notifies back, 1 waiter${where}, ${q}`,
      value: L.one[key],
      unit: 'µs',
      baseline: { label: `${floorLabel}, ${q}`, value: L.floor[key] },
      better: 'lower',
      goal: q === 'p50' ? { ratioMax: 1.5, text: 'p50 ≤ 1.5× the eventfd floor' } : undefined,
      extra: { n: L.one.n },
    });
    ctx.figure({
      id: `${P}.notify_wake_8.${q}`,
      group: G,
      label: `C: the same round trip with 8 waiters on the notified region (all wake; one answers)${where}, ${q}`,
      value: L.eight[key],
      unit: 'µs',
      baseline: { label: `${floorLabel}, ${q}`, value: L.floor[key] },
      better: 'lower',
      extra: { n: L.eight.n },
    });
    if (L.ice) {
      ctx.figure({
        id: `${P}.iceoryx.${q}`,
        group: G,
        label: `iceoryx 2.0 ping-pong (C binding, 64-byte samples, waitsets, RouDi)${where}, ${q}`,
        value: L.ice[key],
        unit: 'µs',
        baseline: { label: `${floorLabel}, ${q}`, value: L.floor[key] },
        better: 'lower',
        extra: { n: L.ice.n },
      });
      ctx.figure({
        id: `${P}.notify_wake.vs_iceoryx.${q}`,
        group: G,
        chart: q === 'p50' && pl.key === 'cross',
        label: `C round trip through region doorbells (1 waiter) against iceoryx${where}, ${q}`,
        value: L.one[key],
        unit: 'µs',
        baseline: { label: `iceoryx ping-pong, ${q}`, value: L.ice[key] },
        better: 'lower',
        goal: q === 'p50' ? { ratioMax: 1.0, text: 'p50 ≤ 1.0× iceoryx' } : undefined,
      });
    }
    ctx.figure({
      id: `${P}.sdk.${q}`,
      group: G,
      label: `SDK: region.notify() → region.wait() in the other Node process and back${where}, ${q}`,
      value: L.sdk[key],
      unit: 'µs',
      baseline: { label: `the same from C, ${q}`, value: L.one[key] },
      better: 'lower',
      extra: { n: L.sdk.n },
    });
  }
}
