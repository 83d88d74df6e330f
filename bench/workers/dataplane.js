'use strict';
// Moving bytes from one process to another, several ways. Each process
// reports {ready}, waits for "go" on stdin, then reports {result} with
// CLOCK_MONOTONIC times (process.hrtime) comparable across processes.
//
//   ring-producer RUNTIME_DIR REGION TOTAL CHUNK SLOTS [sab|ab]  writes TOTAL bytes into the region's ring
//   ring-consumer RUNTIME_DIR REGION TOTAL CHUNK SLOTS [sab|ab]  copies them out into its own buffer
//   grpc-server SOCKET TOTAL  /  grpc-client SOCKET TOTAL CHUNK   a client-streaming gRPC call
//   sock-server SOCKET TOTAL  /  sock-client SOCKET TOTAL CHUNK   a Unix stream socket
//   memcpy TOTAL CHUNK                                    TypedArray.set inside one process
//
// Ring layout: the first 4 KiB hold two Int32 counters (chunks written,
// chunks consumed); slot i is at 4096 + i * CHUNK. Both sides spin on
// Atomics.load over the SharedArrayBuffer (Atomics.wait/notify do not work
// across processes), and after a while sleep 50 µs with Atomics.wait on a
// private buffer so that a starved side yields the CPU.
const readline = require('node:readline');

const BUF_BYTES = 64 << 20; // the producer's source and the consumer's destination
const now = () => process.hrtime.bigint();
const report = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function ready() {
  report({ ready: true });
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((r) =>
    rl.once('line', () => {
      rl.close();
      r();
    }),
  );
}

function pattern(n) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4096) b.fill((i >> 12) & 0xff, i, Math.min(n, i + 4096));
  return b;
}

const nap = new Int32Array(new SharedArrayBuffer(4));
function waitUntil(pred, stats) {
  let spins = 0;
  while (!pred()) {
    if (++spins < 2000) continue;
    stats.sleeps++;
    Atomics.wait(nap, 0, 0, 0.05);
  }
  if (spins) stats.waits++;
}

async function ring(role, runtimeDir, name, total, chunk, slots, view) {
  const { sdk } = require('../lib/common');
  const client = await sdk().connect({ runtimeDir, reconnect: false });
  // view 'sab' (default): a SharedArrayBuffer, as Atomics across processes
  // call for. 'ab': a plain ArrayBuffer over the same MAP_SHARED pages, with
  // Atomics.load/store on its counters (allowed on non-shared buffers too),
  // to see whether the SharedArrayBuffer view costs anything on the copies.
  const region = await client.acquire(name, { mode: 'rw', shared: view !== 'ab' });
  const sab = region.buffer;
  const ctr = new Int32Array(sab, 0, 2);
  const bytes = new Uint8Array(sab);
  const n = Math.floor(total / chunk);
  const stats = { waits: 0, sleeps: 0 };
  const own = role === 'ring-producer' ? pattern(BUF_BYTES) : Buffer.alloc(BUF_BYTES).fill(1);
  await ready();
  const t0 = now();
  if (role === 'ring-producer') {
    for (let k = 0; k < n; k++) {
      waitUntil(() => k - Atomics.load(ctr, 1) < slots, stats);
      const src = (k * chunk) % BUF_BYTES;
      bytes.set(own.subarray(src, src + chunk), 4096 + (k % slots) * chunk);
      Atomics.store(ctr, 0, k + 1);
    }
  } else {
    for (let k = 0; k < n; k++) {
      waitUntil(() => Atomics.load(ctr, 0) > k, stats);
      const dst = (k * chunk) % BUF_BYTES;
      own.set(bytes.subarray(4096 + (k % slots) * chunk, 4096 + (k % slots) * chunk + chunk), dst);
      Atomics.store(ctr, 1, k + 1);
    }
    // Spot-check that the bytes arrived: page p of the pattern holds p & 0xff.
    for (const off of [0, 4096 * 3, BUF_BYTES - 4096]) {
      if (own[off] !== ((off >> 12) & 0xff)) throw new Error(`ring delivered wrong bytes at ${off}: ${own[off]}`);
    }
  }
  const t1 = now();
  await region.release();
  client.close();
  report({ result: { t0: String(t0), t1: String(t1), bytes: n * chunk, ...stats } });
}

async function grpcServer(sock, total) {
  const grpc = require('@grpc/grpc-js');
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20 });
  const ident = (b) => b;
  let got = 0;
  let tEnd = 0n;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const dst = Buffer.alloc(BUF_BYTES).fill(1);
  server.addService(
    { Push: { path: '/bench.Sink/Push', requestStream: true, responseStream: false, requestSerialize: ident, requestDeserialize: ident, responseSerialize: ident, responseDeserialize: ident } },
    {
      Push: (call, cb) => {
        call.on('data', (b) => {
          b.copy(dst, got % BUF_BYTES);
          got += b.length;
        });
        call.on('end', () => {
          tEnd = now();
          cb(null, Buffer.from('ok'));
          resolveDone();
        });
      },
    },
  );
  await new Promise((res, rej) => server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  await ready();
  await done;
  await new Promise((r) => server.tryShutdown(r));
  report({ result: { t1: String(tEnd), bytes: got } });
  void total;
}

async function grpcClient(sock, total, chunk) {
  const grpc = require('@grpc/grpc-js');
  const ident = (b) => b;
  const Ctor = grpc.makeGenericClientConstructor(
    { Push: { path: '/bench.Sink/Push', requestStream: true, responseStream: false, requestSerialize: ident, requestDeserialize: ident, responseSerialize: ident, responseDeserialize: ident } },
    'Sink',
  );
  const c = new Ctor(`unix:${sock}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });
  await new Promise((res, rej) => c.waitForReady(Date.now() + 10000, (e) => (e ? rej(e) : res())));
  const src = pattern(BUF_BYTES);
  await ready();
  const t0 = now();
  await new Promise((resolve, reject) => {
    const call = c.Push((err) => (err ? reject(err) : resolve()));
    const n = Math.floor(total / chunk);
    let k = 0;
    const pump = () => {
      while (k < n) {
        const off = (k * chunk) % BUF_BYTES;
        k++;
        // grpc-js frames the message into its own buffer: a copy, as a real sender's would be.
        if (!call.write(src.subarray(off, off + chunk))) return call.once('drain', pump);
      }
      call.end();
    };
    pump();
  });
  c.close();
  report({ result: { t0: String(t0) } });
}

async function sockServer(sock, total) {
  const net = require('node:net');
  const dst = Buffer.alloc(BUF_BYTES).fill(1);
  let got = 0;
  let tEnd = 0n;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const server = net.createServer((s) => {
    s.on('data', (b) => {
      // Received into Node's read buffer by the kernel (one copy); place it
      // in this process's destination like the ring consumer does.
      b.copy(dst, got % BUF_BYTES);
      got += b.length;
    });
    s.on('end', () => {
      tEnd = now();
      s.end();
      resolveDone();
    });
  });
  await new Promise((r) => server.listen(sock, r));
  await ready();
  await done;
  server.close();
  report({ result: { t1: String(tEnd), bytes: got } });
  void total;
}

async function sockClient(sock, total, chunk) {
  const net = require('node:net');
  const s = net.connect(sock);
  await new Promise((r) => s.once('connect', r));
  const src = pattern(BUF_BYTES);
  await ready();
  const t0 = now();
  const n = Math.floor(total / chunk);
  let k = 0;
  await new Promise((resolve) => {
    const pump = () => {
      while (k < n) {
        const off = (k * chunk) % BUF_BYTES;
        k++;
        if (!s.write(src.subarray(off, off + chunk))) return s.once('drain', pump);
      }
      s.end(resolve);
    };
    pump();
  });
  report({ result: { t0: String(t0) } });
}

async function memcpy(total, chunk) {
  const src = pattern(BUF_BYTES);
  const dst = Buffer.alloc(BUF_BYTES).fill(1);
  await ready();
  const t0 = now();
  const n = Math.floor(total / chunk);
  for (let k = 0; k < n; k++) {
    const off = (k * chunk) % BUF_BYTES;
    dst.set(src.subarray(off, off + chunk), off);
  }
  const t1 = now();
  report({ result: { t0: String(t0), t1: String(t1), bytes: n * chunk } });
}

async function main() {
  const [role, ...a] = process.argv.slice(2);
  if (role === 'ring-producer' || role === 'ring-consumer') return ring(role, a[0], a[1], Number(a[2]), Number(a[3]), Number(a[4]), a[5] ?? 'sab');
  if (role === 'grpc-server') return grpcServer(a[0], Number(a[1]));
  if (role === 'grpc-client') return grpcClient(a[0], Number(a[1]), Number(a[2]));
  if (role === 'sock-server') return sockServer(a[0], Number(a[1]));
  if (role === 'sock-client') return sockClient(a[0], Number(a[1]), Number(a[2]));
  if (role === 'memcpy') return memcpy(Number(a[0]), Number(a[1]));
  throw new Error(`unknown role ${role}`);
}
main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
