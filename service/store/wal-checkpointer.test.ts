import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { inTransaction, onCommit, openStateDb, type Db } from './state-db';
import { RESTART_FRAMES, WalCheckpointer } from './wal-checkpointer';

async function until(what: () => boolean): Promise<void> {
  while (!what()) await new Promise((r) => setTimeout(r, 5));
}

describe('WalCheckpointer', () => {
  let dir: string;
  let db: Db;
  let ck: WalCheckpointer;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wal-ckpt-'));
    db = openStateDb(dir);
    db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)');
    ck = new WalCheckpointer(db.name, { intervalMs: 1, onFailure: (err) => expect.fail(err.message) });
    onCommit(db, () => ck.poke());
  });
  afterEach(() => {
    onCommit(db, undefined);
    ck.close();
    if (db.open) db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const put = db0Put();
  function db0Put() {
    let k = 0;
    return (rows: number) => inTransaction(db, () => {
      const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, randomblob(3000))');
      for (let i = 0; i < rows; i++) ins.run(++k);
    });
  }

  it('copies committed pages into the database from its own thread', async () => {
    put(50);
    await until(() => ck.runs > 0);
    // Nothing left for the broker's connection to copy.
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
    expect(r!.log).toBeGreaterThan(0);
    expect(r!.checkpointed).toBe(r!.log);
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 50 });
  });

  it('starts the WAL over under steady writes, before the broker checkpoints inline', async () => {
    db.pragma('wal_autocheckpoint = 0'); // only the worker may reset it here
    // Keep committing (one transaction per turn, as the broker does) until the worker has reset the WAL.
    while (ck.restarts === 0) {
      put(5);
      await new Promise((r) => setImmediate(r));
    }
    put(1); // the next write starts the WAL over
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
    expect(r!.log).toBeLessThan(RESTART_FRAMES);
  });

  it('leaves no WAL behind when it closes before the database', async () => {
    put(20);
    await until(() => ck.runs > 0);
    put(20);
    ck.close();
    expect(ck.running).toBe(false);
    db.close();
    expect(fs.existsSync(`${db.name}-wal`)).toBe(false);
    const again = openStateDb(dir);
    expect(again.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 40 });
    again.close();
  });

  it('reports a worker that cannot open the database', async () => {
    const errors: Error[] = [];
    const bad = new WalCheckpointer(path.join(dir, 'missing.db'), { onFailure: (err) => errors.push(err) });
    await until(() => errors.length > 0);
    expect(errors[0]!.message).toMatch(/SQLITE_CANTOPEN/);
    bad.close();
  });
});
