import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommitBatch } from './commit-batch';
import { openStateDb, transactionRunners, type Db } from './state-db';

describe('CommitBatch (group commit of control-plane changes)', () => {
  let dir: string;
  let db: Db;
  let other: Database.Database;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commit-batch-'));
    db = openStateDb(dir);
    db.exec(`CREATE TABLE t (k TEXT PRIMARY KEY);
      CREATE TABLE child (k TEXT REFERENCES t(k) DEFERRABLE INITIALLY DEFERRED)`);
    // A second connection sees only what committed.
    other = new Database(path.join(dir, 'shmbroker.db'), { readonly: true });
  });
  afterEach(() => {
    other.close();
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const committedKeys = (): string[] => other.prepare('SELECT k FROM t ORDER BY k').pluck().all() as string[];
  const insert = (k: string) => () => transactionRunners(db).nested(() => db.prepare('INSERT INTO t VALUES (?)').run(k));

  it('calls of one turn share one transaction, and each resolves only after it committed', async () => {
    const batch = new CommitBatch(db);
    const seen: string[][] = [];
    const calls = ['a', 'b', 'c'].map((k) =>
      batch.run(insert(k)).then(() => {
        seen.push(committedKeys());
      }),
    );
    expect(committedKeys()).toEqual([]); // nothing runs before the end of the turn
    await Promise.all(calls);
    expect(batch.stats).toEqual({ batches: 1, calls: 3 });
    for (const s of seen) expect(s).toEqual(['a', 'b', 'c']);
    await batch.run(insert('d'));
    expect(batch.stats).toEqual({ batches: 2, calls: 4 });
  });

  it('a call that fails rolls back alone; the others of its batch commit', async () => {
    const batch = new CommitBatch(db);
    const failing = () =>
      transactionRunners(db).nested(() => {
        db.prepare('INSERT INTO t VALUES (?)').run('x');
        throw new Error('refused');
      });
    const results = await Promise.allSettled([batch.run(insert('a')), batch.run(failing), batch.run(insert('b'))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason.message).toBe('refused');
    expect(committedKeys()).toEqual(['a', 'b']);
  });

  it('a COMMIT that fails fails every call of the batch, and committed() rejects for handlers that wait on it', async () => {
    const batch = new CommitBatch(db);
    const undone: string[] = [];
    // An async handler: writes in the batch, then waits for the commit before doing what cannot be undone.
    const handler = (k: string) => async () => {
      insert(k)();
      try {
        await batch.committed();
      } catch (err) {
        undone.push(k);
        throw err;
      }
      return k;
    };
    // A deferred foreign key is checked at COMMIT: the whole transaction fails there.
    const orphan = () => db.prepare('INSERT INTO child VALUES (?)').run('nobody');
    const results = await Promise.allSettled([batch.run(handler('a')), batch.run(orphan), batch.run(insert('b'))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    for (const r of results) expect((r as PromiseRejectedResult).reason.code).toBe('SQLITE_CONSTRAINT_FOREIGNKEY');
    expect(undone).toEqual(['a']);
    expect(committedKeys()).toEqual([]);
    expect(db.inTransaction).toBe(false);
    // The next batch works.
    expect(await batch.run(handler('c'))).toBe('c');
    expect(committedKeys()).toEqual(['c']);
  });

  it('outside a batch, committed() resolves at once', async () => {
    await expect(new CommitBatch(db).committed()).resolves.toBeUndefined();
  });
});
