// `-o json` is the proto3 JSON mapping of the message each command returns,
// and `-o yaml` the same data: checked by parsing the CLI's output with
// another implementation's proto3 JSON parser (Debian's python3-protobuf,
// json_format.Parse, unknown fields rejected) into messages compiled by
// protoc from the .proto files, for every resource type and list.
import * as fs from 'node:fs';
import * as YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, makeTempDir } from './support/broker-process';
import { buildApiProtoset, pyjson } from './support/python-client';

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const U1 = { uid: 1001, gid: 1001 };

describe('CLI -o json / -o yaml: proto3 JSON', () => {
  let broker: BrokerProcess;
  let work: string;
  let protoset: string;
  beforeAll(async () => {
    work = makeTempDir('shmbroker-clijson-');
    protoset = buildApiProtoset(work);
    broker = await BrokerProcess.start();
  });
  afterAll(async () => {
    await broker?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** Parses each [type, text] with python3-protobuf; returns what it parsed (as proto3 JSON again). */
  const parse = (items: Array<[string, string]>): Promise<any[]> => pyjson(protoset, items);

  /** Runs a command with -o json. */
  async function json(args: string[], o = {}): Promise<string> {
    const r = await broker.cli([...args, '-o', 'json'], o);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.toString();
  }

  /** Runs a read-only command with -o json and -o yaml; both must be the same data. */
  async function both(args: string[], o = {}): Promise<string> {
    const json = await broker.cli([...args, '-o', 'json'], o);
    expect(json.code, json.stderr).toBe(0);
    const yaml = await broker.cli([...args, '-o', 'yaml'], o);
    expect(yaml.code, yaml.stderr).toBe(0);
    expect(YAML.parse(yaml.stdout.toString())).toEqual(JSON.parse(json.stdout.toString()));
    return json.stdout.toString();
  }

  it('every resource type and list parses as the message it claims to be', async () => {
    // Reads are printed with -o json and -o yaml (the same data); mutations
    // and answers that change from call to call (uptime, events checked) with -o json.
    const created = await json(['region', 'create', 'j-1', '--size', '64KiB'], U1);
    await broker.cli(['region', 'create', 'j-2', '--size', '4KiB'], U1);
    const shown = await both(['region', 'show', 'j-1'], U1);
    const regions = await both(['region', 'list'], U1);
    const grant = await json(['grant', 'create', 'j-1', '--uid', '1002', '--mode', 'rw', '--ttl', '1h'], U1);
    const grants = await both(['grant', 'list', '--region', 'j-1'], U1);
    const quota = await json(['quota', 'set', '--uid', '1001', '--bytes', '1GiB', '--regions', '10']);
    const quotas = await both(['quota', 'list']);
    const quotaShown = await both(['quota', 'show', '--uid', '1001']);
    const status = await json(['status']);
    const audit = await both(['audit', 'list', '--limit', '2']);
    const verify = await json(['audit', 'verify']);
    // Delete and :revoke print the Region and Grant they return, report fields included (issue 16 item 7).
    await broker.cli(['region', 'create', 'j-3', '--size', '4KiB'], U1);
    const g3 = JSON.parse(await json(['grant', 'create', 'j-3', '--uid', '1002'], U1));
    const revoked = await json(['grant', 'revoke', g3.name], U1);
    const deleted = await json(['region', 'delete', 'j-3'], U1);

    const items: Array<[string, string]> = [
      ['shmbroker.v1.Region', created],
      ['shmbroker.v1.Region', shown],
      ['shmbroker.v1.ListRegionsResponse', regions],
      ['shmbroker.v1.Grant', grant],
      ['shmbroker.v1.ListGrantsResponse', grants],
      ['shmbroker.v1.Quota', quota],
      ['shmbroker.v1.ListQuotasResponse', quotas],
      ['shmbroker.v1.Quota', quotaShown],
      ['shmbroker.v1.GetStatusResponse', status],
      ['shmbroker.v1.ListAuditEventsResponse', audit],
      ['shmbroker.v1.VerifyAuditTrailResponse', verify],
      ['shmbroker.v1.Grant', revoked],
      ['shmbroker.v1.Region', deleted],
    ];
    const parsed = await parse(items);
    parsed.forEach((p, i) => expect(p, `${items[i]![0]}: ${items[i]![1]}`).toHaveProperty('ok'));
    // What Google's parser read is what the CLI wrote (its own printer gives the same JSON back).
    parsed.forEach((p, i) => expect(p.ok, items[i]![0]).toEqual(JSON.parse(items[i]![1])));

    const region = JSON.parse(created);
    expect(region).toEqual({ name: 'regions/j-1', sizeBytes: '65536', ownerUid: 1001, ownerGid: 1001, backend: 'memfd', createTime: expect.stringMatching(RFC3339), state: 'REGION_STATE_ACTIVE', revocationAdvisory: true });
    expect(JSON.parse(revoked)).toEqual({ ...g3, revocationAdvisory: true }); // leaseCount 0: omitted
    expect(JSON.parse(deleted)).toMatchObject({ name: 'regions/j-3', state: 'REGION_STATE_DELETING', deleteTime: expect.stringMatching(RFC3339), revocationAdvisory: true });
    expect(JSON.parse(regions)).toEqual({ regions: [region, expect.objectContaining({ name: 'regions/j-2' })] }); // nextPageToken empty: omitted
    const g = JSON.parse(grant);
    expect(g).toEqual({ name: expect.stringMatching(/^regions\/j-1\/grants\/\d+$/), uid: 1002, mode: 'ACCESS_MODE_READ_WRITE', createTime: expect.stringMatching(RFC3339), expireTime: expect.stringMatching(RFC3339), creatorUid: 1001 });
    expect(JSON.parse(grants)).toEqual({ grants: [g] });
    expect(JSON.parse(quota)).toMatchObject({ name: 'quotas/uid:1001', maxBytes: '1073741824', maxRegions: '10', usage: { bytes: '69632', regions: '2' }, explicitlySet: true });
    expect(JSON.parse(status)).toMatchObject({ backend: 'memfd', regionCount: '2', callerIsAdmin: true, readOnlyEnforced: true });
    // A list cut short by --limit says so.
    const a = JSON.parse(audit);
    expect(a.events).toHaveLength(2);
    expect(a.events[0]).toMatchObject({ seq: '1', time: expect.stringMatching(RFC3339), result: 'AUDIT_RESULT_ALLOWED' });
    expect(a.nextPageToken).toMatch(/^\S+$/);
    expect(JSON.parse(verify)).toMatchObject({ ok: true, checked: expect.stringMatching(/^\d+$/) });
  });

  it('a field the message does not have is refused by the same parser (the check can fail)', async () => {
    const [bad] = await parse([['shmbroker.v1.Region', JSON.stringify({ name: 'regions/x', sizeBytes: { seconds: 1 } })]]);
    expect(bad.error).toMatch(/ParseError/);
    const [old] = await parse([['shmbroker.v1.Grant', JSON.stringify({ name: 'regions/x/grants/1', grantee: 'uid', uid: 5 })]]);
    expect(old.error).toMatch(/ParseError.*grantee/);
  });
});
