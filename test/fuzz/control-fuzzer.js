#!/usr/bin/env node
'use strict';
// gRPC control-plane fuzzer (fast-check): every BrokerService, QuotaService
// and AuditService unary rpc called with generated requests (sizes 0,
// negative, 2^63, 2^64 and beyond; names with Unicode, control characters and
// path tricks; garbage page tokens; unknown enum values; huge and negative
// page sizes), and with raw protobuf bytes (random and mutated) that skip
// the client's serializer. Plain JS on the compiled build; run as any uid:
//
//   node test/fuzz/control-fuzzer.js RUNTIME_DIR RUNS_PER_PROPERTY SEED
//
// A call must end with success or a canonical refusal that carries the
// broker's reason (google.rpc.ErrorInfo in grpc-status-details-bin): never UNKNOWN, INTERNAL from a handler,
// or a timeout. Prints one JSON summary line; exit 0 when nothing failed.
const path = require('node:path');
const REPO = path.resolve(__dirname, '..', '..');
const fc = require(path.join(REPO, 'node_modules', 'fast-check'));
const grpc = require(path.join(REPO, 'node_modules', '@grpc/grpc-js'));
const { ControlClient } = require(path.join(REPO, 'dist', 'clients', 'sdk', 'control-client.js'));
const { decodeStatus } = require(path.join(REPO, 'dist', 'proto', 'status-details.js'));

const [runtimeDir, runsArg, seedArg] = process.argv.slice(2);
const RUNS = Number(runsArg || 300);
const SEED = Number(seedArg || 1);
const client = new ControlClient({ runtimeDir, deadlineMs: 20_000 });
const raw = new grpc.Client(`unix:${path.join(runtimeDir, 'broker.sock')}`, grpc.credentials.createInsecure());

const REFUSALS = new Set(['INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED', 'OUT_OF_RANGE']);
const summary = { seed: SEED, runsPerProperty: RUNS, calls: 0, ok: 0, refused: {}, clientSideUnencodable: 0, rawCalls: 0, rawOutcomes: {}, failures: [] };
const created = new Set();

function fail(what) {
  if (summary.failures.length < 20) summary.failures.push(what);
}

async function call(service, method, req) {
  summary.calls++;
  try {
    const res = await client.call(service, method, req);
    summary.ok++;
    if (method === 'CreateRegion') created.add(res.name);
    if (method === 'DeleteRegion') created.delete(req.name);
    return res;
  } catch (e) {
    const code = e.code;
    const reason = e.reason;
    if (code === 'INTERNAL' && reason === 'INTERNAL' && /^Request message serialization failure/.test(e.message)) {
      summary.clientSideUnencodable++; // protobufjs refused to encode it: it never reached the broker
      return undefined;
    }
    const key = `${method}:${code}:${reason}`;
    summary.refused[key] = (summary.refused[key] || 0) + 1;
    if (!REFUSALS.has(code) || !reason || reason === code) fail(`${service}.${method}(${JSON.stringify(req).slice(0, 300)}) -> ${code} ${reason}: ${e.message}`);
    return undefined;
  }
}

function rawCall(service, method, bytes) {
  summary.rawCalls++;
  return new Promise((resolve) => {
    raw.makeUnaryRequest(`/shmbroker.v1.${service}/${method}`, (b) => b, (b) => b, bytes, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err) => {
      const code = err ? grpc.status[err.code] : 'OK';
      const details = err ? err.metadata?.get('grpc-status-details-bin')[0] : undefined;
      const reason = details ? decodeStatus(details).errorInfo?.reason : undefined;
      const key = `${code}`;
      summary.rawOutcomes[key] = (summary.rawOutcomes[key] || 0) + 1;
      // grpc-js answers undecodable bytes itself (INTERNAL, "deserializ..."); anything else must be a canonical refusal.
      const decodeFailure = err && err.code === grpc.status.INTERNAL && /deserializ|parse/i.test(err.details);
      if (err && !decodeFailure && !(REFUSALS.has(code) && reason)) fail(`raw ${method}(${bytes.toString('hex').slice(0, 120)}) -> ${code} ${reason}: ${err.details}`);
      resolve();
    });
  });
}

// ---- arbitraries
const weirdString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ maxLength: 70 }),
  fc.constantFrom('', 'a', 'x'.repeat(63), 'x'.repeat(64), 'a\u0000b', 'a\nb', '\u202e', 'régión', '..', '.', '-a', 'a/b', '../x', 'a'.repeat(5000), 'ＡＢ', '\ud800', 'a\tb', ' a'),
  fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,62}$/),
);
const regionId = fc.oneof(weirdString, fc.stringMatching(/^fz[a-z0-9]{1,6}$/));
const resourceName = fc.oneof(
  weirdString,
  regionId.map((n) => `regions/${n}`),
  fc.tuple(regionId, fc.oneof(fc.nat(), fc.integer(), weirdString)).map(([n, g]) => `regions/${n}/grants/${g}`),
  fc.oneof(fc.integer(), weirdString).map((g) => `grants/${g}`),
);
const size = fc.oneof(
  fc.constantFrom(0, -1, -4096, 1, 4095, 4096, 8192, 2 ** 21, 2 ** 31, 2 ** 32, 2 ** 53, Number.MAX_SAFE_INTEGER),
  fc.constantFrom('9223372036854775808', '9223372036854775807', '18446744073709551615', '18446744073709551616', '-1', '1e3', '0x1000', ''),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
  fc.integer({ min: 1, max: 64 }).map((n) => n * 4096),
  fc.double(),
);
const int32ish = fc.oneof(fc.integer(), fc.constantFrom(0, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 40, 1.5, NaN));
const pageToken = fc.oneof(
  weirdString,
  fc.base64String({ maxLength: 100 }),
  fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v)).toString('base64url')),
  fc.record({ l: fc.constantFrom('regions', 'grants:-', 'quotas', 'audit', 'x'), a: fc.oneof(fc.string(), fc.integer(), fc.constant(null)) }).map((o) => Buffer.from(JSON.stringify(o)).toString('base64url')),
);
const mode = fc.oneof(fc.constantFrom('ACCESS_MODE_READ_ONLY', 'ACCESS_MODE_READ_WRITE', 'ACCESS_MODE_UNSPECIFIED', 0, 1, 2, 3, 99, -1), weirdString);
const idish = fc.oneof(fc.nat(), fc.integer(), fc.constantFrom(0, 4294967295, 4294967296, -1, 2 ** 53), weirdString);
const quotaName = fc.oneof(weirdString, fc.tuple(fc.constantFrom('uid', 'gid', 'pid', ''), idish).map(([k, i]) => `quotas/${k}:${i}`));
const timestamp = fc.oneof(fc.constant(undefined), fc.record({ seconds: fc.oneof(fc.integer(), fc.constantFrom(-1, 2 ** 53, '9223372036854775807')), nanos: int32ish }));

const properties = [
  ['BrokerService', 'CreateRegion', fc.record({ regionId, region: fc.record({ sizeBytes: size, hugepages: fc.boolean(), numaNode: fc.option(int32ish, { nil: undefined }) }, { requiredKeys: [] }) }, { requiredKeys: [] })],
  ['BrokerService', 'GetRegion', fc.record({ name: resourceName }, { requiredKeys: [] })],
  ['BrokerService', 'DeleteRegion', fc.record({ name: resourceName }, { requiredKeys: [] })],
  ['BrokerService', 'ListRegions', fc.record({ pageSize: int32ish, pageToken }, { requiredKeys: [] })],
  ['BrokerService', 'CreateGrant', fc.record({ parent: resourceName, grant: fc.record({ uid: idish, gid: idish, mode, ttl: fc.record({ seconds: size, nanos: int32ish }, { requiredKeys: [] }), expireTime: timestamp }, { requiredKeys: [] }) }, { requiredKeys: [] })],
  ['BrokerService', 'GetGrant', fc.record({ name: resourceName }, { requiredKeys: [] })],
  ['BrokerService', 'ListGrants', fc.record({ parent: resourceName, pageSize: int32ish, pageToken }, { requiredKeys: [] })],
  ['BrokerService', 'RevokeGrant', fc.record({ name: resourceName }, { requiredKeys: [] })],
  ['QuotaService', 'UpdateQuota', fc.record({ quota: fc.record({ name: quotaName, maxBytes: size, maxRegions: size, maxGrantsPerRegion: size }, { requiredKeys: [] }), updateMask: fc.option(fc.record({ paths: fc.array(weirdString, { maxLength: 4 }) }), { nil: undefined }) }, { requiredKeys: [] })],
  ['QuotaService', 'GetQuota', fc.record({ name: quotaName }, { requiredKeys: [] })],
  ['QuotaService', 'ListQuotas', fc.record({ pageSize: int32ish, pageToken }, { requiredKeys: [] })],
  ['AuditService', 'ListAuditEvents', fc.record({ filter: fc.record({ resource: weirdString, startTime: timestamp, endTime: timestamp, actorUid: fc.option(idish, { nil: undefined }), result: mode, action: weirdString }, { requiredKeys: [] }), pageSize: int32ish, pageToken, newestFirst: fc.boolean() }, { requiredKeys: [] })],
];

const RAW_METHODS = properties.map(([s, m]) => [s, m]);

(async () => {
  const t0 = Date.now();
  let seed = SEED;
  for (const [service, method, arb] of properties) {
    await fc.assert(
      fc.asyncProperty(arb, async (req) => {
        await call(service, method, req);
        return true;
      }),
      { numRuns: RUNS, seed: seed++, endOnFailure: true },
    );
  }
  // Raw bytes straight to every method: random, and valid encodings with bytes flipped.
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...RAW_METHODS), fc.uint8Array({ maxLength: 300 }), fc.nat(), async ([service, method], bytes, flip) => {
      const b = Buffer.from(bytes);
      if (b.length && flip % 2) b[flip % b.length] ^= 0x80;
      await rawCall(service, method, b);
      return true;
    }),
    { numRuns: RUNS * 2, seed: seed++ },
  );
  // Oversized: a 5 MiB request (the server takes at most 4 MiB) is refused by grpc-js, and the broker carries on.
  summary.oversized = await new Promise((resolve) => {
    raw.makeUnaryRequest('/shmbroker.v1.BrokerService/CreateRegion', (b) => b, (b) => b, Buffer.alloc(5 * 1024 * 1024, 0x0a), new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err) =>
      resolve(err ? grpc.status[err.code] : 'OK'),
    );
  });
  if (summary.oversized !== 'RESOURCE_EXHAUSTED') fail(`a 5 MiB request -> ${summary.oversized}`);
  // The broker's own state is still coherent: what it lists is what it says it has.
  const status = await client.call('BrokerService', 'GetStatus', {});
  let listed = 0;
  let token = '';
  do {
    const page = await client.call('BrokerService', 'ListRegions', { pageSize: 100, pageToken: token });
    for (const r of page.regions) {
      listed++;
      if (!/^regions\/[a-z0-9][a-z0-9._-]{0,62}$/.test(r.name)) fail(`a listed region has an invalid name: ${JSON.stringify(r.name)}`);
    }
    token = page.nextPageToken;
  } while (token);
  summary.regionsCreated = created.size;
  summary.regionsListed = listed;
  summary.statusRegionCount = Number(status.regionCount);
  summary.seconds = Math.round((Date.now() - t0) / 100) / 10;
  client.close();
  raw.close();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(summary.failures.length ? 1 : 0);
})().catch((e) => {
  console.error(e);
  process.exit(3);
});
