'use strict';
// Holds COUNT regions (PREFIX-000000 .. (6-digit index)) mapped across a broker
// restart; after the restart, the SDK reconnects and offers every fd back.
// Reports {ready} once all are held and {readopted: hrtime} when the SDK has
// re-offered them all (its 'reconnect' event).
//   node holder.js RUNTIME_DIR PREFIX COUNT
const { sdk } = require('../lib/common');

async function main() {
  const [runtimeDir, prefix, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const client = await sdk().connect({ runtimeDir, maxReconnectDelayMs: 20 });
  const held = [];
  for (let i = 0; i < count; i++) held.push(await client.acquire(`${prefix}-${String(i).padStart(6, "0")}`, { mode: 'ro' }));
  let disconnectedAt = 0n;
  client.on('disconnect', () => (disconnectedAt = process.hrtime.bigint()));
  client.on('reconnect', () => {
    const lost = held.filter((r) => r.revoked).length;
    process.stdout.write(JSON.stringify({ readopted: String(process.hrtime.bigint()), disconnectedAt: String(disconnectedAt), lost }) + '\n');
    setTimeout(() => process.exit(0), 10).unref();
  });
  process.stdout.write(JSON.stringify({ ready: true, held: held.length }) + '\n');
  setInterval(() => undefined, 1 << 30);
}
main().catch((e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
