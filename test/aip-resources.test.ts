// The control API follows Google's AIPs: standard methods take and return
// the resource (AIP-131/133/135), Grant has Get (AIP-131) and the custom
// method :revoke (AIP-136) returning it, TTL or expiry per AIP-214, resource
// names "regions/{region}" and "regions/{region}/grants/{grant}", unset
// optional fields absent. Called as real uids through a client the project
// did not write (python3-grpcio, proto3 JSON), and through the SDK as root.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../clients/sdk/control-client';
import { BrokerProcess, makeTempDir } from './support/broker-process';
import { buildClientProtoset, pyreflect } from './support/python-client';

const svc = (m: string) => `shmbroker.v1.BrokerService/${m}`;

describe('AIP resources and methods', () => {
  let broker: BrokerProcess;
  let work: string;
  let protoset: string;
  let sock: string;
  let root: ControlClient;
  beforeAll(async () => {
    broker = await BrokerProcess.start();
    sock = path.join(broker.runtimeDir, 'broker.sock');
    work = makeTempDir('shmbroker-aip-');
    protoset = buildClientProtoset(work);
    root = new ControlClient({ runtimeDir: broker.runtimeDir });
  });
  afterAll(async () => {
    root?.close();
    await broker?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('region lifecycle as uid 1001: Create, Get and Delete return the Region (Delete: as it left it, DELETING)', async () => {
    const [created, got, listed, deleted, gone] = await pyreflect(sock, protoset, [
      ['call', svc('CreateRegion'), { regionId: 'aip-1', region: { sizeBytes: '8192', ownerUid: 0, backend: 'ignored' } }],
      ['call', svc('GetRegion'), { name: 'regions/aip-1' }],
      ['call', svc('ListRegions'), { pageSize: 1 }],
      ['call', svc('DeleteRegion'), { name: 'regions/aip-1' }],
      ['call', svc('GetRegion'), { name: 'regions/aip-1' }],
    ]);
    expect(created.ok).toEqual({
      name: 'regions/aip-1',
      sizeBytes: '8192',
      ownerUid: 1001, // OUTPUT_ONLY: the ownerUid sent is ignored
      ownerGid: 1001,
      backend: 'memfd',
      createTime: expect.stringMatching(/Z$/),
      state: 'REGION_STATE_ACTIVE',
      revocationAdvisory: true, // OUTPUT_ONLY: memfd cannot take a mapping back
    }); // numaNode is unset (no preference), so absent; hugepages false and leaseCount 0, so absent
    expect(got.ok).toEqual(created.ok);
    expect(listed.ok.regions).toEqual([created.ok]);
    // AIP-135 soft-delete style: the Region as the deletion left it; nobody held it (leaseCount 0, absent), so it is gone.
    expect(deleted.ok).toEqual({ ...created.ok, state: 'REGION_STATE_DELETING', deleteTime: expect.stringMatching(/Z$/) });
    expect(gone.error.code).toBe('NOT_FOUND');
  });

  it('grants: Create with a ttl returns the Grant with expire_time; Get is for owner, grantee and admins; :revoke returns it', async () => {
    await pyreflect(sock, protoset, [['call', svc('CreateRegion'), { regionId: 'aip-g', region: { sizeBytes: '4096' } }]], 1001);
    const before = Date.now();
    const [grant] = await pyreflect(
      sock,
      protoset,
      [['call', svc('CreateGrant'), { parent: 'regions/aip-g', grant: { uid: 1002, mode: 'ACCESS_MODE_READ_ONLY', ttl: '3600s', creatorUid: 0 } }]],
      1001,
    );
    const g = grant.ok;
    expect(g).toEqual({
      name: expect.stringMatching(/^regions\/aip-g\/grants\/\d+$/),
      uid: 1002,
      mode: 'ACCESS_MODE_READ_ONLY',
      createTime: expect.stringMatching(/Z$/),
      expireTime: expect.stringMatching(/Z$/),
      creatorUid: 1001,
    }); // ttl is INPUT_ONLY: never returned
    const expires = Date.parse(g.expireTime);
    expect(expires).toBeGreaterThanOrEqual(before + 3600_000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 3600_000 + 1000);

    const [asGrantee] = await pyreflect(sock, protoset, [['call', svc('GetGrant'), { name: g.name }]], 1002);
    expect(asGrantee.ok).toEqual(g);
    const [asStranger] = await pyreflect(sock, protoset, [['call', svc('GetGrant'), { name: g.name }]], 1003);
    expect(asStranger.error.code).toBe('NOT_FOUND');
    expect(asStranger.error.status.details[0]).toMatchObject({ reason: 'GRANT_NOT_FOUND', metadata: { grant: g.name, region: 'regions/aip-g' } });
    const asAdmin = await root.call('BrokerService', 'GetGrant', { name: g.name });
    expect(asAdmin.name).toBe(g.name);

    const [revokedByGrantee] = await pyreflect(sock, protoset, [['call', svc('RevokeGrant'), { name: g.name }]], 1002);
    expect(revokedByGrantee.error.code).toBe('PERMISSION_DENIED');
    const [revoked, after] = await pyreflect(
      sock,
      protoset,
      [
        ['call', svc('RevokeGrant'), { name: g.name }],
        ['call', svc('GetGrant'), { name: g.name }],
      ],
      1001,
    );
    // The grant as it was, plus what the revocation could not take back (nobody held it: leaseCount 0, absent).
    expect(revoked.ok).toEqual({ ...g, revocationAdvisory: true });
    expect(after.error.code).toBe('NOT_FOUND');
  });

  it('expire_time instead of ttl; one in the past is refused, naming its field', async () => {
    await root.call('BrokerService', 'CreateRegion', { regionId: 'aip-e', region: { sizeBytes: 4096 } });
    const at = new Date(Date.now() + 600_000).toISOString();
    const g = await root.call('BrokerService', 'CreateGrant', { parent: 'regions/aip-e', grant: { gid: 3000, mode: 'ACCESS_MODE_READ_WRITE', expireTime: { seconds: Math.floor(Date.parse(at) / 1000) } } });
    expect(g.gid).toBe(3000);
    expect(Number(g.expireTime.seconds)).toBe(Math.floor(Date.parse(at) / 1000));
    const [past] = await pyreflect(sock, protoset, [['call', svc('CreateGrant'), { parent: 'regions/aip-e', grant: { gid: 3000, mode: 'ACCESS_MODE_READ_WRITE', expireTime: '2001-01-01T00:00:00Z' } }]], 0);
    expect(past.error.code).toBe('INVALID_ARGUMENT');
    expect(past.error.status.details[1]).toMatchObject({ '@type': 'google.rpc.BadRequest', fieldViolations: [{ field: 'grant.expire_time' }] });
  });

  it('NUMA node round-trips as an optional field (set only when asked)', async () => {
    const r = await root.call('BrokerService', 'GetRegion', { name: 'regions/aip-e' });
    expect(r.numaNode).toBeUndefined();
  });
});
