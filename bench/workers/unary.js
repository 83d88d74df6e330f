'use strict';
// The empty-unary baseline of the control plane: grpc.health.v1.Health/Check
// on the broker's own socket (broker.sock), through grpc-js exactly as the
// SDK's ControlClient reaches it, with nothing behind it but grpc-js itself.
// Whatever CreateRegion costs beyond this is the broker's own work.
//   node unary.js RUNTIME_DIR COUNT INFLIGHT
// Reports {ready}, waits for "go" on stdin, then reports the result.
const path = require('node:path');
const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');

const METHOD = '/grpc.health.v1.Health/Check';
// HealthCheckRequest { service: "" } encodes to zero bytes; the reply is not decoded.
const empty = Buffer.alloc(0);
const serialize = () => empty;
const deserialize = (b) => b;

async function main() {
  const [runtimeDir, countArg, inflightArg] = process.argv.slice(2);
  const count = Number(countArg);
  const inflight = Number(inflightArg);
  const client = new grpc.Client(`unix:${path.join(runtimeDir, 'broker.sock')}`, grpc.credentials.createInsecure());
  const call = () =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(METHOD, serialize, deserialize, empty, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  for (let i = 0; i < 200; i++) await call(); // warm the channel and the JIT
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((r) => rl.once('line', r));
  rl.close();
  const ns = new Array(count);
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  async function lane() {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const s = process.hrtime.bigint();
      await call();
      ns[i] = Number(process.hrtime.bigint() - s);
    }
  }
  await Promise.all(Array.from({ length: inflight }, lane));
  const wallNs = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  client.close();
  process.stdout.write(JSON.stringify({ result: { ns, wallNs, cpuUs: cpu.user + cpu.system } }) + '\n');
}
main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
