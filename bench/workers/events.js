'use strict';
// Region events from the SDK (bench/items/events.js): the round trip of
// bench/c/events_bench.c through region.notify() and region.wait().
//   node events.js RUNTIME_DIR PING PONG pinger ROUNDS WARMUP   -> {ns: [...]}
//   node events.js RUNTIME_DIR PING PONG responder TOTAL        -> {done: true}
// The responder reports {ready} once it waits; the pinger starts on "go".
const { sdk } = require('../lib/common');

async function main() {
  const [runtimeDir, ping, pong, role, a, b] = process.argv.slice(2);
  const client = await sdk().connect({ runtimeDir, reconnect: false });
  const rping = await client.acquire(ping, { mode: 'rw', events: true });
  const rpong = await client.acquire(pong, { mode: 'rw', events: true });
  const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
  if (role === 'responder') {
    const total = Number(a);
    let seen = rping.seq;
    out({ ready: true });
    while (seen < total) {
      const ev = await rping.wait({ after: seen });
      if (ev.type !== 'notify') throw new Error(`responder: ${ev.type}`);
      seen = ev.seq;
      rpong.notify();
    }
    out({ done: true });
  } else {
    const rounds = Number(a);
    const warmup = Number(b);
    await new Promise((r) => process.stdin.once('data', r));
    const ns = [];
    let last = rpong.seq;
    for (let i = 0; i < rounds + warmup; i++) {
      const t0 = process.hrtime.bigint();
      rping.notify();
      const ev = await rpong.wait({ after: last });
      if (ev.type !== 'notify') throw new Error(`pinger: ${ev.type}`);
      last = ev.seq;
      if (i >= warmup) ns.push(Number(process.hrtime.bigint() - t0));
    }
    out({ ns });
  }
  await rping.release();
  await rpong.release();
  client.close();
}
// Exit once reported: the pinger's stdin (its "go") would keep it alive, and
// with it the whole benchmark run.
main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
