// Issue 16 item 6: GetStatus shows a non-admin only its own counts, so
// `shmbroker status` tells uid 1002 nothing about the regions and grants of
// root or uid 1001; an admin sees the whole broker.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BrokerProcess, runNode } from '../support/broker-process';

const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
let broker: BrokerProcess;

beforeAll(async () => {
  broker = await BrokerProcess.start();
  await broker.json(['region', 'create', 'root-secret', '--size', '64KiB']);
  await broker.json(['grant', 'create', 'root-secret', '--uid', '1001']);
  await broker.json(['region', 'create', 'u1-own', '--size', '8KiB'], U1);
  await broker.json(['grant', 'create', 'u1-own', '--uid', '1003'], U1);
}, 60_000);
afterAll(() => broker?.cleanup());

it('uid 1002 sees zero regions, bytes and grants; uid 1001 sees its own; root sees all', async () => {
  // proto3 JSON leaves out fields at their default (0, false): absent reads as 0.
  const counts = (s: Record<string, unknown>) => [Number(s.regionCount ?? 0), Number(s.regionBytes ?? 0), Number(s.grantCount ?? 0)];
  const stranger = await broker.json(['status'], U2);
  expect(stranger.callerUid).toBe(1002);
  expect(stranger.callerIsAdmin ?? false).toBe(false);
  expect(counts(stranger)).toEqual([0, 0, 0]);
  const owner = await broker.json(['status'], U1);
  expect(counts(owner)).toEqual([1, 8192, 1]);
  const admin = await broker.json(['status']);
  expect(admin.callerIsAdmin).toBe(true);
  expect(counts(admin)).toEqual([2, 65536 + 8192, 2]);
}, 60_000);

// Item 6: a region (or grant) the caller may not see and one that does not
// exist get the same answer, byte for byte: code, message and the whole
// google.rpc.Status (ErrorInfo, ResourceInfo), and on the data plane the
// whole ErrorReply packet. Names of equal length, swapped before comparing.
it('uid 1002: "exists but invisible" and "does not exist" are byte-identical answers (control and data plane)', async () => {
  const grants = (await broker.json(['grant', 'list', '--region', 'u1-own'], U1)).grants;
  const grantId = grants[0].name.split('/').pop();
  const missingId = String(Number(grantId) + 7).padStart(grantId.length, '9').slice(-grantId.length);
  const script = `
    const grpc = require(REPO + '/node_modules/@grpc/grpc-js');
    const native = require(REPO + '/dist/native');
    const { loadShmbrokerGrpc, dataRequestCodec } = require(REPO + '/dist/proto/load.js');
    const [runtimeDir, region, grant] = process.argv.slice(2);
    const c = new (loadShmbrokerGrpc().BrokerService)('unix:' + runtimeDir + '/broker.sock', grpc.credentials.createInsecure());
    const calls = [
      ['GetRegion', { name: 'regions/' + region }],
      ['DeleteRegion', { name: 'regions/' + region }],
      ['CreateGrant', { parent: 'regions/' + region, grant: { uid: 1002, mode: 'ACCESS_MODE_READ_WRITE' } }],
      ['ListGrants', { parent: 'regions/' + region }],
      ['GetGrant', { name: 'regions/' + region + '/grants/' + grant }],
      ['RevokeGrant', { name: 'regions/' + region + '/grants/' + grant }],
      ['RevokeGrant', { name: 'regions/-/grants/' + grant }],
      ['GetGrant', { name: 'regions/-/grants/' + grant }],
    ];
    const out = [];
    const next = (i) => {
      if (i === calls.length) return dataPlane();
      const [m, req] = calls[i];
      c[m](req, (err) => {
        const bin = err && err.metadata.get('grpc-status-details-bin')[0];
        out.push({ m, code: err ? err.code : 0, message: err ? err.details : '', status: bin ? Buffer.from(bin).toString('latin1') : '' });
        next(i + 1);
      });
    };
    const dataPlane = () => {
      const s = native.SeqpacketSocket.connect(runtimeDir + '/data.sock');
      s.on('message', (data) => {
        out.push({ m: 'Acquire', packet: Buffer.from(data).toString('latin1') });
        process.stdout.write(JSON.stringify(out));
        process.exit(0);
      });
      s.send(dataRequestCodec().encode({ requestId: 1, acquire: { region, mode: 'ACCESS_MODE_READ_ONLY' } }));
    };
    next(0);`;
  const ask = async (region: string, grant: string) => {
    const r = await runNode(script, { ...U2, args: [broker.runtimeDir, region, grant] });
    expect(r.stderr.toString()).toBe('');
    return JSON.parse(r.stdout.toString()) as Array<Record<string, unknown>>;
  };
  // u1-own (uid 1001's, granted to 1003) and u1-zzz (no such region): same length, so the encodings align.
  const invisible = await ask('u1-own', grantId);
  const missing = await ask('u1-zzz', missingId);
  const swap = (o: unknown) => JSON.stringify(o).split('u1-own').join('u1-zzz').split(`grants/${grantId}`).join(`grants/${missingId}`);
  expect(invisible).toHaveLength(9);
  for (let i = 0; i < invisible.length; i++) {
    if (invisible[i]!.m !== 'Acquire') expect(invisible[i]!.code, JSON.stringify(invisible[i])).toBe(5); // NOT_FOUND
    expect(swap(invisible[i]), String(invisible[i]!.m)).toBe(JSON.stringify(missing[i]));
  }
  expect(JSON.stringify(invisible)).toContain('REGION_NOT_FOUND');
  expect(JSON.stringify(invisible)).toContain('GRANT_NOT_FOUND');
  expect(JSON.stringify(invisible)).not.toMatch(/NOT_OWNER|NO_GRANT|PERMISSION_DENIED/);
  // The region is still there, untouched.
  expect((await broker.json(['region', 'show', 'u1-own'], U1)).name).toBe('regions/u1-own');
}, 60_000);
