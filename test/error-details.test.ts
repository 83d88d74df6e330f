// Errors are google.rpc.Status in grpc-status-details-bin (AIP-193), decoded
// by a client the project did not write: gRPC's C core (python3-grpcio) with
// Google's own google/rpc protos compiled by protoc (test/support/pyreflect.py).
// 1. The reason table: every reason the broker sends over gRPC -> its code,
//    ErrorInfo{reason, domain, metadata} and the detail types that fit.
// 2. Over the real wire: refusals provoked by real calls of real uids.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  BrokerError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
} from '../service/errors';
import { richStatusOf } from '../service/rpc/grpc-status';
import { encodeStatus } from '../proto/status-details';
import { REASONS as REGISTRY } from '../proto/wire';
import { BrokerProcess, makeTempDir } from './support/broker-process';
import { buildClientProtoset, pyreflect } from './support/python-client';

type Ctor = new (reason: string, message: string, details?: ConstructorParameters<typeof InvalidArgumentError>[2]) => BrokerError;
const CODE: Record<string, [number, Ctor]> = {
  INVALID_ARGUMENT: [3, InvalidArgumentError],
  NOT_FOUND: [5, NotFoundError],
  ALREADY_EXISTS: [6, AlreadyExistsError],
  PERMISSION_DENIED: [7, PermissionDeniedError],
  RESOURCE_EXHAUSTED: [8, ResourceExhaustedError],
  FAILED_PRECONDITION: [9, FailedPreconditionError],
  OUT_OF_RANGE: [11, OutOfRangeError],
  INTERNAL: [13, InternalError],
  UNAVAILABLE: [14, UnavailableError],
};

// Every reason the broker sends (the registry's origin 'broker'), its code,
// the resource it is thrown about (as the audited-operation helper sets it)
// and the detail types a client finds besides ErrorInfo.
type Row = [reason: string, code: keyof typeof CODE, resource: string | undefined, details: string[], field?: string];
const TABLE: Row[] = [
  ['INVALID_REGION_NAME', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'region_id'],
  ['INVALID_RESOURCE_NAME', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'name'],
  ['INVALID_SIZE', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'region.size_bytes'],
  ['SIZE_OUT_OF_RANGE', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'region.size_bytes'],
  ['SIZE_NOT_ALIGNED', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'region.size_bytes'],
  ['INVALID_NUMA_NODE', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'region.numa_node'],
  ['NUMA_UNSUPPORTED', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'region.numa_node'],
  ['INVALID_GRANTEE', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'grant.grantee'],
  ['INVALID_MODE', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'grant.mode'],
  ['INVALID_TTL', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], 'grant.ttl'],
  ['INVALID_PAGE_SIZE', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'page_size'],
  ['INVALID_PAGE_TOKEN', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'page_token'],
  ['INVALID_TIME', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'filter'],
  ['INVALID_RESULT', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'filter.result'],
  ['INVALID_AUDIT_EVENT', 'INVALID_ARGUMENT', undefined, ['BadRequest'], ''],
  ['INVALID_RESOURCE_VERSION', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'resource_version'],
  ['INVALID_UPDATE_MASK', 'INVALID_ARGUMENT', 'quotas/uid:5', ['BadRequest'], 'update_mask'],
  ['MISSING_QUOTA', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'quota'],
  ['INVALID_QUOTA', 'INVALID_ARGUMENT', 'quotas/uid:5', ['BadRequest'], 'quota'],
  ['INVALID_QUOTA_NAME', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'name'],
  ['INVALID_QUOTA_SUBJECT', 'INVALID_ARGUMENT', undefined, ['BadRequest'], 'name'],
  ['QUOTA_ALREADY_CHARGED', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], ''],
  ['BACKEND_REFUSED', 'INVALID_ARGUMENT', 'regions/a', ['BadRequest'], ''],
  ['REGION_NOT_FOUND', 'NOT_FOUND', 'regions/a', ['ResourceInfo']],
  ['GRANT_NOT_FOUND', 'NOT_FOUND', 'regions/a/grants/7', ['ResourceInfo']],
  ['LEASE_NOT_FOUND', 'NOT_FOUND', undefined, []],
  ['REGION_EXISTS', 'ALREADY_EXISTS', 'regions/a', ['ResourceInfo']],
  ['NOT_OWNER', 'PERMISSION_DENIED', 'regions/a', ['ResourceInfo']],
  ['ADMIN_ONLY', 'PERMISSION_DENIED', undefined, []],
  ['NOT_YOUR_QUOTA', 'PERMISSION_DENIED', 'quotas/uid:5', ['ResourceInfo']],
  ['CREATE_NOT_ALLOWED', 'PERMISSION_DENIED', 'regions/a', ['ResourceInfo']],
  ['NO_GRANT', 'PERMISSION_DENIED', 'regions/a', ['ResourceInfo']],
  ['GRANT_READ_ONLY', 'PERMISSION_DENIED', 'regions/a', ['ResourceInfo']],
  ['QUOTA_BYTES', 'RESOURCE_EXHAUSTED', 'regions/a', ['QuotaFailure']],
  ['QUOTA_REGIONS', 'RESOURCE_EXHAUSTED', 'regions/a', ['QuotaFailure']],
  ['QUOTA_GRANTS', 'RESOURCE_EXHAUSTED', 'regions/a', ['QuotaFailure']],
  ['BACKEND_EXHAUSTED', 'RESOURCE_EXHAUSTED', 'regions/a', []],
  ['RATE_LIMITED', 'RESOURCE_EXHAUSTED', undefined, ['RetryInfo']],
  ['STATE_STORAGE_FULL', 'RESOURCE_EXHAUSTED', 'regions/a', []],
  ['STATE_LOW_SPACE', 'RESOURCE_EXHAUSTED', 'regions/a', []],
  ['FD_LIMIT_REACHED', 'RESOURCE_EXHAUSTED', 'regions/a', []],
  ['TOO_MANY_LEASES', 'RESOURCE_EXHAUSTED', undefined, []],
  ['WATCH_VERSION_EXPIRED', 'OUT_OF_RANGE', undefined, []],
  ['TOO_MANY_GRANTS', 'FAILED_PRECONDITION', 'regions/a', ['ResourceInfo']],
  ['REGION_LOST', 'FAILED_PRECONDITION', 'regions/a', ['ResourceInfo']],
  ['HUGEPAGES_UNAVAILABLE', 'FAILED_PRECONDITION', 'regions/a', ['ResourceInfo']],
  ['BACKEND_UNSUPPORTED', 'FAILED_PRECONDITION', 'regions/a', ['ResourceInfo']],
  ['INTERNAL', 'INTERNAL', undefined, []],
  ['UNKNOWN_PEER', 'INTERNAL', undefined, []],
];

// Every broker reason of the registry: the table's rows, and for a reason
// the table does not list yet, what the rules alone say (BadRequest for an
// invalid argument, the field not checked).
const REASONS: Row[] = [
  ...TABLE,
  ...Object.entries(REGISTRY)
    .filter(([reason, r]) => r.origin === 'broker' && !TABLE.some(([t]) => t === reason))
    .map(([reason, r]): Row => [reason, r.code as keyof typeof CODE, undefined, r.code === 'INVALID_ARGUMENT' ? ['BadRequest'] : [], undefined]),
];

describe('error details (google.rpc.Status)', () => {
  let work: string;
  let protoset: string;
  let broker: BrokerProcess;
  let sock: string;
  beforeAll(async () => {
    work = makeTempDir('shmbroker-errdetails-');
    protoset = buildClientProtoset(work);
    broker = await BrokerProcess.start();
    sock = path.join(broker.runtimeDir, 'broker.sock');
  });
  afterAll(async () => {
    await broker?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('the table rows are reasons of the registry the broker sends, with the registry\'s code', () => {
    for (const [reason, code] of TABLE) {
      expect(REGISTRY[reason as keyof typeof REGISTRY], reason).toMatchObject({ code, origin: 'broker' });
    }
    // Reasons added to the registry later are checked too, by the rules alone (REASONS below).
    expect(REASONS.length).toBe(Object.values(REGISTRY).filter((r) => r.origin === 'broker').length);
  });

  it('every reason -> its code and ErrorInfo, decoded by python3-grpcio with Google\'s protos', async () => {
    const errors = REASONS.map(([reason, code, resource, , ]) => {
      const [, Ctor] = CODE[code]!;
      const quota = reason.startsWith('QUOTA_') && code === 'RESOURCE_EXHAUSTED' ? { quotaSubject: 'uid:1001', metadata: { limit: '10' } } : {};
      const err = new Ctor(reason, `message of ${reason}`, quota);
      err.resource = resource;
      return err;
    });
    const decoded = await pyreflect(sock, protoset, errors.map((e) => ['decode_status', encodeStatus(richStatusOf(e)).toString('hex')]));
    expect(decoded).toHaveLength(REASONS.length);
    REASONS.forEach(([reason, code, resource, details, field], i) => {
      const status = decoded[i].ok;
      expect(status.code, reason).toBe(CODE[code]![0]);
      expect(status.message).toBe(`message of ${reason}`);
      const [info, ...rest] = status.details;
      const metadata: Record<string, string> = {};
      if (resource?.includes('/grants/')) Object.assign(metadata, { region: 'regions/a', grant: resource });
      else if (resource?.startsWith('regions/')) metadata['region'] = resource;
      else if (resource?.startsWith('quotas/')) metadata['quota'] = resource;
      if (reason.startsWith('QUOTA_') && code === 'RESOURCE_EXHAUSTED') metadata['limit'] = '10';
      expect(info, reason).toEqual({ '@type': 'google.rpc.ErrorInfo', reason, domain: 'shmbroker', ...(Object.keys(metadata).length ? { metadata } : {}) });
      expect(rest.map((d: { '@type': string }) => d['@type'].replace('google.rpc.', '')), reason).toEqual(details);
      for (const d of rest) {
        if (d['@type'] === 'google.rpc.BadRequest') {
          if (field === undefined) expect(d.fieldViolations, reason).toEqual([expect.objectContaining({ description: `message of ${reason}` })]);
          else expect(d.fieldViolations, reason).toEqual([{ ...(field ? { field } : {}), description: `message of ${reason}` }]);
        }
        if (d['@type'] === 'google.rpc.QuotaFailure') expect(d.violations).toEqual([{ subject: 'uid:1001', description: `message of ${reason}` }]);
        if (d['@type'] === 'google.rpc.RetryInfo') expect(d.retryDelay).toBe('1s');
        if (d['@type'] === 'google.rpc.ResourceInfo') {
          expect(d).toMatchObject({ resourceName: resource, resourceType: resource!.includes('/grants/') ? 'shmbroker.v1.Grant' : resource!.startsWith('quotas/') ? 'shmbroker.v1.Quota' : 'shmbroker.v1.Region' });
        }
      }
    });
  });

  it('over the real wire: quota, not found, bad request, not owner, admin only, as uids 1001 and 1002', async () => {
    await broker.cli(['quota', 'set', '--uid', '1001', '--bytes', '8KiB']);
    const create = (id: string, size: string) => ['call', 'shmbroker.v1.BrokerService/CreateRegion', { regionId: id, region: { sizeBytes: size } }];
    const [ok, overQuota, badSize, badName] = await pyreflect(sock, protoset, [create('mine', '4096'), create('big', '1048576'), create('odd', '100'), create('Bad/Name', '4096')], 1001);
    expect(ok.ok.name).toBe('regions/mine');

    expect(overQuota.error.code).toBe('RESOURCE_EXHAUSTED');
    const [quotaInfo, quotaFailure] = overQuota.error.status.details;
    expect(quotaInfo).toEqual({ '@type': 'google.rpc.ErrorInfo', reason: 'QUOTA_BYTES', domain: 'shmbroker', metadata: { region: 'regions/big', limit: '8192', usage: '4096', requested: '1048576' } });
    expect(quotaFailure).toEqual({ '@type': 'google.rpc.QuotaFailure', violations: [{ subject: 'uid:1001', description: overQuota.error.details }] });

    expect(badSize.error.code).toBe('INVALID_ARGUMENT');
    expect(badSize.error.status.details[0]).toMatchObject({ reason: 'SIZE_NOT_ALIGNED', metadata: { region: 'regions/odd' } });
    expect(badSize.error.status.details[1]).toMatchObject({ '@type': 'google.rpc.BadRequest', fieldViolations: [{ field: 'region.size_bytes' }] });
    expect(badName.error.status.details[0]).toMatchObject({ reason: 'INVALID_REGION_NAME' });
    expect(badName.error.status.details[1].fieldViolations[0].field).toBe('region_id');

    const [notOwner, missing, adminOnly] = await pyreflect(
      sock,
      protoset,
      [
        ['call', 'shmbroker.v1.BrokerService/DeleteRegion', { name: 'regions/mine' }],
        ['call', 'shmbroker.v1.BrokerService/GetRegion', { name: 'regions/nothing-here' }],
        ['call', 'shmbroker.v1.AuditService/VerifyAuditTrail', {}],
      ],
      1002,
    );
    // uid 1002 may not see regions/mine: NOT_FOUND hides it (issue 16 item 6)
    expect(notOwner.error.code).toBe('NOT_FOUND');
    expect(notOwner.error.status.details[0].reason).toBe('REGION_NOT_FOUND');
    expect(notOwner.error.status.details[0]).toMatchObject({ domain: 'shmbroker', metadata: { region: 'regions/mine' } });
    expect(notOwner.error.status.details[1]).toMatchObject({ '@type': 'google.rpc.ResourceInfo', resourceType: 'shmbroker.v1.Region', resourceName: 'regions/mine' });
    expect(missing.error).toMatchObject({ code: 'NOT_FOUND' });
    expect(missing.error.status.details[0]).toEqual({ '@type': 'google.rpc.ErrorInfo', reason: 'REGION_NOT_FOUND', domain: 'shmbroker', metadata: { region: 'regions/nothing-here' } });
    expect(adminOnly.error.code).toBe('PERMISSION_DENIED');
    expect(adminOnly.error.status.details[0]).toEqual({ '@type': 'google.rpc.ErrorInfo', reason: 'ADMIN_ONLY', domain: 'shmbroker' });
  });

  it('the SDK and the CLI read the reason from ErrorInfo (no other reason channel exists)', async () => {
    const r = await broker.cli(['region', 'show', 'nothing-here'], { uid: 1001, gid: 1001 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\(REGION_NOT_FOUND\)\n$/);
  });
});
