'use strict';
// 2. Control plane: CreateRegion + CreateGrant + DeleteRegion over gRPC on the
// Unix socket; one client, and 8 clients (8 processes) at once. ops/s and
// p50/p99 per call. Goal: at least 5,000 creates/s from one client.
const fs = require('node:fs');
const { Broker, Worker, latency, granteeUid, buildC, runJson, makeTempDir, procCpuMs } = require('../lib/common');

// Warm-up rounds (create+grant+delete) each client makes before it is timed.
// A broker compiles its handlers (V8 TurboFan) over the first ~2,000 calls
// after start: with 50 rounds, V8's optimising compiler was about half of the
// broker's instructions per CreateRegion even after 600 creates (callgrind,
// issue 19), so the figure measured a broker just started, not a running one.
// The empty unary baseline gets its own warm-up (200 calls, bench/workers/unary.js).
let WARM_ROUNDS = 300;

const minOf = (xs) => xs.reduce((a, b) => (BigInt(b) < BigInt(a) ? b : a));
const maxOf = (xs) => xs.reduce((a, b) => (BigInt(b) > BigInt(a) ? b : a));

async function runClients(broker, n, count, inflight, tag) {
  const workers = Array.from(
    { length: n },
    (_, k) => new Worker('control', [broker.runtimeDir, `bench-${tag}-${k}`, String(count), String(inflight), String(granteeUid() ?? 1000), String(WARM_ROUNDS)]),
  );
  try {
    await Promise.all(workers.map((w) => w.next((o) => o.ready)));
    // One phase at a time across all workers, so the broker's CPU is read per operation.
    const brokerCpuMs = {};
    const t0 = process.hrtime.bigint();
    for (const op of ['create', 'grant', 'delete']) {
      const c0 = broker.cpuMs();
      for (const w of workers) w.send('go');
      await Promise.all(workers.map((w) => w.next((o) => o.phaseDone === op)));
      brokerCpuMs[op] = broker.cpuMs() - c0;
    }
    const results = await Promise.all(workers.map((w) => w.done()));
    const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
    const merged = {};
    for (const op of ['create', 'grant', 'delete']) {
      const ns = results.flatMap((r) => r[op].ns);
      // Aggregate rate: all clients' calls over the span from the first
      // client's start to the last one's end (one monotonic clock), not over
      // the longest client's own phase, which left out the time the clients
      // (told "go" one after the other) did not overlap.
      const wall = Number(BigInt(maxOf(results.map((r) => r[op].endNs))) - BigInt(minOf(results.map((r) => r[op].startNs)))) / 1e9;
      merged[op] = { ...latency(ns), opsPerS: ns.length / wall, brokerCpuUsPerCall: (brokerCpuMs[op] * 1000) / (n * count) };
    }
    const totalCpuMs = brokerCpuMs.create + brokerCpuMs.grant + brokerCpuMs.delete;
    return { merged, wallS, brokerCpuUsPerCall: (totalCpuMs * 1000) / (3 * n * count), clientCpuUsPerCall: results.reduce((a, r) => a + r.cpuUs, 0) / (3 * n * count) };
  } finally {
    workers.forEach((w) => w.kill());
  }
}

/** The empty unary baseline (grpc.health.v1 Check) on the same broker: ops/s, latency and broker CPU per call. */
async function runUnary(broker, count, inflight) {
  const w = new Worker('unary', [broker.runtimeDir, String(count), String(inflight)]);
  try {
    await w.next((o) => o.ready);
    const c0 = broker.cpuMs();
    w.send('go');
    const r = await w.done();
    const brokerCpuUsPerCall = ((broker.cpuMs() - c0) * 1000) / count;
    return { ...latency(r.ns), opsPerS: count / (r.wallNs / 1e9), brokerCpuUsPerCall, clientCpuUsPerCall: r.cpuUs / count };
  } finally {
    w.kill();
  }
}

const OPS = { create: 'CreateRegion', grant: 'CreateGrant', delete: 'DeleteRegion' };

module.exports = async function control(ctx) {
  const G = '2. Control plane';
  const GOAL = 5000;
  WARM_ROUNDS = ctx.quick ? 50 : 300;
  const os = require('node:os');
  const fsyncBin = buildC('fsync_floor');
  const variants = [
    // 3,000 calls per phase on disk too (was 600, from when every disk commit
    // had its fsync): a 16-in-flight phase of 600 lasted ~0.2 s, and its ratio
    // swung 0.22-0.77x between runs of the same code.
    { id: 'disk', what: `state on disk (${os.tmpdir()}), durable as shipped`, base: os.tmpdir(), count: ctx.quick ? 30 : 3000 },
    { id: 'tmpfs', what: 'state on tmpfs (/dev/shm): fsync is free, so this is the CPU path', base: '/dev/shm', count: ctx.quick ? 100 : 3000 },
  ];
  // The durability floor of this disk, in the same run.
  const fsyncNs = runJson(fsyncBin, [os.tmpdir(), String(ctx.quick ? 100 : 500)]).ns;
  const fsyncL = latency(fsyncNs);
  // strace of the broker: a CreateRegion commit appends ~19 pages to the WAL
  // (region, quota charge and audit rows with their indexes), a CreateGrant ~17.
  const WAL_PAGES = 19;
  const walL = latency(runJson(fsyncBin, [os.tmpdir(), String(ctx.quick ? 50 : 300), String(WAL_PAGES)]).ns);
  ctx.figure({
    id: 'control.fsync_floor_wal',
    group: G,
    label: `floor: ${WAL_PAGES} × 4 KiB appended + fdatasync (what one CreateRegion commit writes), p50`,
    value: walL.p50_us,
    unit: 'µs',
    baseline: { label: 'budget per create at 5,000 creates/s', value: 200 },
    better: 'lower',
    extra: { p99_us: walL.p99_us, maxCommitsPerS: 1e6 / walL.p50_us },
  });
  ctx.figure({
    id: 'control.fsync_floor',
    group: G,
    label: `floor: 4 KiB write + fdatasync on ${os.tmpdir()}'s disk, p50 (max durable commits/s = 1e6 / this)`,
    value: fsyncL.p50_us,
    unit: 'µs',
    baseline: { label: 'budget per create at 5,000 creates/s', value: 200 },
    better: 'lower',
    extra: { p99_us: fsyncL.p99_us, maxCommitsPerS: 1e6 / fsyncL.p50_us },
  });
  for (const v of variants) {
    const broker = await Broker.start({ base: v.base });
    try {
      const { u1a, u1b, u16a, u16b, unary1, unary16, one, pipe, eight } = await measure(broker, v.count);
      ctx.figure({
        id: `control.${v.id}.unary.one.ops`,
        group: G,
        label: `empty unary (grpc.health.v1 Check on broker.sock), 1 client, one call at a time, ${v.id}`,
        value: unary1.opsPerS,
        unit: 'ops/s',
        baseline: { label: 'goal 5,000 creates/s', value: GOAL },
        better: 'higher',
        extra: { p50_us: unary1.p50_us, before: u1a.opsPerS, after: u1b.opsPerS, brokerCpuUsPerCall: unary1.cpu },
      });
      ctx.figure({
        id: `control.${v.id}.unary.inflight16.ops`,
        group: G,
        label: `empty unary (grpc.health.v1 Check on broker.sock), 1 client, 16 calls in flight, ${v.id}`,
        value: unary16.opsPerS,
        unit: 'ops/s',
        baseline: { label: 'goal 5,000 creates/s', value: GOAL },
        better: 'higher',
        extra: { p50_us: unary16.p50_us, before: u16a.opsPerS, after: u16b.opsPerS },
      });
      ctx.figure({
        id: `control.${v.id}.create.one.vs_unary`, chart: v.id === 'tmpfs',
        group: G,
        label: `CreateRegion, 1 client, one call at a time, ${v.id}, against the empty unary call`,
        value: one.merged.create.opsPerS,
        unit: 'ops/s',
        baseline: { label: 'empty unary (health Check), one at a time, same broker, ops/s', value: unary1.opsPerS },
        better: 'higher',
        goal: v.id === 'disk' ? { ratioMin: 0.8, text: 'CreateRegion ≥ 0.8× an empty unary, one at a time' } : undefined,
      });
      ctx.figure({
        id: `control.${v.id}.create.inflight16.vs_unary`, chart: v.id === 'tmpfs',
        group: G,
        label: `CreateRegion, 1 client, 16 calls in flight, ${v.id}, against the empty unary call`,
        value: pipe.merged.create.opsPerS,
        unit: 'ops/s',
        baseline: { label: 'empty unary (health Check), 16 in flight, same broker, ops/s', value: unary16.opsPerS },
        better: 'higher',
        goal: v.id === 'disk' ? { ratioMin: 0.8, text: 'CreateRegion ≥ 0.8× an empty unary, 16 in flight' } : undefined,
      });
      ctx.figure({
        id: `control.${v.id}.create.clients8.scaling`, chart: v.id === 'tmpfs',
        group: G,
        label: `CreateRegion, 8 client processes against 1, ${v.id}`,
        value: eight.merged.create.opsPerS,
        unit: 'ops/s',
        baseline: { label: 'CreateRegion, 1 client process, ops/s', value: one.merged.create.opsPerS },
        better: 'higher',
        goal: v.id === 'disk' ? { ratioMin: 1.5, text: '8 clients ≥ 1.5× one' } : undefined,
      });
      for (const op of ['create', 'grant', 'delete']) {
        ctx.figure({
          id: v.id === 'disk' && op === 'create' ? 'control.broker_cpu_per_create' : `control.${v.id}.broker_cpu_per_${op}`,
          group: G,
          label: `broker CPU per ${OPS[op]} (1 client, one at a time), ${v.id}`,
          value: one.merged[op].brokerCpuUsPerCall,
          unit: 'µs',
          baseline: { label: 'broker CPU per empty unary call, same broker', value: unary1.cpu },
          better: 'lower',
        });
      }
      ctx.figure({
        id: `control.${v.id}.create.one.ops`, chart: true,
        group: G,
        label: `CreateRegion, 1 client, one call at a time, ${v.what}`,
        value: one.merged.create.opsPerS,
        unit: 'ops/s',
        baseline: { label: 'goal 5,000 creates/s (Ray plasma publishes ~5,200 puts/s/client; not measured here)', value: GOAL },
        better: 'higher',
        extra: { p50_us: one.merged.create.p50_us, p99_us: one.merged.create.p99_us },
      });
      ctx.figure({
        id: `control.${v.id}.create.pipelined.ops`,
        group: G,
        label: `CreateRegion, 1 client, 16 calls in flight on one channel, ${v.id}`,
        value: pipe.merged.create.opsPerS,
        unit: 'ops/s',
        baseline: { label: 'goal 5,000 creates/s', value: GOAL },
        better: 'higher',
        extra: { p50_us: pipe.merged.create.p50_us, p99_us: pipe.merged.create.p99_us },
      });
      for (const [tag, r, who] of [
        ['one', one, '1 client'],
        ['eight', eight, '8 clients'],
      ]) {
        for (const op of ['create', 'grant', 'delete']) {
          if (!(tag === 'one' && op === 'create')) {
            ctx.figure({
              id: `control.${v.id}.${op}.${tag}.ops`,
              group: G,
              label: `${OPS[op]}, ${who}, ${v.id}: throughput`,
              value: r.merged[op].opsPerS,
              unit: 'ops/s',
              baseline: tag === 'eight' ? { label: `${OPS[op]}, 1 client, ops/s`, value: one.merged[op].opsPerS } : { label: 'goal rate 5,000 ops/s', value: GOAL },
              better: 'higher',
            });
          }
          for (const q of ['p50', 'p99']) {
            ctx.figure({
              id: `control.${v.id}.${op}.${tag}.${q}`,
              group: G,
              label: `${OPS[op]}, ${who}, ${v.id}: latency ${q}`,
              value: r.merged[op][`${q}_us`],
              unit: 'µs',
              baseline:
                v.id === 'disk'
                  ? { label: `fsync floor (${WAL_PAGES} pages) ${q}`, value: walL[`${q}_us`] }
                  : { label: 'budget at 5,000 ops/s (200 µs)', value: 200 },
              better: 'lower',
            });
          }
        }
      }
      ctx.figure({
        id: `control.${v.id}.broker_cpu_per_call`,
        group: G,
        label: `broker CPU per call (create/grant/delete mix, 1 client), ${v.id}`,
        value: one.brokerCpuUsPerCall,
        unit: 'µs',
        baseline: { label: 'budget at 5,000 ops/s (200 µs)', value: 200 },
        better: 'lower',
      });
      ctx.figure({
        id: `control.${v.id}.client_cpu_per_call`,
        group: G,
        label: `client CPU per call (grpc-js, create/grant/delete mix, 1 client), ${v.id}`,
        value: one.clientCpuUsPerCall,
        unit: 'µs',
        baseline: { label: 'budget at 5,000 ops/s (200 µs)', value: 200 },
        better: 'lower',
      });
      ctx.note(`control plane (${v.what}): ${v.count} calls per phase for 1 client; ${Math.ceil(v.count / 4)} per client for 8 clients (8 node processes); 4 KiB memfd regions; each client first makes ${WARM_ROUNDS} warm-up rounds of create+grant+delete`);
    } finally {
      await broker.cleanup();
    }
  }

  // The floor of the three ratios: the same clients against a grpc-js server
  // whose CreateRegion does nothing (bench/workers/noop-control.js). A
  // CreateRegion that allocates, charges, audits and commits cannot beat it.
  const count = ctx.quick ? 100 : 3000;
  const floor = await NoopServer.start();
  try {
    const { unary1, unary16, one, pipe, eight } = await measure(floor, count);
    const rows = [
      ['one', one.merged.create.opsPerS, unary1.opsPerS, 'CreateRegion, 1 client, one call at a time', 'empty unary, one at a time, same server'],
      ['inflight16', pipe.merged.create.opsPerS, unary16.opsPerS, 'CreateRegion, 1 client, 16 calls in flight', 'empty unary, 16 in flight, same server'],
      ['clients8', eight.merged.create.opsPerS, one.merged.create.opsPerS, 'CreateRegion, 8 client processes against 1', 'no-op CreateRegion, 1 client process'],
    ];
    for (const [id, value, base, label, baseLabel] of rows) {
      ctx.figure({
        id: `control.floor.create.${id}`,
        group: G,
        label: `floor: ${label}, against a grpc-js server whose CreateRegion does nothing (no state, no audit, no memfd)`,
        value,
        unit: 'ops/s',
        baseline: { label: `${baseLabel}, ops/s`, value: base },
        better: 'higher',
        extra: { serverCpuUsPerCreate: one.merged.create.brokerCpuUsPerCall, clientCpuUsPerCall: one.clientCpuUsPerCall },
      });
    }
  } finally {
    floor.cleanup();
  }
};

/**
 * Section 2's measurement of one server (a broker, or the no-op floor): the
 * empty unary baseline on the same server before and after the CreateRegion
 * phases, so load drifts hit both sides; 1 client one at a time, 1 client
 * with 16 in flight, 8 client processes.
 */
async function measure(server, count) {
  const unaryCount = count * 2;
  const u1a = await runUnary(server, unaryCount, 1);
  const u16a = await runUnary(server, unaryCount, 16);
  const one = await runClients(server, 1, count, 1, 'one');
  const pipe = await runClients(server, 1, count, 16, 'pipe');
  const eight = await runClients(server, 8, Math.ceil(count / 4), 1, 'eight');
  const u1b = await runUnary(server, unaryCount, 1);
  const u16b = await runUnary(server, unaryCount, 16);
  const mean = (a, b, k) => (a[k] + b[k]) / 2;
  const unary1 = { opsPerS: mean(u1a, u1b, 'opsPerS'), p50_us: mean(u1a, u1b, 'p50_us'), cpu: mean(u1a, u1b, 'brokerCpuUsPerCall') };
  const unary16 = { opsPerS: mean(u16a, u16b, 'opsPerS'), p50_us: mean(u16a, u16b, 'p50_us') };
  return { u1a, u1b, u16a, u16b, unary1, unary16, one, pipe, eight };
}

/** The no-op server as section 2 drives a broker: runtimeDir, cpuMs(), cleanup(). */
class NoopServer {
  static async start() {
    const s = new NoopServer();
    s.dir = makeTempDir('shmbroker-floor-');
    s.runtimeDir = s.dir;
    s.worker = new Worker('noop-control', [s.dir]);
    await s.worker.next((o) => o.ready);
    return s;
  }

  cpuMs() {
    return procCpuMs(this.worker.proc.pid);
  }

  cleanup() {
    this.worker.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
