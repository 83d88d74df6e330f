'use strict';
// Runs bench/lib/scale-run.js's measurement where it is started (inside the
// VM for kmod: root, shmbroker.ko loaded) and prints its raw result as one
// JSON line; progress goes to stderr.
//   node scale-run.js BACKEND BASE N PROBE PAGES HOLD UID [INFLIGHT]
const { measureScale } = require('../lib/scale-run');

async function main() {
  const [backend, base, ...nums] = process.argv.slice(2);
  const [N, probe, pages, hold, uid, inflight] = nums.map(Number);
  const r = await measureScale({ backend, base, N, probe, pages, hold, uid, inflight: inflight || 32 });
  process.stdout.write(JSON.stringify(r) + '\n');
}
main().catch((e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
