// The audited-operation helper: one result vocabulary, one writer of the
// audit row, atomic with the change it records.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditTrail, type AuditEvent } from './audit-trail';
import { Auditor, auditResultOf } from './audited-operation';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
} from '../errors';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-audited-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
let db: BetterSqlite3.Database;
beforeEach(() => {
  db = new BetterSqlite3(path.join(dir, `a${++n}.db`));
  db.pragma('journal_mode = WAL');
});
afterEach(() => {
  if (db.open) db.close();
});

const actor = { pid: 42, uid: 1001, gid: 1001 };

describe('auditResultOf: the one rule', () => {
  it.each([
    [new PermissionDeniedError('NOT_OWNER', 'x'), 'DENIED', 'NOT_OWNER'],
    [new ResourceExhaustedError('QUOTA_BYTES', 'x'), 'DENIED', 'QUOTA_BYTES'],
    [new InvalidArgumentError('INVALID_MODE', 'x'), 'DENIED', 'INVALID_MODE'],
    [new NotFoundError('REGION_NOT_FOUND', 'x'), 'DENIED', 'REGION_NOT_FOUND'],
    [new AlreadyExistsError('REGION_EXISTS', 'x'), 'DENIED', 'REGION_EXISTS'],
    [new FailedPreconditionError('REGION_LOST', 'x'), 'DENIED', 'REGION_LOST'],
    [new ResourceExhaustedError('STATE_STORAGE_FULL', 'x'), 'ERROR', 'STATE_STORAGE_FULL'],
    [new InternalError('UNKNOWN_PEER', 'x'), 'ERROR', 'UNKNOWN_PEER'],
    [new UnavailableError('BROKER_UNREACHABLE', 'x'), 'ERROR', 'BROKER_UNREACHABLE'],
    [new SyntaxError('x'), 'ERROR', 'INTERNAL'],
    ['a string', 'ERROR', 'INTERNAL'],
  ] as const)('%s -> %s %s', (err, result, reason) => {
    expect(auditResultOf(err)).toEqual({ result, reason });
  });
});

describe('Auditor', () => {
  it('run: success commits change and event; a refusal rolls the change back but keeps the DENIED event', () => {
    const trail = new AuditTrail(db);
    const auditor = new Auditor({ db, audit: trail });
    db.exec('CREATE TABLE things (name TEXT)');
    const seen: AuditEvent[] = [];
    trail.on('event', (e: AuditEvent) => seen.push(e));
    const what = { actor, action: 'CreateThing', resource: 'things/a' };
    expect(auditor.run(what, () => db.prepare("INSERT INTO things VALUES ('a')").run().changes)).toBe(1);
    expect(() =>
      auditor.run({ ...what, resource: 'things/b' }, () => {
        db.prepare("INSERT INTO things VALUES ('b')").run();
        throw new ResourceExhaustedError('QUOTA_BYTES', 'over quota');
      }),
    ).toThrow('over quota');
    expect(() =>
      auditor.run({ ...what, resource: 'things/c' }, () => {
        throw new PermissionDeniedError('NOT_OWNER', 'no');
      }),
    ).toThrow(PermissionDeniedError);
    expect(() => auditor.run({ ...what, resource: 'things/d' }, () => JSON.parse('{'))).toThrow(SyntaxError);
    expect(db.prepare('SELECT name FROM things').pluck().all()).toEqual(['a']);
    expect(seen.map((e) => [e.resource, e.result, e.reason])).toEqual([
      ['things/a', 'ALLOWED', undefined],
      ['things/b', 'DENIED', 'QUOTA_BYTES'],
      ['things/c', 'DENIED', 'NOT_OWNER'],
      ['things/d', 'ERROR', 'INTERNAL'],
    ]);
    // A refusal's row keeps its message; the error names the audited resource (ErrorInfo).
    expect(seen[1]!.details).toEqual({ message: 'over quota' });
  });

  it('run: describe names the created thing; the error carries the resource it was refused on', () => {
    const trail = new AuditTrail(db);
    const auditor = new Auditor({ db, audit: trail });
    const v = auditor.run({ actor, action: 'CreateGrant', resource: 'regions/r' }, () => 7, (id) => ({ resource: `regions/r/grants/${id}`, details: { id } }));
    expect(v).toBe(7);
    let caught: unknown;
    try {
      auditor.run({ actor, action: 'CreateGrant', resource: 'regions/q' }, () => {
        throw new NotFoundError('REGION_NOT_FOUND', 'gone');
      });
    } catch (err) {
      caught = err;
    }
    expect((caught as NotFoundError).resource).toBe('regions/q');
    expect(trail.list().events.map((e) => [e.action, e.resource, e.result, e.reason ?? '', e.details])).toEqual([
      ['CreateGrant', 'regions/r/grants/7', 'ALLOWED', '', { id: 7 }],
      ['CreateGrant', 'regions/q', 'DENIED', 'REGION_NOT_FOUND', { message: 'gone' }],
    ]);
  });

  it('guard records failures only; record writes events with a state change, atomically', () => {
    const trail = new AuditTrail(db);
    const auditor = new Auditor({ db, audit: trail });
    db.exec('CREATE TABLE things (name TEXT)');
    expect(auditor.guard({ actor, action: 'GetThing', resource: 'things/a' }, () => 'ok')).toBe('ok');
    expect(() =>
      auditor.guard({ actor, action: 'GetThing', resource: 'things/b' }, () => {
        throw new NotFoundError('REGION_NOT_FOUND', 'no');
      }),
    ).toThrow('no');
    auditor.record((append) => {
      db.prepare("INSERT INTO things VALUES ('c')").run();
      append({ actor: { ...actor, extra: 1 } as typeof actor, action: 'LeaseEnded', resource: 'things/c', result: 'ALLOWED', reason: 'HOLDER_EXITED' });
    });
    expect(() =>
      auditor.record((append) => {
        db.prepare("INSERT INTO things VALUES ('d')").run();
        append({ actor, action: 'LeaseEnded', resource: 'things/d', result: 'ALLOWED' });
        throw new Error('crash before commit');
      }),
    ).toThrow('crash before commit');
    expect(db.prepare('SELECT name FROM things').pluck().all()).toEqual(['c']);
    const events = trail.list().events;
    expect(events.map((e) => [e.action, e.resource, e.result, e.reason ?? ''])).toEqual([
      ['GetThing', 'things/b', 'DENIED', 'REGION_NOT_FOUND'],
      ['LeaseEnded', 'things/c', 'ALLOWED', 'HOLDER_EXITED'],
    ]);
    // The actor is narrowed to what the trail records.
    expect(events[1]!.actor).toEqual(actor);
    expect(trail.verify().ok).toBe(true);
  });

  it('write-behind (the data plane, lease endings): no SQLite write when it records, the event waits for the group commit', () => {
    const trail = new AuditTrail(db, { groupCommit: { windowMs: 60_000 } });
    const auditor = new Auditor({ db, audit: trail, writeBehind: true });
    const rows = () => db.prepare('SELECT action FROM audit_events ORDER BY seq').pluck().all();
    let changes = 0;
    db.function('count_change', () => ++changes);
    db.exec('CREATE TEMP TRIGGER counted AFTER INSERT ON audit_events BEGIN SELECT count_change(); END');
    auditor.record((append) => append({ actor, action: 'Release', resource: 'regions/a', result: 'ALLOWED', details: { lease: 1 } }));
    expect(changes).toBe(0);
    expect(rows()).toEqual([]);
    // Inside a caller's transaction (a revocation ending its leases), the event commits with the change.
    db.exec('CREATE TABLE things (name TEXT)');
    db.transaction(() => {
      db.prepare("INSERT INTO things VALUES ('g')").run();
      auditor.record((append) => append({ actor, action: 'LeaseEnded', resource: 'regions/b', result: 'ALLOWED', reason: 'GRANT_REVOKED' }));
    })();
    expect(rows()).toEqual(['Release', 'LeaseEnded']);
    expect(() => auditor.run({ actor, action: 'CreateThing', resource: 'things/x' }, () => 1)).toThrow(/write-behind/);
    trail.close();
    expect(trail.verify().ok).toBe(true);
  });
});
