'use strict';
// The floor of section 2's control-plane ratios: a grpc-js server on
// RUNTIME_DIR/broker.sock, accepted the way the broker accepts (net.Server +
// grpc-js connection injector), with grpc.health.v1 and shmbroker.v1's
// BrokerService, whose CreateRegion, CreateGrant and DeleteRegion answer a
// fixed message at once: no database, no audit, no memfd, no quota. A
// CreateRegion that does its work cannot beat what this one reaches: it is
// what the messages and grpc-js cost on both sides.
//   node noop-control.js RUNTIME_DIR
// Reports {ready} once it listens.
const net = require('node:net');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { HealthImplementation } = require('grpc-health-check');
const { REPO } = require('../lib/common');
const { loadShmbrokerGrpc } = require(path.join(REPO, 'dist', 'proto', 'load.js'));

const [runtimeDir] = process.argv.slice(2);
// The broker's own server options (service/rpc/control-server.ts).
const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024, 'grpc.keepalive_time_ms': 60_000 });
new HealthImplementation({ '': 'SERVING' }).addToServer(server);
const now = { seconds: Math.floor(Date.now() / 1000), nanos: 0 };
// What the broker answers, field for field (a 4 KiB memfd region, a ro grant).
const region = (name) => ({ name, sizeBytes: 4096, backend: 'memfd', createTime: now, state: 'REGION_STATE_ACTIVE', ownerUid: 0 });
server.addService(loadShmbrokerGrpc().BrokerService.service, {
  CreateRegion: (call, cb) => cb(null, region(`regions/${call.request.regionId}`)),
  CreateGrant: (call, cb) => cb(null, { name: `${call.request.parent}/grants/1`, uid: call.request.grant.uid, mode: call.request.grant.mode, createTime: now }),
  DeleteRegion: (call, cb) => cb(null, region(call.request.name)),
});
const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
net
  .createServer((socket) => injector.injectConnection(socket))
  .listen(path.join(runtimeDir, 'broker.sock'), () => process.stdout.write(JSON.stringify({ ready: true }) + '\n'));
