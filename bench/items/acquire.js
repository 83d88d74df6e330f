'use strict';
// 1. Acquire: SDK acquire + map + first touch + release of an already-granted
// region, against the raw floor in C (memfd + SCM_RIGHTS over a socketpair +
// mmap + touch + munmap), both in this run, interleaved in rounds so that
// load drifts hit both sides.
const { Broker, Worker, buildC, runJson, latency, granteeUid, sdk } = require('../lib/common');

const SIZES = [
  { label: '4 KiB', bytes: 4096, id: '4k' },
  { label: '64 MiB', bytes: 64 << 20, id: '64m' },
];

module.exports = async function acquire(ctx) {
  const trials = ctx.quick ? 200 : 1500;
  const warmup = ctx.quick ? 30 : 200;
  // The SDK side warms up longer: a fresh Node client is still compiling the
  // SDK (and the broker its handlers) for its first ~1,000-2,000 cycles. With
  // 200 warm-up cycles the p50 of 1,500 trials was 147-174 µs where the same
  // client after 3,000 measured 86-88 µs (load 12, 2026-12-03; its first 500
  // trials 167-207 µs, its last 500 106-127 µs): the figure measured V8's
  // compiler, not an acquire. The C floor has nothing to compile.
  const sdkWarmup = ctx.quick ? 300 : 3000;
  const rounds = ctx.quick ? 1 : 3;
  const floorBin = buildC('acquire_floor');
  const broker = await Broker.start();
  const admin = new (sdk().ControlClient)({ runtimeDir: broker.runtimeDir });
  const uid = granteeUid();
  const G = '1. Acquire';
  try {
    // What the broker burns while idle (timers, metrics, GC), to read the
    // per-cycle CPU figures against: a slow cycle accrues more of it.
    {
      const { sleep } = require('../lib/common');
      const c0 = broker.cpuMs();
      const t0 = Date.now();
      await sleep(ctx.quick ? 1000 : 3000);
      ctx.figure({
        id: 'acquire.broker_idle_cpu',
        group: G,
        label: 'broker CPU while idle (10 ms ticks)',
        value: ((broker.cpuMs() - c0) / (Date.now() - t0)) * 1000,
        unit: 'ms/s',
        baseline: { label: 'one core', value: 1000 },
        better: 'lower',
      });
    }
    for (const s of SIZES) {
      const name = `bench-acquire-${s.id}`;
      await admin.call('BrokerService', 'CreateRegion', { regionId: name, region: { sizeBytes: s.bytes } });
      if (uid !== undefined) {
        await admin.call('BrokerService', 'CreateGrant', { parent: `regions/${name}`, grant: { uid, mode: 'ACCESS_MODE_READ_WRITE' } });
      }
      const sdkNs = [];
      const sabNs = [];
      const floorNs = [];
      const floorRelNs = [];
      let brokerCpuMs = 0;
      let clientCpuUs = 0;
      for (let r = 0; r < rounds; r++) {
        floorNs.push(...runJson(floorBin, [String(s.bytes), String(trials), String(warmup)]).ns);
        const c0 = broker.cpuMs();
        const w = new Worker('acquire', [broker.runtimeDir, name, String(trials), String(sdkWarmup)], { uid });
        const res = await w.done();
        brokerCpuMs += broker.cpuMs() - c0;
        clientCpuUs += res.cpuUs;
        sdkNs.push(...res.ns);
        const w2 = new Worker('acquire', [broker.runtimeDir, name, String(trials), String(sdkWarmup), 'shared'], { uid });
        sabNs.push(...(await w2.done()).ns);
        floorRelNs.push(...runJson(floorBin, [String(s.bytes), String(trials), String(warmup), '--release']).ns);
      }
      const sdkL = latency(sdkNs);
      const sabL = latency(sabNs);
      const floorL = latency(floorNs);
      const relL = latency(floorRelNs);
      const base = 'C floor: request, fd by SCM_RIGHTS, mmap, touch, munmap, close';
      for (const [q, key] of [['p50', 'p50_us'], ['p99', 'p99_us']]) {
        ctx.figure({
          id: `acquire.${s.id}.${q}`,
          group: G,
          label: `SDK acquire+map+touch+release, ${s.label}, ${q} (ArrayBuffer, the default)`,
          value: sdkL[key],
          unit: 'µs',
          baseline: { label: `${base}, ${q}`, value: floorL[key] },
          better: 'lower',
          // Issue 19: ≤ 3× the floor measured beside it; the aim is 1.5×.
          goal: q === 'p50' ? { ratioMax: 3, text: 'p50 ≤ 3× floor (aim 1.5×)' } : undefined,
        });
      }
      ctx.figure({
        id: `acquire.${s.id}.sab.p50`, chart: true,
        group: G,
        label: `SDK acquire as SharedArrayBuffer (shared: true), ${s.label}, p50`,
        value: sabL.p50_us,
        unit: 'µs',
        baseline: { label: `${base}, p50`, value: floorL.p50_us },
        better: 'lower',
        extra: { p99_us: sabL.p99_us },
      });
      ctx.figure({
        id: `acquire.${s.id}.vs_floor_with_release.p50`,
        group: G,
        label: `SDK acquire+…+release, ${s.label}, p50, against a C floor that also sends a release and waits for its reply (2 round trips, as the SDK does)`,
        value: sdkL.p50_us,
        unit: 'µs',
        baseline: { label: 'C floor with release round trip, p50', value: relL.p50_us },
        better: 'lower',
      });
      const cycles = rounds * (trials + sdkWarmup);
      ctx.figure({
        id: `acquire.${s.id}.broker_cpu`,
        group: G,
        label: `broker CPU per acquire+release, ${s.label} (from /proc, 10 ms ticks)`,
        value: (brokerCpuMs * 1000) / cycles,
        unit: 'µs',
        baseline: { label: 'C floor p50 (whole cycle, both processes)', value: floorL.p50_us },
        better: 'lower',
      });
      if (s.id === '4k') {
        ctx.figure({
          id: 'acquire.broker_cpu_per_cycle',
          group: G,
          label: 'broker CPU per acquire+release cycle, 4 KiB, µs (from /proc, 10 ms ticks)',
          value: (brokerCpuMs * 1000) / cycles,
          unit: 'µs',
          baseline: { label: 'C floor p50 (whole cycle, both processes)', value: floorL.p50_us },
          better: 'lower',
        });
      }
      ctx.figure({
        id: `acquire.${s.id}.client_cpu`,
        group: G,
        label: `client CPU per acquire+release, ${s.label} (includes Node start)`,
        value: clientCpuUs / cycles,
        unit: 'µs',
        baseline: { label: 'C floor p50 (whole cycle, both processes)', value: floorL.p50_us },
        better: 'lower',
      });
      ctx.note(`acquire ${s.label}: ${rounds} round(s) × ${trials} trials per side (after ${sdkWarmup} warm-up cycles for the SDK client, ${warmup} for the C floor), SDK client as uid ${uid ?? process.getuid()} through a rw grant`);
    }
  } finally {
    admin.close();
    await broker.cleanup();
  }
};
