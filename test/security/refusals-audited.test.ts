// Issue 16 item 5: every refusal reaches the audit trail. One row per
// refusal path that used to leave none, each tried for real by another uid,
// then looked up in the trail (aggregated like every refusal: the first ones
// of an interval are rows of their own).
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BrokerProcess, makeTempDir, runNode } from '../support/broker-process';

const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
let broker: BrokerProcess;

beforeAll(async () => {
  const dir = makeTempDir('shmbroker-refusals-');
  const config = path.join(dir, 'broker.yaml');
  fs.writeFileSync(config, 'dataPlane:\n  maxRequestsPerSecondPerUid: 5\n');
  broker = await BrokerProcess.start({ dir, config });
}, 60_000);
afterAll(() => broker?.cleanup());

const RAW = `const native = require(REPO + '/dist/native');
const { dataRequestCodec, dataReplyCodec } = require(REPO + '/dist/proto/load.js');
function request(s, body) {
  return new Promise((resolve) => {
    s.once('message', (d) => resolve(dataReplyCodec().decode(d)));
    s.send(dataRequestCodec().encode({ requestId: 1, ...body }));
  });
}`;

const cases: Array<[string, () => Promise<void>, { uid: number; action: string; reason: string }]> = [
  [
    'data plane: RATE_LIMITED',
    async () => {
      const r = await runNode(`${RAW}
        (async () => {
          const s = native.SeqpacketSocket.connect(process.argv[2] + '/data.sock');
          const got = [];
          for (let i = 0; i < 20; i++) { const r = await request(s, { acquire: { region: 'nope', mode: 'ACCESS_MODE_READ_ONLY' } }); got.push(r.error && r.error.reason); }
          console.log(got.includes('RATE_LIMITED') ? 'LIMITED' : got.join(','));
          process.exit(0);
        })();`, { ...U1, args: [broker.runtimeDir] });
      expect(r.stdout.toString().trim()).toBe('LIMITED');
    },
    { uid: 1001, action: 'DataPlaneRequest', reason: 'RATE_LIMITED' },
  ],
  [
    'data plane: INVALID_REGION_NAME',
    async () => {
      const r = await runNode(`${RAW}
        (async () => {
          const s = native.SeqpacketSocket.connect(process.argv[2] + '/data.sock');
          const r = await request(s, { acquire: { region: 'Not A Name!', mode: 'ACCESS_MODE_READ_ONLY' } });
          console.log(r.error.reason);
          process.exit(0);
        })();`, { ...U2, args: [broker.runtimeDir] });
      expect(r.stdout.toString().trim()).toBe('INVALID_REGION_NAME');
    },
    { uid: 1002, action: 'Acquire', reason: 'INVALID_REGION_NAME' },
  ],
  [
    'control plane: a malformed region name',
    async () => {
      const r = await runNode(
        `const { ControlClient } = require(REPO + '/dist/clients/sdk/index.js');
         new ControlClient({ runtimeDir: process.argv[2] }).call('BrokerService', 'GetRegion', { name: 'regions/Not A Name!' })
           .then(() => console.log('ALLOWED'), (e) => { console.log(e.reason); process.exit(0); });`,
        { ...U2, args: [broker.runtimeDir] },
      );
      expect(r.stdout.toString().trim()).toBe('INVALID_REGION_NAME');
    },
    { uid: 1002, action: 'GetRegion', reason: 'INVALID_REGION_NAME' },
  ],
  [
    'control plane: the per-uid connection cap',
    async () => {
      const r = await runNode(
        `const net = require('node:net');
         const socks = [];
         let closed = 0;
         for (let i = 0; i < 80; i++) { const s = net.connect(process.argv[2] + '/broker.sock'); s.on('error', () => undefined); s.on('close', () => closed++); socks.push(s); }
         const deadline = Date.now() + 15000;
         const look = () => (closed > 0 || Date.now() > deadline ? (console.log(closed > 0 ? 'CAPPED' : 'NOT CAPPED'), process.exit(0)) : setTimeout(look, 50));
         look();`,
        { ...U2, args: [broker.runtimeDir] },
      );
      expect(r.stdout.toString().trim()).toBe('CAPPED');
    },
    { uid: 1002, action: 'ControlPlaneConnect', reason: 'TOO_MANY_CONNECTIONS' },
  ],
];

it.each(cases)('%s is in the audit trail', async (_name, attempt, want) => {
  await attempt();
  await new Promise((r) => setTimeout(r, 300)); // group commit
  const db = new Database(path.join(broker.stateDir, 'shmbroker.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db
      .prepare(`SELECT COUNT(*) AS n FROM audit_events WHERE actor_uid = ? AND action = ? AND reason = ? AND result = 'DENIED'`)
      .get(want.uid, want.action, want.reason) as { n: number };
    expect(row.n, JSON.stringify(want)).toBeGreaterThan(0);
  } finally {
    db.close();
  }
}, 60_000);
