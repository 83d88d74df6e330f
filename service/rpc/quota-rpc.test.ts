// The QuotaService handlers, fed requests and checked responses through the
// real proto codec (the same proto-loader options the broker uses).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reasonOf } from '../../test/support/broker-errors';
import { PROTO_DEPS_DIR, PROTO_DIR, PROTO_OPTIONS } from '../../proto/load';
import { AuditTrail } from '../audit/audit-trail';
import { quotaServiceHandlers, type RpcCaller } from './quota-rpc';
import { QuotaStore } from '../store/quota-store';

const pd = protoLoader.loadSync(['shmbroker/v1/quota.proto'], { ...PROTO_OPTIONS, includeDirs: [PROTO_DIR, PROTO_DEPS_DIR] });
const svc = pd['shmbroker.v1.QuotaService'] as protoLoader.ServiceDefinition;

/** Encodes the request, decodes it as the server would, calls, and round-trips the response. */
function call(h: ReturnType<typeof quotaServiceHandlers>, method: keyof typeof h, caller: RpcCaller, request: object): any {
  const m = svc[method]!;
  const decoded = m.requestDeserialize(m.requestSerialize(request));
  const response = (h[method] as (c: RpcCaller, r: unknown) => unknown)(caller, decoded);
  return m.responseDeserialize(m.responseSerialize(response));
}

const admin: RpcCaller = { pid: 1, uid: 0, gid: 0, groups: [], isAdmin: true };
const alice: RpcCaller = { pid: 2, uid: 1001, gid: 1001, groups: [50], isAdmin: false };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-quota-rpc-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
let db: BetterSqlite3.Database;
beforeEach(() => {
  db = new BetterSqlite3(path.join(dir, `r${++n}.db`));
  db.pragma('journal_mode = WAL');
});
afterEach(() => db.close());

describe('QuotaService handlers', () => {
  it('UpdateQuota / GetQuota: the Must-show quota, with usage', () => {
    const quotas = new QuotaStore(db, { uid: { regions: 64 } });
    const h = quotaServiceHandlers({ quotas });
    const set = call(h, 'UpdateQuota', admin, {
      quota: { name: 'quotas/uid:1001', maxBytes: 1048576, maxRegions: 2 },
      updateMask: { paths: ['max_bytes', 'max_regions'] },
    });
    expect(set).toMatchObject({ name: 'quotas/uid:1001', maxBytes: 1048576, maxRegions: 2, explicitlySet: true, usage: { bytes: 0, regions: 0 } });
    expect(set.maxGrantsPerRegion).toBeUndefined();
    quotas.chargeRegion('a', { uid: 1001, gids: [1001, 50] }, 524288);
    const got = call(h, 'GetQuota', alice, { name: 'quotas/uid:1001' });
    expect(got).toMatchObject({ maxBytes: 1048576, maxRegions: 2, usage: { bytes: 524288, regions: 1 } });
    // Own gids are readable too; others' quotas are not.
    expect(call(h, 'GetQuota', alice, { name: 'quotas/gid:50' })).toMatchObject({ usage: { bytes: 524288, regions: 1 }, explicitlySet: false });
    expect(reasonOf(() => call(h, 'GetQuota', alice, { name: 'quotas/uid:1002' }))).toBe('NOT_YOUR_QUOTA');
    expect(reasonOf(() => call(h, 'GetQuota', alice, { name: 'quotas/gid:60' }))).toBe('NOT_YOUR_QUOTA');
    expect(reasonOf(() => call(h, 'GetQuota', admin, { name: 'uid=1' }))).toBe('INVALID_QUOTA_NAME');
  });

  it('UpdateQuota update_mask semantics', () => {
    const quotas = new QuotaStore(db, { uid: { bytes: 100, regions: 5 } });
    const h = quotaServiceHandlers({ quotas });
    // Only max_bytes: regions keeps the default in force.
    expect(call(h, 'UpdateQuota', admin, { quota: { name: 'quotas/uid:7', maxBytes: 10 }, updateMask: { paths: ['max_bytes'] } })).toMatchObject({
      maxBytes: 10,
      maxRegions: 5,
    });
    // Named but unset: unlimited.
    const r = call(h, 'UpdateQuota', admin, { quota: { name: 'quotas/uid:7' }, updateMask: { paths: ['maxRegions'] } });
    expect(r.maxBytes).toBe(10);
    expect(r.maxRegions).toBeUndefined();
    // No mask: everything replaced.
    const all = call(h, 'UpdateQuota', admin, { quota: { name: 'quotas/uid:7', maxGrantsPerRegion: 3 } });
    expect([all.maxBytes, all.maxRegions, all.maxGrantsPerRegion]).toEqual([undefined, undefined, 3]);
    // 0 is a limit, not "unset".
    expect(call(h, 'UpdateQuota', admin, { quota: { name: 'quotas/gid:9', maxBytes: 0 } }).maxBytes).toBe(0);
    expect(reasonOf(() => call(h, 'UpdateQuota', admin, { quota: { name: 'quotas/uid:7' }, updateMask: { paths: ['usage'] } }))).toBe('INVALID_UPDATE_MASK');
    expect(reasonOf(() => call(h, 'UpdateQuota', admin, {}))).toBe('MISSING_QUOTA');
    expect(reasonOf(() => call(h, 'UpdateQuota', alice, { quota: { name: 'quotas/uid:1001', maxBytes: 1 << 30 } }))).toBe('ADMIN_ONLY');
    // DeleteQuota restores the default.
    expect(call(h, 'DeleteQuota', admin, { name: 'quotas/uid:7' })).toMatchObject({ maxBytes: 100, maxRegions: 5, explicitlySet: false });
    expect(reasonOf(() => call(h, 'DeleteQuota', alice, { name: 'quotas/uid:1001' }))).toBe('ADMIN_ONLY');
  });

  it('ListQuotas pages for admins and shows a user only their own', () => {
    const quotas = new QuotaStore(db, {});
    const h = quotaServiceHandlers({ quotas });
    for (let i = 0; i < 5; i++) quotas.set({ kind: 'uid', id: 2000 + i }, { regions: i });
    quotas.set({ kind: 'gid', id: 50 }, { bytes: 1 });
    const names: string[] = [];
    let pageToken = '';
    do {
      const res = call(h, 'ListQuotas', admin, { pageSize: 2, pageToken });
      names.push(...res.quotas.map((q: { name: string }) => q.name));
      pageToken = res.nextPageToken;
    } while (pageToken);
    expect(names).toEqual(['quotas/uid:2000', 'quotas/uid:2001', 'quotas/uid:2002', 'quotas/uid:2003', 'quotas/uid:2004', 'quotas/gid:50']);
    expect(call(h, 'ListQuotas', alice, {}).quotas.map((q: { name: string }) => q.name)).toEqual(['quotas/uid:1001', 'quotas/gid:50', 'quotas/gid:1001']);
    // AIP-158, as every List: a negative size is refused, one above the maximum is coerced to it.
    expect(reasonOf(() => call(h, 'ListQuotas', admin, { pageSize: -1 }))).toBe('INVALID_PAGE_SIZE');
    expect(call(h, 'ListQuotas', admin, { pageSize: 5000 }).quotas).toHaveLength(6);
    // A token of another list is refused too.
    expect(reasonOf(() => call(h, 'ListQuotas', admin, { pageToken: Buffer.from('{"l":"regions","a":"x"}').toString('base64url') }))).toBe('INVALID_PAGE_TOKEN');
    expect(reasonOf(() => call(h, 'ListQuotas', admin, { pageToken: 'zz' }))).toBe('INVALID_PAGE_TOKEN');
  });

  it('with an audit trail: calls and refusals are events, a refused UpdateQuota changes nothing', () => {
    const quotas = new QuotaStore(db, {});
    const audit = new AuditTrail(db);
    const h = quotaServiceHandlers({ quotas, audit, isAdmin: (c) => c.uid === 0 });
    call(h, 'UpdateQuota', admin, { quota: { name: 'quotas/uid:1001', maxBytes: 1048576, maxRegions: 2 } });
    expect(reasonOf(() => call(h, 'UpdateQuota', { ...alice, isAdmin: true }, { quota: { name: 'quotas/uid:1001', maxBytes: 1 << 30 } }))).toBe('ADMIN_ONLY');
    call(h, 'GetQuota', alice, { name: 'quotas/uid:1001' });
    expect(quotas.get({ kind: 'uid', id: 1001 }).limits).toEqual({ bytes: 1048576, regions: 2 });
    const evs = audit.list().events;
    expect(evs.map((e) => [e.action, e.resource, e.result, e.reason ?? '', e.actor.uid])).toEqual([
      ['UpdateQuota', 'quotas/uid:1001', 'ALLOWED', '', 0],
      ['UpdateQuota', 'quotas/uid:1001', 'DENIED', 'ADMIN_ONLY', 1001],
      ['GetQuota', 'quotas/uid:1001', 'ALLOWED', '', 1001],
    ]);
    expect(audit.verify().ok).toBe(true);
  });
});
