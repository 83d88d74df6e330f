// The Foundation's end-to-end scenario through the real CLI, as root and as
// other uids, against a real broker process (memfd backend).
import * as crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess } from './support/broker-process';

const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };

function healthCheck(socketPath: string, service = ''): Promise<string> {
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const pkg = grpc.loadPackageDefinition(def) as any;
  const client = new pkg.grpc.health.v1.Health(`unix:${socketPath}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.Check({ service }, { deadline: Date.now() + 5000 }, (err: Error | null, res: { status: string }) => {
      client.close();
      if (err) reject(err);
      else resolve(res.status);
    });
  });
}

describe('CLI scenario (memfd)', () => {
  let broker: BrokerProcess;
  const data = crypto.randomBytes(1024 * 1024);

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('health answers SERVING on broker.sock', async () => {
    expect(await healthCheck(`${broker.runtimeDir}/broker.sock`)).toBe('SERVING');
    expect(await healthCheck(`${broker.runtimeDir}/broker.sock`, 'shmbroker.v1.BrokerService')).toBe('SERVING');
  });

  it('root creates a 1 MiB region and writes it from stdin', async () => {
    const region = await broker.json(['region', 'create', 'demo', '--size', '1MiB']);
    // proto3 JSON: uint64 as a string; ownerUid 0 (root) is the default, so absent
    expect(region).toEqual({ name: 'regions/demo', sizeBytes: '1048576', backend: 'memfd', createTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/), state: 'REGION_STATE_ACTIVE', revocationAdvisory: true });
    const w = await broker.cli(['region', 'write', 'demo'], { input: data });
    expect(w.stderr).toBe('');
    expect(w.code).toBe(0);
  });

  it('grants read-only to uid 1001, who reads back the same bytes', async () => {
    const g = await broker.json(['grant', 'create', 'demo', '--uid', '1001', '--mode', 'ro']);
    expect(g).toMatchObject({ name: 'regions/demo/grants/1', uid: 1001, mode: 'ACCESS_MODE_READ_ONLY' });
    const r = await broker.cli(['region', 'read', 'demo'], U1);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.equals(data)).toBe(true);
    const part = await broker.cli(['region', 'read', 'demo', '--offset', '4096', '--length', '100'], U1);
    expect(part.stdout.equals(data.subarray(4096, 4196))).toBe(true);
  });

  it('uid 1001 cannot write with a read-only grant', async () => {
    const w = await broker.cli(['region', 'write', 'demo'], { ...U1, input: 'overwrite' });
    expect(w.code).toBe(1);
    expect(w.stderr).toMatch(/read-only grant.*\(GRANT_READ_ONLY\)\n$/);
    const r = await broker.cli(['region', 'read', 'demo', '--length', '9'], U1);
    expect(r.stdout.equals(data.subarray(0, 9))).toBe(true);
  });

  it('uid 1002 can neither read, grant itself access, nor delete (a region it may not see is NOT_FOUND, issue 16 item 6)', async () => {
    const read = await broker.cli(['region', 'read', 'demo'], U2);
    expect(read.code).toBe(1);
    expect(read.stderr).toContain('(REGION_NOT_FOUND)');
    const grant = await broker.cli(['grant', 'create', 'demo', '--uid', '1002', '--mode', 'rw'], U2);
    expect(grant.code).toBe(1);
    expect(grant.stderr).toContain('(REGION_NOT_FOUND)');
    const del = await broker.cli(['region', 'delete', 'demo'], U2);
    expect(del.code).toBe(1);
    expect(del.stderr).toContain('(REGION_NOT_FOUND)');
    const revoke = await broker.cli(['grant', 'revoke', '1'], U2);
    expect(revoke.code).toBe(1);
    expect(revoke.stderr).toContain('(GRANT_NOT_FOUND)');
    // A grantee sees the region, so it is told it is not the owner.
    const byGrantee = await broker.cli(['region', 'delete', 'demo'], U1);
    expect(byGrantee.code).toBe(1);
    expect(byGrantee.stderr).toContain('(NOT_OWNER)');
    // uid 1002 does not even see the region
    expect(await broker.json(['region', 'list'], U2)).toEqual({}); // ListRegionsResponse with no regions and no next page
    expect((await broker.json(['region', 'list'], U1)).regions).toHaveLength(1);
  });

  it('after grant revoke, uid 1001 can no longer read', async () => {
    await broker.json(['grant', 'create', 'demo', '--uid', '1001', '--mode', 'ro']);
    const revoked = await broker.cli(['grant', 'revoke', '1']);
    expect(revoked.code).toBe(0);
    // grant 2 still allows; revoke it too by its full name
    expect((await broker.cli(['region', 'read', 'demo', '--length', '1'], U1)).code).toBe(0);
    expect((await broker.cli(['grant', 'revoke', 'regions/demo/grants/2'])).code).toBe(0);
    const r = await broker.cli(['region', 'read', 'demo'], U1);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('(REGION_NOT_FOUND)'); // no grant left: it may not see the region any more
  });

  it('after kill -9 and restart, region list and grant list show what was there', async () => {
    await broker.json(['region', 'create', 'second', '--size', '64KiB']);
    await broker.json(['grant', 'create', 'second', '--gid', '1001', '--mode', 'rw']);
    await broker.json(['grant', 'create', 'demo', '--uid', '1001', '--mode', 'ro', '--ttl', '1h']);
    const regionsBefore = await broker.json(['region', 'list']);
    const grantsBefore = await broker.json(['grant', 'list']);
    await broker.kill9();
    await broker.start();
    const regionsAfter = (await broker.json(['region', 'list'])).regions as any[];
    const grantsAfter = await broker.json(['grant', 'list']);
    expect(grantsAfter).toEqual(grantsBefore);
    // Same regions; on memfd their memory did not survive (no client held it), so they are LOST, not recreated empty.
    expect(regionsAfter.map((r) => ({ ...r, state: undefined }))).toEqual(regionsBefore.regions.map((r: any) => ({ ...r, state: undefined })));
    expect(regionsAfter.every((r) => r.state === 'REGION_STATE_LOST')).toBe(true);
    const status = await broker.json(['status']);
    // proto3 JSON leaves false booleans out: memfd enforces read-only only
    expect(status).toMatchObject({ backend: 'memfd', readOnlyEnforced: true });
    expect(status).not.toHaveProperty('revocationEnforced');
    expect(status).not.toHaveProperty('restartSurvival');
    const r = await broker.cli(['region', 'read', 'demo'], U1);
    expect(r.stderr).toContain('(REGION_LOST)');
  });

  it('SIGTERM shuts the broker down cleanly and removes its sockets', async () => {
    expect(await broker.stop()).toBe(0);
    const fs = await import('node:fs');
    expect(fs.existsSync(`${broker.runtimeDir}/broker.sock`)).toBe(false);
    expect(fs.existsSync(`${broker.runtimeDir}/data.sock`)).toBe(false);
  });
});
