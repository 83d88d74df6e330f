'use strict';
// 3. Data plane: move 1 GiB from one process to another through a region (a
// ring of chunks synchronised with Atomics on a SharedArrayBuffer), against
// the same bytes over a gRPC stream and over a Unix socket, and against
// memcpy inside one process. Goal: region throughput ≥ 0.8× memcpy.
const fs = require('node:fs');
const path = require('node:path');
const { Broker, Worker, buildC, runJson, median, makeTempDir, sdk } = require('../lib/common');

async function pair(a, b) {
  // The receiving side first: it listens (or maps the ring) before the sender connects.
  const wb = b ? new Worker('dataplane', b) : null;
  let wa;
  try {
    if (wb) await wb.next((o) => o.ready);
    wa = new Worker('dataplane', a);
    await wa.next((o) => o.ready);
    // Start the receiving side first so it is already waiting.
    if (wb) wb.send('go');
    wa.send('go');
    const [ra, rb] = await Promise.all([wa.done(), wb?.done()]);
    const t0 = BigInt(ra.t0 ?? rb.t0);
    const t1 = BigInt(rb?.t1 ?? ra.t1);
    return { seconds: Number(t1 - t0) / 1e9, a: ra, b: rb };
  } finally {
    wa?.kill();
    wb?.kill();
  }
}

module.exports = async function dataplane(ctx) {
  const G = '3. Data plane';
  const GiB = 1 << 30;
  const total = ctx.quick ? 128 << 20 : GiB;
  const chunk = 256 << 10;
  const slots = 16;
  const trials = ctx.quick ? 1 : 5;
  const memcpyBin = buildC('memcpy_floor');
  const broker = await Broker.start();
  const admin = new (sdk().ControlClient)({ runtimeDir: broker.runtimeDir });
  const sockDir = makeTempDir('shmbroker-bench-sock-');
  const rates = { ringAb: [], ring: [], grpc: [], sock: [], memcpyNode: [], memcpyC: [] };
  try {
    await admin.call('BrokerService', 'CreateRegion', { regionId: 'bench-ring', region: { sizeBytes: 4096 + slots * chunk } });
    for (let t = 0; t < trials; t++) {
      // Interleaved, so a change in machine load hits every method alike.
      const rc = runJson(memcpyBin, [String(total), String(chunk), '3']);
      rates.memcpyC.push(...rc.ns.map((ns) => total / (ns / 1e9)));
      const m = await pair(['memcpy', String(total), String(chunk)]);
      rates.memcpyNode.push(m.a.bytes / m.seconds);
      for (const view of ['sab', 'ab']) {
        // A fresh ring: zero the two counters through the region itself.
        const c = await sdk().connect({ runtimeDir: broker.runtimeDir, reconnect: false });
        const r = await c.acquire('bench-ring', { mode: 'rw', shared: true });
        new Int32Array(r.buffer, 0, 2).fill(0);
        await r.release();
        c.close();
        const args = [broker.runtimeDir, 'bench-ring', String(total), String(chunk), String(slots), view];
        const ring = await pair(['ring-producer', ...args], ['ring-consumer', ...args]);
        (view === 'sab' ? rates.ring : rates.ringAb).push(total / ring.seconds);
        if (t === 0) ctx.note(`ring (${view}) waits/sleeps: producer ${ring.a.waits}/${ring.a.sleeps}, consumer ${ring.b.waits}/${ring.b.sleeps} (a wait is a chunk that was not ready; a sleep is 50 µs off the CPU after 2,000 spins)`);
      }
      const gs = path.join(sockDir, `grpc-${t}.sock`);
      const g = await pair(['grpc-client', gs, String(total), String(chunk)], ['grpc-server', gs, String(total)]);
      if (g.b.bytes !== total) throw new Error(`gRPC moved ${g.b.bytes} of ${total} bytes`);
      rates.grpc.push(total / g.seconds);
      const us = path.join(sockDir, `unix-${t}.sock`);
      const u = await pair(['sock-client', us, String(total), String(chunk)], ['sock-server', us, String(total)]);
      if (u.b.bytes !== total) throw new Error(`the Unix socket moved ${u.b.bytes} of ${total} bytes`);
      rates.sock.push(total / u.seconds);
    }
  } finally {
    admin.close();
    await broker.cleanup();
    fs.rmSync(sockDir, { recursive: true, force: true });
  }
  const MB = 1e6;
  const med = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v) / MB]));
  const size = `${total / GiB >= 1 ? `${total / GiB} GiB` : `${total >> 20} MiB`}`;
  // The goal's baseline is the faster of the two memcpys measured (C memcpy,
  // and TypedArray.set in one Node process: the very copy the ring uses).
  const fasterNode = med.memcpyNode > med.memcpyC;
  const goalBase = Math.max(med.memcpyC, med.memcpyNode);
  const goalLabel = `memcpy in one process, the faster of C memcpy (${Math.round(med.memcpyC)} MB/s) and Node TypedArray.set (${Math.round(med.memcpyNode)} MB/s): ${fasterNode ? 'Node' : 'C'}`;
  const memcpyLabel = 'memcpy in one process (C, same chunk and buffer sizes)';
  ctx.figure({
    id: 'dataplane.ring',
    group: G,
    label: `${size} process → process through a region ring (${slots} × ${chunk >> 10} KiB slots; copy in, copy out)`,
    value: med.ring,
    unit: 'MB/s',
    baseline: { label: goalLabel, value: goalBase },
    better: 'higher',
    goal: { ratioMin: 0.8, text: 'region ≥ 0.8× memcpy' },
    extra: { trials: rates.ring.length, min: Math.min(...rates.ring) / MB, max: Math.max(...rates.ring) / MB, vsCmemcpy: med.ring / med.memcpyC },
  });
  ctx.figure({
    id: 'dataplane.ring_ab',
    group: G,
    label: `${size} through the same ring mapped as a plain ArrayBuffer (shared: false; Atomics.load/store on the counters)`,
    value: med.ringAb,
    unit: 'MB/s',
    baseline: { label: memcpyLabel, value: med.memcpyC },
    better: 'higher',
    extra: { trials: rates.ringAb.length, min: Math.min(...rates.ringAb) / MB, max: Math.max(...rates.ringAb) / MB },
  });
  ctx.figure({ id: 'dataplane.ring_vs_node_memcpy', group: G, label: 'region ring, against memcpy in one Node process (TypedArray.set)', value: med.ring, unit: 'MB/s', baseline: { label: 'Node TypedArray.set in one process', value: med.memcpyNode }, better: 'higher' });
  ctx.figure({ id: 'dataplane.grpc', group: G, label: `${size} over a gRPC client stream (grpc-js, Unix socket, ${chunk >> 10} KiB messages)`, value: med.grpc, unit: 'MB/s', baseline: { label: memcpyLabel, value: med.memcpyC }, better: 'higher' });
  ctx.figure({ id: 'dataplane.sock', group: G, label: `${size} over a Unix stream socket (Node net, ${chunk >> 10} KiB writes)`, value: med.sock, unit: 'MB/s', baseline: { label: memcpyLabel, value: med.memcpyC }, better: 'higher' });
  ctx.figure({ id: 'dataplane.ring_vs_grpc', chart: true, group: G, label: 'region ring against the gRPC stream', value: med.ring, unit: 'MB/s', baseline: { label: 'gRPC stream', value: med.grpc }, better: 'higher' });
  ctx.figure({ id: 'dataplane.ring_vs_sock', chart: true, group: G, label: 'region ring against the Unix socket', value: med.ring, unit: 'MB/s', baseline: { label: 'Unix socket', value: med.sock }, better: 'higher' });
  ctx.figure({ id: 'dataplane.memcpy_node', group: G, label: 'memcpy in one Node process (TypedArray.set)', value: med.memcpyNode, unit: 'MB/s', baseline: { label: memcpyLabel, value: med.memcpyC }, better: 'higher', extra: { nodeMin: Math.min(...rates.memcpyNode) / MB, nodeMax: Math.max(...rates.memcpyNode) / MB, cMin: Math.min(...rates.memcpyC) / MB, cMax: Math.max(...rates.memcpyC) / MB } });
  ctx.note(`data plane: ${trials} trial(s) of ${size} per method, interleaved; medians. Producer and consumer are separate node processes; source and destination buffers are 64 MiB each, reused; every method copies into a destination buffer in the receiving process`);
};
