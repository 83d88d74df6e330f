// The AuditService handlers through the real proto codec.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reasonOf } from '../../test/support/broker-errors';
import { PROTO_DIR, PROTO_OPTIONS } from '../../proto/load';
import { auditServiceHandlers } from './audit-rpc';
import { AuditTrail } from '../audit/audit-trail';
import { Auditor } from '../audit/audited-operation';
import { ResourceExhaustedError } from '../errors';
import type { RpcCaller } from './quota-rpc';

const pd = protoLoader.loadSync(['shmbroker/v1/audit.proto'], { ...PROTO_OPTIONS, includeDirs: [PROTO_DIR] });
const svc = pd['shmbroker.v1.AuditService'] as protoLoader.ServiceDefinition;

function codec(method: string) {
  const m = svc[method]!;
  return {
    req: (r: object) => m.requestDeserialize(m.requestSerialize(r)),
    res: (r: unknown) => m.responseDeserialize(m.responseSerialize(r)),
  };
}

function call(h: ReturnType<typeof auditServiceHandlers>, method: 'ListAuditEvents' | 'VerifyAuditTrail', caller: RpcCaller, request: object): any {
  const c = codec(method);
  return c.res((h[method] as (c: RpcCaller, r: unknown) => unknown)(caller, c.req(request)));
}

const admin: RpcCaller = { pid: 1, uid: 0, gid: 0, groups: [], isAdmin: true };
const alice: RpcCaller = { pid: 2, uid: 1001, gid: 1001, groups: [], isAdmin: false };
const bob = { pid: 3, uid: 1002, gid: 1002 };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-audit-rpc-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
let db: BetterSqlite3.Database;
let audit: AuditTrail;
beforeEach(() => {
  db = new BetterSqlite3(path.join(dir, `r${++n}.db`));
  db.pragma('journal_mode = WAL');
  audit = new AuditTrail(db);
  // What the broker records for the Must-show: two creates allowed, two refused.
  const a = { pid: alice.pid, uid: alice.uid, gid: alice.gid };
  for (const [region, reason] of [['a', ''], ['b', ''], ['c', 'QUOTA_BYTES'], ['d', 'QUOTA_REGIONS']] as const) {
    try {
      new Auditor({ db, audit }).run({ actor: a, action: 'CreateRegion', resource: `regions/${region}`, details: { sizeBytes: 4096 } }, () => {
        if (reason) throw new ResourceExhaustedError(reason, 'over quota');
      });
    } catch {
      // refused, and recorded
    }
  }
  db.transaction(() => audit.append({ actor: bob, action: 'Acquire', resource: 'regions/a', result: 'DENIED', reason: 'NO_GRANT' }))();
});
afterEach(() => db.close());

describe('AuditService handlers', () => {
  it('lists the refusals with their reason, as the proto carries them', () => {
    const h = auditServiceHandlers({ audit });
    const res = call(h, 'ListAuditEvents', admin, { filter: { result: 'AUDIT_RESULT_DENIED' } });
    expect(res.events.map((e: any) => [e.seq, e.action, e.resource, e.result, e.reason])).toEqual([
      [3, 'CreateRegion', 'regions/c', 'AUDIT_RESULT_DENIED', 'QUOTA_BYTES'],
      [4, 'CreateRegion', 'regions/d', 'AUDIT_RESULT_DENIED', 'QUOTA_REGIONS'],
      [5, 'Acquire', 'regions/a', 'AUDIT_RESULT_DENIED', 'NO_GRANT'],
    ]);
    const first = res.events[0];
    expect(first.actor).toEqual({ pid: 2, uid: 1001, gid: 1001, pod: null });
    expect(JSON.parse(first.detailsJson)).toEqual({ sizeBytes: 4096 });
    expect(first.hash).toMatch(/^[0-9a-f]{64}$/);
    const stored = audit.list({ limit: 3 }).events[2]!;
    expect(new Date(first.time.seconds * 1000 + first.time.nanos / 1e6).toISOString()).toBe(stored.time);
    // Filters: resource prefix, time, action, paging, newest first.
    expect(call(h, 'ListAuditEvents', admin, { filter: { resource: 'regions/a' } }).events.map((e: any) => e.seq)).toEqual([1, 5]);
    expect(call(h, 'ListAuditEvents', admin, { filter: { action: 'Acquire' } }).events).toHaveLength(1);
    const t = Date.parse(stored.time);
    expect(call(h, 'ListAuditEvents', admin, { filter: { startTime: { seconds: Math.floor(t / 1000) + 3600, nanos: 0 } } }).events).toHaveLength(0);
    const p1 = call(h, 'ListAuditEvents', admin, { pageSize: 2, newestFirst: true });
    expect(p1.events.map((e: any) => e.seq)).toEqual([5, 4]);
    const p2 = call(h, 'ListAuditEvents', admin, { pageSize: 2, newestFirst: true, pageToken: p1.nextPageToken });
    expect(p2.events.map((e: any) => e.seq)).toEqual([3, 2]);
  });

  it('a non-admin sees only their own events', () => {
    const h = auditServiceHandlers({ audit });
    expect(call(h, 'ListAuditEvents', alice, {}).events.map((e: any) => e.actor.uid)).toEqual([1001, 1001, 1001, 1001]);
    expect(call(h, 'ListAuditEvents', alice, { filter: { actorUid: 1001, result: 'AUDIT_RESULT_DENIED' } }).events).toHaveLength(2);
    expect(reasonOf(() => call(h, 'ListAuditEvents', alice, { filter: { actorUid: 1002 } }))).toBe('ADMIN_ONLY');
    expect(reasonOf(() => call(h, 'ListAuditEvents', alice, { filter: { actorUid: 0 } }))).toBe('ADMIN_ONLY');
    expect(call(h, 'ListAuditEvents', admin, { filter: { actorUid: 0 } }).events).toHaveLength(0);
    expect(reasonOf(() => call(h, 'VerifyAuditTrail', alice, {}))).toBe('ADMIN_ONLY');
  });

  it('verifies, and reports a tampered event', () => {
    const h = auditServiceHandlers({ audit, db });
    expect(call(h, 'VerifyAuditTrail', admin, {})).toEqual({ ok: true, checked: 5, problems: [] });
    const other = new BetterSqlite3(path.join(dir, `r${n}.db`));
    other.prepare("UPDATE audit_events SET result = 'ALLOWED' WHERE seq = 3").run();
    other.close();
    const v = call(h, 'VerifyAuditTrail', admin, {});
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({ seq: 3 });
    // With db given, the verify calls were themselves recorded.
    expect(audit.list({ action: 'VerifyAuditTrail' }).events.map((e) => e.result)).toEqual(['ALLOWED', 'ALLOWED']);
    expect(reasonOf(() => call(h, 'VerifyAuditTrail', alice, {}))).toBe('ADMIN_ONLY');
    expect(audit.list({ action: 'VerifyAuditTrail', result: 'DENIED' }).events).toHaveLength(1);
  });

  it('WatchAuditEvents replays, then follows committed events only, filtered, until aborted', async () => {
    const h = auditServiceHandlers({ audit });
    const c = codec('WatchAuditEvents');
    const got: any[] = [];
    const ac = new AbortController();
    const done = h.WatchAuditEvents(admin, c.req({ filter: { result: 'AUDIT_RESULT_DENIED' }, startAfterSeq: 3 }), (r) => got.push(c.res(r)), ac.signal);
    expect(got.map((r) => r.event.seq)).toEqual([4, 5]); // replayed at once
    db.transaction(() => audit.append({ actor: bob, action: 'Acquire', resource: 'regions/b', result: 'DENIED', reason: 'NO_GRANT' }))();
    db.transaction(() => audit.append({ actor: bob, action: 'Acquire', resource: 'regions/b', result: 'ALLOWED' }))();
    try {
      db.transaction(() => {
        audit.append({ actor: bob, action: 'Acquire', resource: 'regions/z', result: 'DENIED', reason: 'ROLLED_BACK' });
        throw new Error('rollback');
      })();
    } catch {
      // rolled back: never streamed
    }
    await new Promise((r) => setImmediate(r));
    expect(got.map((r) => [r.event.seq, r.event.reason])).toEqual([
      [4, 'QUOTA_REGIONS'],
      [5, 'NO_GRANT'],
      [6, 'NO_GRANT'],
    ]);
    expect(audit.listenerCount('event')).toBe(1);
    ac.abort();
    await done;
    expect(audit.listenerCount('event')).toBe(0);

    // A non-admin's watch is narrowed to their own events; without start_after_seq, no replay.
    const mine: any[] = [];
    const ac2 = new AbortController();
    const done2 = h.WatchAuditEvents(alice, c.req({}), (r) => mine.push(r), ac2.signal);
    db.transaction(() => {
      audit.append({ actor: bob, action: 'Release', resource: 'regions/b', result: 'ALLOWED' });
      audit.append({ actor: { pid: 2, uid: 1001, gid: 1001 }, action: 'Release', resource: 'regions/a', result: 'ALLOWED' });
    })();
    audit.flushCommitted();
    expect(mine.map((r) => r.event.actor.uid)).toEqual([1001]);
    ac2.abort();
    await done2;
    expect(() => h.WatchAuditEvents(alice, c.req({ filter: { actorUid: 0 } }), () => {}, new AbortController().signal)).toThrow(/admin/);
  });
});
