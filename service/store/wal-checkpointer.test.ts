import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { inTransaction, onCommit, openStateDb, type Db } from './state-db';
import { WalCheckpointer } from './wal-checkpointer';

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
    const before = fs.statSync(db.name).size;
    put(50); // ~50 pages, far below the broker connection's own wal_autocheckpoint
    await until(() => ck.runs > 0 && fs.statSync(db.name).size > before + 50 * 3000);
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 50 });
  });

  it('starts the WAL over under steady writes, with nobody else checkpointing', async () => {
    db.pragma('wal_autocheckpoint = 0'); // only the worker checkpoints here
    put(1);
    // salt-1 of the WAL header (bytes 16..19) goes up by one each time a write starts the WAL over.
    const salt = (): number => {
      const fd = fs.openSync(`${db.name}-wal`, 'r');
      try {
        const b = Buffer.alloc(4);
        fs.readSync(fd, b, 0, 4, 16);
        return b.readUInt32BE(0);
      } finally {
        fs.closeSync(fd);
      }
    };
    const first = salt();
    // Keep committing, with the gaps a broker's loop has between commits (a RESTART takes the
    // writer's lock in one of them), until the WAL started over. (Without gaps it may not: then the
    // broker connection's own wal_autocheckpoint is the bound, see state-db.ts.)
    // (A PASSIVE run that finishes in a gap lets the next write start it over; under steadier writes
    // the RESTART past RESTART_FRAMES does.)
    while (salt() === first) {
      put(5);
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(ck.runs).toBeGreaterThan(0);
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
