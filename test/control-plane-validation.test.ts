// Bad requests to the control plane get the canonical code, a reason and a
// clear message, row by row; nothing is left behind by a refused create.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../clients/sdk/control-client';
import type { ShmbrokerError } from '../clients/sdk/errors';
import { BrokerProcess, runNode } from './support/broker-process';

describe('control-plane validation', () => {
  let broker: BrokerProcess;
  let client: ControlClient;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
    client = new ControlClient({ runtimeDir: broker.runtimeDir });
    await client.call('BrokerService', 'CreateRegion', { regionId: 'taken', region: { sizeBytes: 4096 } });
  });
  afterAll(async () => {
    client?.close();
    await broker?.cleanup();
  });

  const createCases: Array<[string, object, string, string, RegExp]> = [
    ['no region', { regionId: 'a' }, 'INVALID_ARGUMENT', 'INVALID_SIZE', /positive/],
    ['size 0', { regionId: 'a', region: { sizeBytes: 0 } }, 'INVALID_ARGUMENT', 'INVALID_SIZE', /positive/],
    ['size not a page multiple', { regionId: 'a', region: { sizeBytes: 4097 } }, 'INVALID_ARGUMENT', 'SIZE_NOT_ALIGNED', /multiple of 4096/],
    ['size 2^63', { regionId: 'a', region: { sizeBytes: '9223372036854775808' } }, 'INVALID_ARGUMENT', 'INVALID_SIZE', /positive number/],
    ['size over the configured maximum', { regionId: 'a', region: { sizeBytes: 32 * 1024 ** 3 } }, 'INVALID_ARGUMENT', 'SIZE_OUT_OF_RANGE', /allowed range/],
    ['hugepages with a 4 KiB size', { regionId: 'a', region: { sizeBytes: 4096, hugepages: true } }, 'INVALID_ARGUMENT', 'SIZE_NOT_ALIGNED', /2 MiB/],
    ['empty name', { regionId: '', region: { sizeBytes: 4096 } }, 'INVALID_ARGUMENT', 'INVALID_REGION_NAME', /required/],
    ['upper-case name', { regionId: 'Frames', region: { sizeBytes: 4096 } }, 'INVALID_ARGUMENT', 'INVALID_REGION_NAME', /not a valid region name/],
    ['name starting with a dot', { regionId: '.x', region: { sizeBytes: 4096 } }, 'INVALID_ARGUMENT', 'INVALID_REGION_NAME', /not a valid region name/],
    ['name of 64 characters', { regionId: 'a'.repeat(64), region: { sizeBytes: 4096 } }, 'INVALID_ARGUMENT', 'INVALID_REGION_NAME', /1-63 characters/],
    ['name with a slash', { regionId: 'a/b', region: { sizeBytes: 4096 } }, 'INVALID_ARGUMENT', 'INVALID_REGION_NAME', /not a valid/],
    ['name with unicode', { regionId: 'régión', region: { sizeBytes: 4096 } }, 'INVALID_ARGUMENT', 'INVALID_REGION_NAME', /not a valid/],
    ['name with a control character', { regionId: 'a\u0000b', region: { sizeBytes: 4096 } }, 'INVALID_ARGUMENT', 'INVALID_REGION_NAME', /not a valid/],
    ['numa node on memfd', { regionId: 'a', region: { sizeBytes: 4096, numaNode: 0 } }, 'INVALID_ARGUMENT', 'NUMA_UNSUPPORTED', /NUMA/],
    ['duplicate name', { regionId: 'taken', region: { sizeBytes: 4096 } }, 'ALREADY_EXISTS', 'REGION_EXISTS', /already exists/],
  ];

  for (const [name, req, code, reason, message] of createCases) {
    it(`CreateRegion: ${name} -> ${code} ${reason}`, async () => {
      const err = (await client.call('BrokerService', 'CreateRegion', req).catch((e: unknown) => e)) as ShmbrokerError;
      expect(err).toBeInstanceOf(Error);
      expect({ code: err.code, reason: err.reason }).toEqual({ code, reason });
      expect(err.message).toMatch(message);
    });
  }

  it('refused creates left nothing behind', async () => {
    const res = await client.call('BrokerService', 'ListRegions', {});
    expect(res.regions.map((r: { name: string }) => r.name)).toEqual(['regions/taken']);
  });

  const otherCases: Array<[string, string, object, string, string]> = [
    ['GetRegion bad resource name', 'GetRegion', { name: 'taken' }, 'INVALID_ARGUMENT', 'INVALID_RESOURCE_NAME'],
    ['GetRegion missing', 'GetRegion', { name: 'regions/nope' }, 'NOT_FOUND', 'REGION_NOT_FOUND'],
    ['DeleteRegion missing', 'DeleteRegion', { name: 'regions/nope' }, 'NOT_FOUND', 'REGION_NOT_FOUND'],
    ['ListRegions garbage page token', 'ListRegions', { pageToken: 'not-a-token' }, 'INVALID_ARGUMENT', 'INVALID_PAGE_TOKEN'],
    ['ListRegions negative page size', 'ListRegions', { pageSize: -1 }, 'INVALID_ARGUMENT', 'INVALID_PAGE_SIZE'],
    ['ListGrants token of another list', 'ListGrants', { parent: 'regions/-', pageToken: Buffer.from('{"l":"regions","a":"x"}').toString('base64url') }, 'INVALID_ARGUMENT', 'INVALID_PAGE_TOKEN'],
    ['CreateGrant without grantee', 'CreateGrant', { parent: 'regions/taken', grant: { mode: 'ACCESS_MODE_READ_ONLY' } }, 'INVALID_ARGUMENT', 'INVALID_GRANTEE'],
    ['CreateGrant without mode', 'CreateGrant', { parent: 'regions/taken', grant: { uid: 5 } }, 'INVALID_ARGUMENT', 'INVALID_MODE'],
    ['CreateGrant uid 2^32-1', 'CreateGrant', { parent: 'regions/taken', grant: { uid: 4294967295, mode: 'ACCESS_MODE_READ_ONLY' } }, 'INVALID_ARGUMENT', 'INVALID_GRANTEE'],
    ['CreateGrant on a missing region', 'CreateGrant', { parent: 'regions/nope', grant: { uid: 5, mode: 'ACCESS_MODE_READ_ONLY' } }, 'NOT_FOUND', 'REGION_NOT_FOUND'],
    ['RevokeGrant bad name', 'RevokeGrant', { name: 'grants/abc' }, 'INVALID_ARGUMENT', 'INVALID_RESOURCE_NAME'],
    ['RevokeGrant missing', 'RevokeGrant', { name: 'grants/999' }, 'NOT_FOUND', 'GRANT_NOT_FOUND'],
  ];
  for (const [name, method, req, code, reason] of otherCases) {
    it(`${name} -> ${code} ${reason}`, async () => {
      const err = (await client.call('BrokerService', method, req).catch((e: unknown) => e)) as ShmbrokerError;
      expect({ code: err.code, reason: err.reason }).toEqual({ code, reason });
    });
  }

  it('pages through regions with page_size and page_token', async () => {
    for (let i = 0; i < 5; i++) await client.call('BrokerService', 'CreateRegion', { regionId: `page-${i}`, region: { sizeBytes: 4096 } });
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const res = await client.call('BrokerService', 'ListRegions', { pageSize: 2, pageToken });
      expect(res.regions.length).toBeLessThanOrEqual(2);
      seen.push(...res.regions.map((r: { name: string }) => r.name));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken);
    expect(pages).toBe(3);
    expect(seen).toEqual(['regions/page-0', 'regions/page-1', 'regions/page-2', 'regions/page-3', 'regions/page-4', 'regions/taken']);
  });

  it('identity claimed in gRPC metadata is ignored (uid 1002 stays uid 1002)', async () => {
    const script = `
      const grpc = require(REPO + '/node_modules/@grpc/grpc-js');
      const { loadShmbrokerGrpc } = require(REPO + '/dist/proto/load.js');
      const { decodeStatus } = require(REPO + '/dist/proto/status-details.js');
      const pkg = loadShmbrokerGrpc();
      const c = new pkg.BrokerService('unix:' + process.argv[2] + '/broker.sock', grpc.credentials.createInsecure());
      const md = new grpc.Metadata();
      for (const k of ['uid', 'x-uid', 'x-shmbroker-uid', 'x-forwarded-user', 'authorization']) md.set(k, '0');
      c.DeleteRegion({ name: 'regions/taken' }, md, (err) => {
        c.GetStatus({}, md, (err2, status) => {
          process.stdout.write(JSON.stringify({ code: err && err.code, reason: err && decodeStatus(err.metadata.get('grpc-status-details-bin')[0]).errorInfo.reason, callerUid: status.callerUid, admin: status.callerIsAdmin }));
          c.close();
        });
      });`;
    const r = await runNode(script, { uid: 1002, gid: 1002, args: [broker.runtimeDir] });
    expect(r.stderr).toBe('');
    // Identity in metadata is ignored: uid 1002 may not see the region, so it is NOT_FOUND (5) to it.
    expect(JSON.parse(r.stdout.toString())).toEqual({ code: 5, reason: 'REGION_NOT_FOUND', callerUid: 1002, admin: false });
    const still = await client.call('BrokerService', 'GetRegion', { name: 'regions/taken' });
    expect(still.name).toBe('regions/taken');
  });
});
