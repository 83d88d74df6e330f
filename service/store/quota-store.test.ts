import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResourceExhaustedError } from '../errors';
import { QuotaStore, parseSubjectName, subjectName } from './quota-store';

const KiB = 1024;
const MiB = 1024 * KiB;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-quota-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
let db: BetterSqlite3.Database;
let file: string;

function open(f: string): BetterSqlite3.Database {
  const d = new BetterSqlite3(f);
  d.pragma('journal_mode = WAL');
  d.pragma('synchronous = FULL');
  d.pragma('busy_timeout = 20000');
  return d;
}

beforeEach(() => {
  file = path.join(dir, `q${++n}.db`);
  db = open(file);
});
afterEach(() => db.close());

/** What the lead does on CreateRegion: charge inside the creating transaction. */
function create(q: QuotaStore, region: string, owner: { uid: number; gids: number[] }, bytes: number): void {
  db.transaction(() => {
    db.prepare('CREATE TABLE IF NOT EXISTS regions (name TEXT PRIMARY KEY, size INTEGER)').run();
    db.prepare('INSERT INTO regions VALUES (?, ?)').run(region, bytes);
    q.chargeRegion(region, owner, bytes);
  }).immediate();
}

function reasonOf(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    return (err as ResourceExhaustedError).reason;
  }
  throw new Error('expected ResourceExhaustedError');
}

describe('QuotaStore', () => {
  it('Must-show: 1 MiB / 2 regions for uid 1001', () => {
    const q = new QuotaStore(db, {});
    q.set({ kind: 'uid', id: 1001 }, { bytes: 1 * MiB, regions: 2 });
    const owner = { uid: 1001, gids: [1001] };
    create(q, 'a', owner, 512 * KiB);
    create(q, 'b', owner, 4 * KiB);
    expect(reasonOf(() => create(q, 'c', owner, 768 * KiB))).toBe('QUOTA_BYTES');
    expect(reasonOf(() => create(q, 'd', owner, 4 * KiB))).toBe('QUOTA_REGIONS');
    // The refused creations left nothing behind, neither region nor charge.
    expect(db.prepare('SELECT name FROM regions ORDER BY name').pluck().all()).toEqual(['a', 'b']);
    expect(q.get({ kind: 'uid', id: 1001 })).toEqual({
      subject: { kind: 'uid', id: 1001 },
      limits: { bytes: MiB, regions: 2 },
      usage: { bytes: 516 * KiB, regions: 2 },
      explicit: true,
    });
  });

  it('the message names the subject, the limit and the usage', () => {
    const q = new QuotaStore(db, {});
    q.set({ kind: 'uid', id: 7 }, { bytes: 8192 });
    q.chargeRegion('a', { uid: 7, gids: [] }, 4096);
    expect(() => q.chargeRegion('b', { uid: 7, gids: [] }, 8192)).toThrow(
      'quota exceeded for uid 7: bytes limit 8192, in use 4096, requested 8192',
    );
  });

  it('exhausts bytes exactly at the limit, and counts regions', () => {
    const q = new QuotaStore(db, { uid: { bytes: 10 * KiB, regions: 3 } });
    const o = { uid: 5, gids: [] };
    q.chargeRegion('a', o, 6 * KiB);
    q.chargeRegion('b', o, 4 * KiB); // exactly at the limit is allowed
    expect(reasonOf(() => q.chargeRegion('c', o, 1))).toBe('QUOTA_BYTES');
    q.chargeRegion('c', o, 0);
    expect(reasonOf(() => q.chargeRegion('d', o, 0))).toBe('QUOTA_REGIONS');
    expect(q.get({ kind: 'uid', id: 5 }).usage).toEqual({ bytes: 10 * KiB, regions: 3 });
    // Defaults apply per uid: another uid has its own budget.
    q.chargeRegion('e', { uid: 6, gids: [] }, 10 * KiB);
  });

  it('gid quotas apply through supplementary groups, shared by every member', () => {
    const q = new QuotaStore(db, {});
    q.set({ kind: 'gid', id: 50 }, { regions: 2, bytes: 100 * KiB });
    q.chargeRegion('a', { uid: 1001, gids: [1001, 50] }, 40 * KiB); // 50 supplementary
    q.chargeRegion('b', { uid: 1002, gids: [50, 1002] }, 40 * KiB); // 50 primary
    expect(reasonOf(() => q.chargeRegion('c', { uid: 1003, gids: [1003, 60, 50] }, 4 * KiB))).toBe('QUOTA_REGIONS');
    q.chargeRegion('c', { uid: 1003, gids: [1003, 60] }, 4 * KiB); // not a member: fine
    expect(q.get({ kind: 'gid', id: 50 }).usage).toEqual({ bytes: 80 * KiB, regions: 2 });
    q.refundRegion('a');
    expect(() => q.chargeRegion('d', { uid: 1003, gids: [50] }, 61 * KiB)).toThrow(/gid 50: bytes limit 102400, in use 40960/);
    q.chargeRegion('d', { uid: 1003, gids: [50, 50] }, 60 * KiB); // duplicate gids count once
    expect(q.get({ kind: 'gid', id: 50 }).usage).toEqual({ bytes: 100 * KiB, regions: 2 });
  });

  it('default gid quotas', () => {
    const q = new QuotaStore(db, { gid: { regions: 1 } });
    q.chargeRegion('a', { uid: 1, gids: [100] }, 1);
    expect(reasonOf(() => q.chargeRegion('b', { uid: 2, gids: [100] }, 1))).toBe('QUOTA_REGIONS');
    expect(q.get({ kind: 'gid', id: 100 }).explicit).toBe(false);
  });

  it('refunds on delete, in the deleting transaction (and a rollback keeps the charge)', () => {
    const q = new QuotaStore(db, {});
    q.set({ kind: 'uid', id: 1 }, { regions: 1, bytes: 4096 });
    q.chargeRegion('a', { uid: 1, gids: [2] }, 4096);
    expect(() =>
      db.transaction(() => {
        q.refundRegion('a');
        throw new Error('delete failed');
      })(),
    ).toThrow('delete failed');
    expect(q.get({ kind: 'uid', id: 1 }).usage).toEqual({ bytes: 4096, regions: 1 });
    db.transaction(() => q.refundRegion('a'))();
    expect(q.get({ kind: 'uid', id: 1 }).usage).toEqual({ bytes: 0, regions: 0 });
    expect(q.get({ kind: 'gid', id: 2 }).usage).toEqual({ bytes: 0, regions: 0 });
    q.chargeRegion('a', { uid: 1, gids: [2] }, 4096);
    q.refundRegion('nonexistent');
  });

  it('precheckRegion refuses as chargeRegion would, charging nothing', () => {
    const q = new QuotaStore(db, { uid: { bytes: 8192, regions: 1 } });
    q.precheckRegion({ uid: 1, gids: [] }, 8192);
    expect(reasonOf(() => q.precheckRegion({ uid: 1, gids: [] }, 8193))).toBe('QUOTA_BYTES');
    expect(q.get({ kind: 'uid', id: 1 }).usage).toEqual({ bytes: 0, regions: 0 });
    q.chargeRegion('a', { uid: 1, gids: [] }, 4096);
    expect(reasonOf(() => q.precheckRegion({ uid: 1, gids: [] }, 0))).toBe('QUOTA_REGIONS');
    expect(() => q.precheckRegion({ uid: 1, gids: [] }, -1)).toThrow(/invalid region size/);
  });

  it('refuses to charge the same region twice', () => {
    const q = new QuotaStore(db, {});
    q.chargeRegion('a', { uid: 1, gids: [] }, 1);
    expect(() => q.chargeRegion('a', { uid: 1, gids: [] }, 1)).toThrow(/already charged/);
  });

  it('grants per region: the owner quota, the default, and the broker-wide cap', () => {
    const q = new QuotaStore(db, { uid: { grantsPerRegion: 3 } }, { maxGrantsPerRegion: 5 });
    q.checkGrant('a', 2, { uid: 1 });
    expect(reasonOf(() => q.checkGrant('a', 3, { uid: 1 }))).toBe('QUOTA_GRANTS');
    q.set({ kind: 'uid', id: 2 }, { grantsPerRegion: 10 });
    q.checkGrant('a', 4, { uid: 2 });
    expect(() => q.checkGrant('a', 5, { uid: 2 })).toThrow(/broker configuration allows at most 5/);
    q.set({ kind: 'uid', id: 3 }, {});
    q.checkGrant('a', 4, { uid: 3 });
    expect(() => q.checkGrant('a', 3, { uid: 1 })).toThrow(/quota of uid 1 allows at most 3/);
    new QuotaStore(db, {}).checkGrant('a', 1e6, { uid: 3 }); // no cap at all
  });

  it('set, clear, get and list', () => {
    const q = new QuotaStore(db, { uid: { bytes: 100 } });
    expect(q.get({ kind: 'uid', id: 9 })).toMatchObject({ limits: { bytes: 100 }, explicit: false });
    q.set({ kind: 'uid', id: 9 }, { regions: 4 });
    expect(q.get({ kind: 'uid', id: 9 })).toMatchObject({ limits: { regions: 4 }, explicit: true });
    q.set({ kind: 'gid', id: 3 }, { bytes: 5 });
    q.chargeRegion('r', { uid: 2, gids: [] }, 50);
    expect(q.list().map((i) => subjectName(i.subject))).toEqual(['quotas/uid:2', 'quotas/uid:9', 'quotas/gid:3']);
    expect(q.clear({ kind: 'uid', id: 9 })).toBe(true);
    expect(q.clear({ kind: 'uid', id: 9 })).toBe(false);
    expect(q.get({ kind: 'uid', id: 9 }).limits).toEqual({ bytes: 100 });
    expect(() => q.set({ kind: 'uid', id: 1 }, { bytes: -1 })).toThrow(/whole number/);
    expect(() => q.set({ kind: 'uid', id: -1 }, {})).toThrow(/subject/);
    expect(parseSubjectName('quotas/gid:50')).toEqual({ kind: 'gid', id: 50 });
    expect(() => parseSubjectName('quotas/user:1')).toThrow(/invalid quota name/);
  });

  it('survives reopening the database', () => {
    const q = new QuotaStore(db, {});
    q.set({ kind: 'uid', id: 1 }, { bytes: 10 });
    q.chargeRegion('a', { uid: 1, gids: [] }, 7);
    db.close();
    db = open(file);
    const q2 = new QuotaStore(db, {});
    expect(q2.get({ kind: 'uid', id: 1 })).toMatchObject({ limits: { bytes: 10 }, usage: { bytes: 7, regions: 1 } });
  });
});

// A child process that loads the real quota-store.ts (transpiled on the fly
// with the project's TypeScript), waits for the start signal, then charges
// regions for uid 1001 as fast as it can, each in an IMMEDIATE transaction.
const CHILD = `
'use strict';
const fs = require('node:fs');
const ts = require(${JSON.stringify(require.resolve('typescript'))});
require.extensions['.ts'] = (m, filename) => {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    fileName: filename,
  });
  m._compile(out.outputText, filename);
};
const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
const { QuotaStore } = require(${JSON.stringify(path.join(__dirname, 'quota-store.ts'))});
const [file, me, attempts, size, go] = process.argv.slice(2);
const db = new Database(file);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('busy_timeout = 60000');
const q = new QuotaStore(db, {});
const create = db.transaction((name) => {
  db.prepare('INSERT INTO regions VALUES (?, ?)').run(name, Number(size));
  q.chargeRegion(name, { uid: 1001, gids: [1001, 50] }, Number(size));
});
while (!fs.existsSync(go)) {}
let ok = 0, refused = 0;
for (let i = 0; i < Number(attempts); i++) {
  try { create.immediate('c' + me + '-' + i); ok++; }
  catch (e) { if (e.reason === 'QUOTA_BYTES' || e.reason === 'QUOTA_REGIONS') refused++; else throw e; }
}
process.stdout.write(JSON.stringify({ ok, refused }));
`;

function runChild(script: string, args: string[]): Promise<{ ok: number; refused: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

describe('QuotaStore under concurrency', () => {
  it.each([
    ['bytes', { bytes: 1 * MiB }, 64 * KiB, 16],
    ['regions', { regions: 20 }, 4 * KiB, 20],
    ['gid bytes', { gid: true, bytes: 512 * KiB }, 16 * KiB, 32],
  ] as const)(
    '16 processes racing to charge uid 1001 never overshoot the %s quota',
    async (_label, limit, size, expected) => {
      db.exec('CREATE TABLE regions (name TEXT PRIMARY KEY, size INTEGER)');
      const q = new QuotaStore(db, {});
      const { gid, ...limits } = limit as { gid?: boolean; bytes?: number; regions?: number };
      q.set(gid ? { kind: 'gid', id: 50 } : { kind: 'uid', id: 1001 }, limits);
      const script = path.join(dir, 'child.cjs');
      fs.writeFileSync(script, CHILD);
      const go = path.join(dir, `go-${n}`);
      const children = Array.from({ length: 16 }, (_, i) => runChild(script, [file, String(i), '8', String(size), go]));
      await new Promise((r) => setTimeout(r, 1500)); // let them all load and spin on the signal
      fs.writeFileSync(go, '');
      const results = await Promise.all(children);
      const ok = results.reduce((a, r) => a + r.ok, 0);
      const refused = results.reduce((a, r) => a + r.refused, 0);
      expect(ok + refused).toBe(16 * 8);
      expect(ok).toBe(expected);
      const usage = q.get(gid ? { kind: 'gid', id: 50 } : { kind: 'uid', id: 1001 }).usage;
      expect(usage).toEqual({ bytes: expected * size, regions: expected });
      expect(db.prepare('SELECT COUNT(*) FROM regions').pluck().get()).toBe(expected);
    },
    60_000,
  );
});

// Usage is a sum kept by triggers (issue 19, scale): it must equal the sum of
// the charge rows after any sequence of charges, refunds and rolled-back
// transactions, and a database from before the sums gets them filled.
describe('usage sums', () => {
  const sums = (): Array<{ kind: string; id: number; bytes: number; regions: number }> =>
    db.prepare('SELECT kind, id, SUM(bytes) AS bytes, COUNT(*) AS regions FROM quota_charges GROUP BY kind, id ORDER BY kind, id').all() as never;
  const kept = (): unknown[] => db.prepare('SELECT kind, id, bytes, regions FROM quota_usage WHERE regions > 0 ORDER BY kind, id').all();

  it('equal the charge rows after any charges, refunds and rollbacks', async () => {
    const fc = await import('fast-check');
    const q = new QuotaStore(db, {});
    const op = fc.oneof(
      fc.record({ t: fc.constant('charge' as const), region: fc.integer({ min: 0, max: 30 }), uid: fc.integer({ min: 1, max: 4 }), gids: fc.uniqueArray(fc.integer({ min: 1, max: 4 }), { maxLength: 3 }), bytes: fc.integer({ min: 1, max: 1 << 20 }), rollback: fc.boolean() }),
      fc.record({ t: fc.constant('refund' as const), region: fc.integer({ min: 0, max: 30 }), rollback: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        db.exec('DELETE FROM quota_charges');
        for (const o of ops) {
          try {
            db.transaction(() => {
              if (o.t === 'charge') q.chargeRegion(`r${o.region}`, { uid: o.uid, gids: o.gids }, o.bytes);
              else q.refundRegion(`r${o.region}`);
              if (o.rollback) throw new Error('roll back');
            }).immediate();
          } catch {
            // a refused charge (already charged) or a rollback: nothing of it may remain
          }
          expect(kept()).toEqual(sums());
        }
        for (const s of sums()) expect(q.get({ kind: s.kind as 'uid' | 'gid', id: s.id }).usage).toEqual({ bytes: s.bytes, regions: s.regions });
      }),
      { numRuns: 60 },
    );
  });

  it('a charge row cannot be changed behind the sums', () => {
    const q = new QuotaStore(db, {});
    q.chargeRegion('r', { uid: 1, gids: [] }, 4096);
    expect(() => db.prepare("UPDATE quota_charges SET bytes = 1 WHERE region = 'r'").run()).toThrow(/never changed/);
    expect(q.get({ kind: 'uid', id: 1 }).usage).toEqual({ bytes: 4096, regions: 1 });
  });

  it('are filled from the charges of a database made before them', () => {
    db.exec(`CREATE TABLE quota_charges (region TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('uid', 'gid')), id INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (region, kind, id)) WITHOUT ROWID;
      CREATE INDEX quota_charges_usage ON quota_charges (kind, id, bytes);
      INSERT INTO quota_charges VALUES ('a', 'uid', 7, 100), ('b', 'uid', 7, 50), ('a', 'gid', 8, 100);`);
    const q = new QuotaStore(db, {});
    expect(q.get({ kind: 'uid', id: 7 }).usage).toEqual({ bytes: 150, regions: 2 });
    expect(q.get({ kind: 'gid', id: 8 }).usage).toEqual({ bytes: 100, regions: 1 });
    expect(kept()).toEqual(sums());
    q.refundRegion('a');
    expect(q.get({ kind: 'uid', id: 7 }).usage).toEqual({ bytes: 50, regions: 1 });
    expect(q.list().map((i) => subjectName(i.subject))).toEqual(['quotas/uid:7']);
  });
});
