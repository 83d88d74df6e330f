// The audit trail's tests (chain, anchor, verify, retention, group commit).
// Over ~400 lines on purpose: one independent scenario per test, one trail each.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import BetterSqlite3 from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditTrail, loadOrCreateAuditKey, startAuditRetention, type AuditEvent, type AuditEventInput } from './audit-trail';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-audit-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
let file: string;
let db: BetterSqlite3.Database;

function open(f: string): BetterSqlite3.Database {
  const d = new BetterSqlite3(f);
  d.pragma('journal_mode = WAL');
  d.pragma('synchronous = FULL');
  return d;
}

beforeEach(() => {
  file = path.join(dir, `a${++n}.db`);
  db = open(file);
});
afterEach(() => {
  if (db.open) db.close();
});

const actor = { pid: 42, uid: 1001, gid: 1001 };
function ev(i: number, extra: Partial<AuditEventInput> = {}): AuditEventInput {
  return { actor, action: 'CreateRegion', resource: `regions/r${i}`, result: 'ALLOWED', ...extra };
}

function fill(trail: AuditTrail, count: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let i = 1; i <= count; i++) out.push(db.transaction(() => trail.append(ev(i)))());
  return out;
}

/** A second connection on the same file: what someone editing the database would do. */
function tamper(sql: string, ...params: unknown[]): void {
  const other = new BetterSqlite3(file);
  try {
    other.prepare(sql).run(...params);
  } finally {
    other.close();
  }
}

function tamperMany(fn: (d: BetterSqlite3.Database) => void): void {
  const other = new BetterSqlite3(file);
  try {
    other.transaction(() => fn(other))();
  } finally {
    other.close();
  }
}

describe('AuditTrail chain', () => {
  it('appends a chain that verifies, and survives reopening', () => {
    const trail = new AuditTrail(db);
    const events = fill(trail, 5);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(events[0]!.prevHash).toBe('0'.repeat(64));
    for (let i = 1; i < 5; i++) expect(events[i]!.prevHash).toBe(events[i - 1]!.hash);
    expect(events[0]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(trail.verify()).toEqual({ ok: true, checked: 5, problems: [] });
    db.close();
    db = open(file);
    const again = new AuditTrail(db);
    expect(again.verify().ok).toBe(true);
    expect(again.append(ev(6)).prevHash).toBe(events[4]!.hash);
    expect(again.verify()).toMatchObject({ ok: true, checked: 6 });
  });

  it('an empty trail verifies', () => {
    expect(new AuditTrail(db).verify()).toEqual({ ok: true, checked: 0, problems: [] });
  });

  it('round-trips every field', () => {
    const trail = new AuditTrail(db);
    const input: AuditEventInput = {
      actor: { pid: 7, uid: 0, gid: 0, pod: { namespace: 'ns', name: 'p', serviceAccount: 'sa' } },
      action: 'Acquire',
      resource: 'regions/x',
      result: 'DENIED',
      reason: 'NO_GRANT',
      details: { mode: 'READ_WRITE', nested: { b: 1, a: [1, 2] } },
    };
    const written = trail.append(input);
    expect(trail.list().events).toEqual([written]);
    expect(written).toMatchObject(input);
  });

  describe('detects tampering through a second connection', () => {
    let trail: AuditTrail;
    beforeEach(() => {
      trail = new AuditTrail(db);
      fill(trail, 6);
      expect(trail.verify().ok).toBe(true);
    });

    it('an edited field', () => {
      tamper("UPDATE audit_events SET result = 'ALLOWED', reason = NULL, actor_uid = 0 WHERE seq = 3");
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(v.problems).toEqual([{ seq: 3, problem: expect.stringMatching(/does not match its hash/) }]);
    });

    it('an edited event whose own hash was recomputed (the next link breaks)', () => {
      const rows = db.prepare('SELECT * FROM audit_events WHERE seq = 3').all();
      expect(rows).toHaveLength(1);
      tamper("UPDATE audit_events SET resource = 'regions/other', hash = ? WHERE seq = 3", 'f'.repeat(64));
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(v.problems.map((p) => p.seq)).toEqual([3, 4]);
      expect(v.problems[1]!.problem).toMatch(/does not chain/);
    });

    it('a deleted event in the middle', () => {
      tamper('DELETE FROM audit_events WHERE seq = 3');
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(v.problems[0]).toEqual({ seq: 4, problem: expect.stringMatching(/event 3 missing before event 4/) });
    });

    it('the deleted newest event', () => {
      tamper('DELETE FROM audit_events WHERE seq = 6');
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(v.problems).toEqual([{ seq: 6, problem: expect.stringMatching(/newest event 6 is missing/) }]);
    });

    it('the deleted newest events, head anchor rewritten with a plain hash', () => {
      tamperMany((d) => {
        d.prepare('DELETE FROM audit_events WHERE seq >= 5').run();
        const h = d.prepare('SELECT hash FROM audit_events WHERE seq = 4').pluck().get() as string;
        d.prepare('UPDATE audit_head SET seq = 4, hash = ?, mac = ?').run(h, 'ab'.repeat(32));
      });
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(v.problems[0]!.problem).toMatch(/head anchor .* does not match its signature/);
    });

    it('the whole trail deleted', () => {
      tamper('DELETE FROM audit_events');
      expect(trail.verify().problems).toEqual([{ seq: 6, problem: expect.stringMatching(/newest events 1..6 are missing/) }]);
    });

    it('an inserted event (renumbering the rest)', () => {
      tamperMany((d) => {
        for (let s = 6; s >= 4; s--) d.prepare('UPDATE audit_events SET seq = seq + 1 WHERE seq = ?').run(s);
        d.prepare(
          `INSERT INTO audit_events SELECT 4, time, actor_pid, actor_uid, actor_gid, actor_pod, 'DeleteRegion', resource, result, reason, details, hash, hash FROM audit_events WHERE seq = 3`,
        ).run();
      });
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(v.problems.some((p) => p.seq === 4)).toBe(true);
    });

    it('an event appended at the end behind the broker’s back', () => {
      tamper(
        `INSERT INTO audit_events SELECT 7, time, actor_pid, actor_uid, actor_gid, actor_pod, action, resource, result, reason, details, hash, hash FROM audit_events WHERE seq = 6`,
      );
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(v.problems.map((p) => p.problem).join('\n')).toMatch(/inserted/);
    });

    it('two events reordered (sequence numbers swapped)', () => {
      tamperMany((d) => {
        d.prepare('UPDATE audit_events SET seq = -1 WHERE seq = 2').run();
        d.prepare('UPDATE audit_events SET seq = 2 WHERE seq = 3').run();
        d.prepare('UPDATE audit_events SET seq = 3 WHERE seq = -1').run();
      });
      const v = trail.verify();
      expect(v.ok).toBe(false);
      expect(new Set(v.problems.map((p) => p.seq))).toEqual(new Set([2, 3, 4]));
    });

    it('two events reordered (contents swapped, links kept)', () => {
      tamperMany((d) => {
        const a = d.prepare("SELECT resource FROM audit_events WHERE seq = 2").pluck().get();
        const b = d.prepare("SELECT resource FROM audit_events WHERE seq = 3").pluck().get();
        d.prepare('UPDATE audit_events SET resource = ? WHERE seq = 2').run(b);
        d.prepare('UPDATE audit_events SET resource = ? WHERE seq = 3').run(a);
      });
      expect(trail.verify().problems.map((p) => p.seq)).toEqual([2, 3]);
    });
  });

  it('with a key, an edit re-chained with plain SHA-256 (all one can do without the key) is still detected', () => {
    // The documented limit of the unkeyed mode, and what the key buys.
    const keyFile = path.join(dir, `key-${n}`);
    const key = loadOrCreateAuditKey(keyFile);
    expect(loadOrCreateAuditKey(keyFile)).toEqual(key);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    const trail = new AuditTrail(db, { key });
    fill(trail, 4);
    expect(trail.verify().ok).toBe(true);
    // The attacker edits event 2 and re-chains everything with SHA-256, which
    // is all one can do without the key.
    tamperMany((d) => {
      d.prepare("UPDATE audit_events SET result = 'ALLOWED', action = 'Forged' WHERE seq = 2").run();
      const rows = d.prepare('SELECT * FROM audit_events ORDER BY seq').all() as Array<Record<string, unknown>>;
      let prev = '0'.repeat(64);
      for (const r of rows) {
        const material = `shmbroker-audit-v1\nevent\n${JSON.stringify([r.seq, r.time, r.actor_pid, r.actor_uid, r.actor_gid, r.actor_pod, r.action, r.resource, r.result, r.reason, r.details, prev])}`;
        const h = createHash('sha256').update(material).digest('hex');
        d.prepare('UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?').run(prev, h, r.seq);
        prev = h;
      }
      d.prepare('UPDATE audit_head SET hash = ?, mac = ?').run(prev, createHash('sha256').update(`shmbroker-audit-v1\nhead\n4\n${prev}`).digest('hex'));
      d.prepare("UPDATE audit_meta SET value = 'sha256' WHERE key = 'algorithm'").run();
    });
    const v = trail.verify();
    expect(v.ok).toBe(false);
    expect(v.problems.length).toBeGreaterThanOrEqual(5);
    // Opened without the key, the broker refuses instead of writing an unkeyed chain.
    tamper("UPDATE audit_meta SET value = 'hmac-sha256' WHERE key = 'algorithm'");
    expect(() => new AuditTrail(db)).toThrow(/keyed/);
    expect(() => new AuditTrail(db, { key: Buffer.alloc(32, 1) })).toThrow(/written with key/);
  });
});

describe('AuditTrail tampering, generated', () => {
  type Tamper =
    | { kind: 'edit'; seq: number; column: string; value: string | number | null }
    | { kind: 'delete'; seq: number }
    | { kind: 'swap'; a: number; b: number }
    | { kind: 'duplicate'; seq: number; at: number };
  const COLUMNS = ['time', 'actor_pid', 'actor_uid', 'actor_gid', 'actor_pod', 'action', 'resource', 'result', 'reason', 'details', 'prev_hash', 'hash'];
  const COUNT = 8;
  const seqArb = fc.integer({ min: 1, max: COUNT });
  const tamperArb: fc.Arbitrary<Tamper> = fc.oneof(
    fc.record({
      kind: fc.constant('edit' as const),
      seq: seqArb,
      column: fc.constantFrom(...COLUMNS),
      value: fc.oneof(fc.string({ maxLength: 8 }), fc.integer({ min: 0, max: 5000 }), fc.constant(null)),
    }),
    fc.record({ kind: fc.constant('delete' as const), seq: seqArb }),
    fc.record({ kind: fc.constant('swap' as const), a: seqArb, b: seqArb }).filter((t) => t.a !== t.b),
    fc.record({ kind: fc.constant('duplicate' as const), seq: seqArb, at: fc.integer({ min: 1, max: COUNT + 1 }) }),
  );

  it('any edit, deletion, reordering or insertion that changes the rows is reported', () => {
    let run = 0;
    fc.assert(
      fc.property(fc.array(tamperArb, { minLength: 1, maxLength: 3 }), (tampers) => {
        const f = path.join(dir, `gen-${n}-${++run}.db`);
        const d = open(f);
        try {
          const trail = new AuditTrail(d);
          d.transaction(() => {
            for (let i = 1; i <= COUNT; i++) {
              trail.append({
                actor: { pid: i, uid: 1000 + (i % 3), gid: 1000, ...(i % 4 === 0 ? { pod: { namespace: 'n', name: `p${i}`, serviceAccount: 's' } } : {}) },
                action: i % 2 ? 'Acquire' : 'CreateRegion',
                resource: `regions/r${i % 3}`,
                result: i % 3 === 0 ? 'DENIED' : 'ALLOWED',
                ...(i % 3 === 0 ? { reason: 'QUOTA_BYTES' } : {}),
                ...(i % 2 === 0 ? { details: { i } } : {}),
              });
            }
          })();
          const snapshot = () => JSON.stringify(d.prepare('SELECT * FROM audit_events ORDER BY seq').all());
          const before = snapshot();
          const other = new BetterSqlite3(f);
          try {
            for (const t of tampers) {
              try {
                if (t.kind === 'edit') other.prepare(`UPDATE audit_events SET ${t.column} = ? WHERE seq = ?`).run(t.value, t.seq);
                else if (t.kind === 'delete') other.prepare('DELETE FROM audit_events WHERE seq = ?').run(t.seq);
                else if (t.kind === 'swap') {
                  other.transaction(() => {
                    other.prepare('UPDATE audit_events SET seq = -1 WHERE seq = ?').run(t.a);
                    other.prepare('UPDATE audit_events SET seq = ? WHERE seq = ?').run(t.a, t.b);
                    other.prepare('UPDATE audit_events SET seq = ? WHERE seq = -1').run(t.b);
                  })();
                } else {
                  // Insert a copy of an event at position `at`, shifting the later ones up.
                  other.transaction(() => {
                    const row = other.prepare('SELECT * FROM audit_events WHERE seq = ?').get(t.seq) as Record<string, unknown> | undefined;
                    if (!row) return;
                    const later = other.prepare('SELECT seq FROM audit_events WHERE seq >= ? ORDER BY seq DESC').pluck().all(t.at) as number[];
                    for (const s of later) other.prepare('UPDATE audit_events SET seq = seq + 1 WHERE seq = ?').run(s);
                    const cols = Object.keys(row);
                    other.prepare(`INSERT INTO audit_events (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')})`).run(...cols.map((c) => (c === 'seq' ? t.at : row[c])));
                  })();
                }
              } catch {
                // a NOT NULL constraint refused the edit: the row is unchanged
              }
            }
          } finally {
            other.close();
          }
          const changed = snapshot() !== before;
          const v = trail.verify();
          // Detected exactly when something changed (no false alarms either).
          expect(v.ok).toBe(!changed);
        } finally {
          d.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('AuditTrail anchor file', () => {
  it('catches a wiped or rolled-back database, and a rewritten history', async () => {
    const key = Buffer.alloc(32, 7);
    const anchorFile = path.join(dir, `anchor-${n}`);
    const trail = new AuditTrail(db, { key, anchorFile, anchorIntervalMs: 0 });
    expect(JSON.parse(fs.readFileSync(anchorFile, 'utf8'))).toMatchObject({ seq: 0 });
    fill(trail, 3);
    const copy = `${file}.copy`;
    await db.backup(copy); // an operator's (or attacker's) copy at seq 3
    fill(trail, 3);
    // The anchor follows what is synced to disk (group commit), never what is only written.
    await trail.whenDurable();
    expect(JSON.parse(fs.readFileSync(anchorFile, 'utf8'))).toMatchObject({ seq: 6 });
    expect(trail.verify()).toMatchObject({ ok: true, checked: 6 });

    // Rolled back to the copy: a consistent, correctly keyed trail, but behind the anchor.
    trail.close();
    db.close();
    fs.copyFileSync(copy, file);
    for (const ext of ['-wal', '-shm']) fs.rmSync(file + ext, { force: true });
    db = open(file);
    const back = new AuditTrail(db, { key, anchorFile, anchorIntervalMs: 0 });
    expect(back.verify().problems).toEqual([{ seq: 6, problem: expect.stringMatching(/anchor file records seq 6 but the trail ends at 3: .*rolled back/) }]);
    expect(back.anchorProblem).toMatch(/rolled back/);
    // Writing on does not paper over it: the anchor is frozen as evidence.
    fill(back, 4);
    back.flushCommitted();
    expect(back.verify().problems.map((p) => p.problem)).toEqual([expect.stringMatching(/event 6 is not the one the anchor file records/)]);

    // Wiped: every audit row gone.
    tamperMany((d) => {
      for (const t of ['audit_events', 'audit_head', 'audit_checkpoints']) d.prepare(`DELETE FROM ${t}`).run();
    });
    expect(back.verify().problems.map((p) => p.problem).join('\n')).toMatch(/wiped or rolled back/);

    // A forged anchor is refused.
    fs.writeFileSync(anchorFile, JSON.stringify({ seq: 0, hash: '0'.repeat(64), mac: 'x' }));
    expect(back.verify().problems.map((p) => p.problem).join('\n')).toMatch(/anchor file .* does not match its signature/);

    // The operator's way out: delete the file; the next start re-anchors on the database as it is.
    fs.rmSync(anchorFile);
    const fresh = new AuditTrail(db, { key, anchorFile, anchorIntervalMs: 0 });
    expect(fresh.anchorProblem).toBeUndefined();
    expect(fs.existsSync(anchorFile)).toBe(true);
  });

  it('is written after commits at most once per interval, and the newest state lands', async () => {
    const anchorFile = path.join(dir, `anchor-${n}`);
    const trail = new AuditTrail(db, { anchorFile, anchorIntervalMs: 100 });
    fill(trail, 1);
    trail.flushCommitted();
    const first = JSON.parse(fs.readFileSync(anchorFile, 'utf8')) as { seq: number };
    fill(trail, 5);
    trail.flushCommitted();
    const soon = JSON.parse(fs.readFileSync(anchorFile, 'utf8')) as { seq: number };
    expect(soon.seq).toBeLessThanOrEqual(6);
    expect(soon.seq).toBeGreaterThanOrEqual(first.seq);
    await new Promise((r) => setTimeout(r, 250));
    expect(JSON.parse(fs.readFileSync(anchorFile, 'utf8'))).toMatchObject({ seq: 6 });
    expect(trail.verify().ok).toBe(true);
    fs.rmSync(anchorFile);
    expect(trail.verify().problems[0]!.problem).toMatch(/anchor file .* unreadable/);
    trail.close();
  });
});

describe('AuditTrail events', () => {
  it('emits committed events after the transaction, in order, and never rolled-back ones', async () => {
    const trail = new AuditTrail(db);
    const seen: AuditEvent[] = [];
    trail.on('event', (e: AuditEvent) => seen.push(e));
    db.transaction(() => trail.append(ev(1)))();
    expect(() =>
      db.transaction(() => {
        trail.append(ev(2));
        throw new Error('creation failed');
      })(),
    ).toThrow('creation failed');
    const third = db.transaction(() => trail.append(ev(3)))(); // reuses seq 2, with another hash
    expect(third.seq).toBe(2);
    expect(seen).toEqual([]); // nothing during the synchronous transaction
    await new Promise((r) => setImmediate(r));
    expect(seen.map((e) => e.resource)).toEqual(['regions/r1', 'regions/r3']);
    trail.flushCommitted();
    expect(seen).toHaveLength(2);
    expect(trail.verify()).toMatchObject({ ok: true, checked: 2 });
  });

  it('flushCommitted emits at once; a savepoint rollback inside a committed transaction drops its event', () => {
    const trail = new AuditTrail(db);
    const seen: string[] = [];
    trail.on('event', (e: AuditEvent) => seen.push(e.resource));
    db.transaction(() => {
      trail.append(ev(1));
      try {
        db.transaction(() => {
          trail.append(ev(2));
          throw new Error('inner');
        })();
      } catch {
        // the savepoint rolled back
      }
      trail.append(ev(3));
    })();
    trail.flushCommitted();
    expect(seen).toEqual(['regions/r1', 'regions/r3']);
  });
});

describe('AuditTrail list, export, prune', () => {
  it('filters and paginates', () => {
    let t = Date.parse('2026-01-01T00:00:00.000Z');
    const trail = new AuditTrail(db, { now: () => new Date((t += 1000)) });
    db.transaction(() => {
      for (let i = 0; i < 25; i++) {
        trail.append({
          actor: { pid: 1, uid: i % 2 === 0 ? 1001 : 1002, gid: 1 },
          action: i % 5 === 0 ? 'Acquire' : 'CreateGrant',
          resource: i % 3 === 0 ? 'regions/x' : i % 3 === 1 ? `regions/x/grants/${i}` : 'regions/xy',
          result: i % 4 === 0 ? 'DENIED' : 'ALLOWED',
          ...(i % 4 === 0 ? { reason: 'QUOTA_BYTES' } : {}),
        });
      }
    })();
    const all: AuditEvent[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = trail.list({ limit: 10, pageToken });
      all.push(...page.events);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    expect(pages).toBe(3);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(trail.list({ limit: 25 }).nextPageToken).toBe('');

    const x = trail.list({ resource: 'regions/x', limit: 1000 }).events;
    expect(x.every((e) => e.resource === 'regions/x' || e.resource.startsWith('regions/x/'))).toBe(true);
    expect(x).toHaveLength(17);
    expect(trail.list({ actorUid: 1002, limit: 1000 }).events).toHaveLength(12);
    expect(trail.list({ result: 'DENIED', limit: 1000 }).events.map((e) => e.reason)).toEqual(Array(7).fill('QUOTA_BYTES'));
    expect(trail.list({ action: 'Acquire' }).events).toHaveLength(5);
    expect(trail.list({ since: '2026-01-01T00:00:20Z' }).events.map((e) => e.seq)).toEqual([20, 21, 22, 23, 24, 25]);
    expect(trail.list({ since: '2026-01-01T00:00:20Z', until: '2026-01-01T00:00:22Z' }).events.map((e) => e.seq)).toEqual([20, 21]);
    const newest = trail.list({ newestFirst: true, limit: 3 });
    expect(newest.events.map((e) => e.seq)).toEqual([25, 24, 23]);
    expect(trail.list({ newestFirst: true, limit: 3, pageToken: newest.nextPageToken }).events.map((e) => e.seq)).toEqual([22, 21, 20]);
    expect(() => trail.list({ pageToken: 'garbage' })).toThrow(/page token/);
    expect(() => trail.list({ pageToken: newest.nextPageToken })).toThrow(/sort order/);
    expect(() => trail.list({ limit: 1001 })).toThrow(/page size/);
    expect(() => trail.list({ since: 'yesterday' })).toThrow(/RFC 3339/);
  });

  it('exports JSON lines', async () => {
    const trail = new AuditTrail(db);
    db.transaction(() => {
      for (let i = 0; i < 2500; i++) trail.append(ev(i, { result: i % 2 ? 'DENIED' : 'ALLOWED' }));
    })();
    const out = new PassThrough({ highWaterMark: 1024 });
    const chunks: Buffer[] = [];
    const done = new Promise((r) => out.on('end', r));
    out.on('data', (c: Buffer) => chunks.push(c));
    const count = await trail.exportJsonLines(out);
    out.end();
    await done;
    expect(count).toBe(2500);
    const lines = Buffer.concat(chunks).toString('utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(2500);
    expect(JSON.parse(lines[0]!)).toEqual(trail.list({ limit: 1 }).events[0]);
    expect(lines.map((l) => (JSON.parse(l) as AuditEvent).seq)).toEqual(Array.from({ length: 2500 }, (_, i) => i + 1));
    const denied = new PassThrough();
    denied.resume();
    expect(await trail.exportJsonLines(denied, { result: 'DENIED' })).toBe(1250);
  });

  it('prunes old events and still verifies; a tampered checkpoint is detected', () => {
    let t = Date.parse('2026-01-01T00:00:00.000Z');
    const trail = new AuditTrail(db, { now: () => new Date((t += 60_000)) });
    fill(trail, 10); // minute 1..10
    expect(trail.prune(new Date('2026-01-01T00:05:30Z'))).toBe(5);
    let v = trail.verify();
    expect(v).toEqual({ ok: true, checked: 6, problems: [] }); // 6..10 plus the prune event
    const last = trail.list({ newestFirst: true, limit: 1 }).events[0]!;
    expect(last).toMatchObject({ seq: 11, action: 'PruneAuditEvents', details: { throughSeq: 5, deleted: 5 } });
    expect(trail.prune(new Date('2026-01-01T00:00:00Z'))).toBe(0);
    fill(trail, 2);
    // Prune everything: the chain continues from the checkpoint.
    expect(trail.prune(new Date('2030-01-01T00:00:00Z'))).toBe(8);
    expect(trail.verify()).toEqual({ ok: true, checked: 1, problems: [] });
    fill(trail, 1);
    expect(trail.verify().ok).toBe(true);

    // Deleting the latest checkpoint (to hide that history was cut) is caught...
    tamper('DELETE FROM audit_checkpoints WHERE id = (SELECT MAX(id) FROM audit_checkpoints)');
    v = trail.verify();
    expect(v.ok).toBe(false);
    expect(v.problems[0]!.problem).toMatch(/missing/);
  });

  it('startAuditRetention prunes at start and on its interval', async () => {
    let t = Date.parse('2026-01-01T00:00:00.000Z');
    const trail = new AuditTrail(db, { now: () => new Date(t) });
    for (let i = 0; i < 4; i++) {
      trail.append(ev(i));
      t += 86_400_000; // one event a day
    }
    const pruned: number[] = [];
    const stop = startAuditRetention(trail, 2, { intervalMs: 20, now: () => t, onPruned: (c) => pruned.push(c) });
    expect(pruned).toEqual([2]); // days 0 and 1 are older than 2 days
    t += 86_400_000;
    await new Promise((r) => setTimeout(r, 60));
    stop();
    expect(pruned).toEqual([2, 1]); // then day 2 (day 3 is exactly at the cutoff and stays)
    expect(trail.verify().ok).toBe(true);
    expect(() => startAuditRetention(trail, 0)).toThrow(RangeError);
  });

  it('pruning more than retention allows through a forged checkpoint is caught', () => {
    const trail = new AuditTrail(db);
    fill(trail, 6);
    tamperMany((d) => {
      const h = d.prepare('SELECT hash FROM audit_events WHERE seq = 3').pluck().get();
      d.prepare('DELETE FROM audit_events WHERE seq <= 3').run();
      d.prepare("INSERT INTO audit_checkpoints (seq, hash, pruned, time, mac) VALUES (3, ?, 3, '2026-01-01T00:00:00.000Z', 'x')").run(h);
    });
    expect(trail.verify().problems).toEqual([{ seq: 0, problem: expect.stringMatching(/checkpoint .* does not match its signature/) }]);
  });
});
