// AIP-160 filters on ListRegions and ListGrants, against a real broker: from
// the CLI (`--filter`) as real uids, and from a client the project did not
// write (python3-grpcio, which learns the `filter` field from reflection). A
// filter narrows what the caller may see and never widens it; a bad filter
// is INVALID_ARGUMENT INVALID_LIST_FILTER; a page token is bound to the
// filter it was made with (AIP-158).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, makeTempDir } from './support/broker-process';
import { buildClientProtoset, pyreflect } from './support/python-client';

const svc = (m: string) => `shmbroker.v1.BrokerService/${m}`;
const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };

describe('AIP-160 filters on List', () => {
  let broker: BrokerProcess;
  let work: string;
  let protoset: string;

  beforeAll(async () => {
    broker = await BrokerProcess.start();
    work = makeTempDir('shmbroker-filter-');
    protoset = buildClientProtoset(work);
    for (const [name, size] of [['team-a.frames', '4KiB'], ['team-a.tensors', '64KiB'], ['team-a.logs', '4KiB']] as const) {
      const r = await broker.cli(['region', 'create', name, '--size', size], U1);
      expect(r.code, r.stderr).toBe(0);
    }
    expect((await broker.cli(['region', 'create', 'team-b.frames', '--size', '4KiB'], U2)).code).toBe(0);
    expect((await broker.cli(['region', 'create', 'root.secret', '--size', '4KiB'])).code).toBe(0);
    expect((await broker.cli(['grant', 'create', 'team-a.frames', '--uid', '1002', '--mode', 'ro'], U1)).code).toBe(0);
    expect((await broker.cli(['grant', 'create', 'team-a.tensors', '--uid', '1002', '--mode', 'rw', '--ttl', '1h'], U1)).code).toBe(0);
    expect((await broker.cli(['grant', 'create', 'team-a.logs', '--uid', '65534', '--mode', 'rw'], U1)).code).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await broker?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  async function regions(filter: string, o = {}): Promise<string[]> {
    const r = await broker.cli(['region', 'list', '--filter', filter, '-o', 'json'], o);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout.toString()).regions ?? []).map((x: { name: string }) => x.name.slice('regions/'.length));
  }

  it('the CLI narrows lists by field, name pattern and state, as the owner and as a grantee', async () => {
    expect(await regions('name = "regions/team-a.*"', U1)).toEqual(['team-a.frames', 'team-a.logs', 'team-a.tensors']);
    expect(await regions('name = "regions/team-a.*" AND size_bytes > 4096', U1)).toEqual(['team-a.tensors']);
    expect(await regions('state = ACTIVE AND NOT name = "*.logs"', U1)).toEqual(['team-a.frames', 'team-a.tensors']);
    // uid 1002 sees its own region and the two it holds grants on, nothing else.
    expect(await regions('owner_uid = 1001', U2)).toEqual(['team-a.frames', 'team-a.tensors']);
    expect(await regions('owner_uid = 1002 OR owner_uid = 1001', U2)).toEqual(['team-a.frames', 'team-a.tensors', 'team-b.frames']);
    const g = await broker.cli(['grant', 'list', '--filter', 'mode = READ_WRITE AND uid = 1002', '-o', 'json'], U1);
    expect(g.code, g.stderr).toBe(0);
    const grants = JSON.parse(g.stdout.toString()).grants;
    expect(grants.map((x: { name: string }) => x.name)).toEqual([expect.stringMatching(/^regions\/team-a\.tensors\/grants\/\d+$/)]);
    expect(grants[0].expireTime).toMatch(/Z$/);
    const expiring = await broker.cli(['grant', 'list', '--filter', `expire_time < "${new Date(Date.now() + 2 * 3600_000).toISOString()}"`, '-o', 'json'], U1);
    expect(JSON.parse(expiring.stdout.toString()).grants).toEqual(grants);
  });

  it('a filter never widens what a caller may see', async () => {
    // root's region and uid 1002's own are invisible to uid 1001, whatever the filter names.
    expect(await regions('owner_uid = 0', U1)).toEqual([]);
    expect(await regions('name = "regions/root.secret" OR name = "regions/team-b.*"', U1)).toEqual([]);
    expect(await regions('NOT name = "regions/team-a.*"', U1)).toEqual([]);
    const g = await broker.cli(['grant', 'list', '--filter', 'uid = 65534', '-o', 'json'], U2);
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout.toString()).grants ?? []).toEqual([]);
    // root sees all of them.
    expect(await regions('name = "*.frames"')).toEqual(['team-a.frames', 'team-b.frames']);
  });

  it('a bad filter is INVALID_ARGUMENT INVALID_LIST_FILTER, from the CLI and over the wire', async () => {
    const r = await broker.cli(['region', 'list', '--filter', 'colour = red'], U1);
    expect(r.code).not.toBe(0);
    expect(r.stderr.toString()).toMatch(/Region has no field "colour".*INVALID_LIST_FILTER/);
    const [bad, badGrant] = await pyreflect(broker.runtimeDir + '/broker.sock', protoset, [
      ['call', svc('ListRegions'), { filter: 'size_bytes > "big"' }],
      ['call', svc('ListGrants'), { parent: 'regions/-', filter: 'mode = SOMETIMES' }],
    ]);
    expect(bad.error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(bad.error.status.details).toContainEqual(expect.objectContaining({ reason: 'INVALID_LIST_FILTER', domain: 'shmbroker' }));
    expect(badGrant.error.details).toMatch(/mode is one of READ_ONLY, READ_WRITE/);
  });

  it('pages through a filtered list; a token from one filter is refused with another (AIP-158)', async () => {
    const f = 'name = "regions/team-a.*"';
    const [p1] = await pyreflect(broker.runtimeDir + '/broker.sock', protoset, [['call', svc('ListRegions'), { filter: f, pageSize: 2 }]]);
    expect(p1.ok.regions.map((x: { name: string }) => x.name)).toEqual(['regions/team-a.frames', 'regions/team-a.logs']);
    const token = p1.ok.nextPageToken;
    expect(token).toBeTruthy();
    const [p2, other, none] = await pyreflect(broker.runtimeDir + '/broker.sock', protoset, [
      ['call', svc('ListRegions'), { filter: f, pageSize: 2, pageToken: token }],
      ['call', svc('ListRegions'), { filter: 'owner_uid = 1001', pageSize: 2, pageToken: token }],
      ['call', svc('ListRegions'), { pageSize: 2, pageToken: token }],
    ]);
    expect(p2.ok.regions.map((x: { name: string }) => x.name)).toEqual(['regions/team-a.tensors']);
    expect(p2.ok.nextPageToken ?? '').toBe('');
    for (const e of [other, none]) {
      expect(e.error).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(e.error.status.details).toContainEqual(expect.objectContaining({ reason: 'INVALID_PAGE_TOKEN' }));
    }
  });
});
