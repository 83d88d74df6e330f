import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GrantStore } from './grant-store';
import { createHash } from 'node:crypto';
import { openStateDb, openStateDbCheckingInBackground, WAL_AUTOCHECKPOINT_PAGES } from './state-db';

describe('openStateDb', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-db-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  // The broker's open: the integrity check on a worker thread, nothing written until it passed.
  it('checks an existing database in the background and refuses writes until the check passed', async () => {
    const first = openStateDb(dir);
    first.prepare("INSERT INTO regions (name, size_bytes, owner_uid, owner_gid, backend, hugepages, numa_node, create_time, state, backend_ref) VALUES ('r', 4096, 0, 0, 'memfd', 0, -1, 1, 'ACTIVE', '{}')").run();
    first.close();
    const { db, checked } = openStateDbCheckingInBackground(dir);
    try {
      expect(db.prepare('SELECT count(*) AS n FROM regions').get()).toEqual({ n: 1 }); // reads work at once
      expect(() => db.prepare("UPDATE regions SET state = 'LOST'").run()).toThrow(/readonly/i);
      await checked;
      db.prepare("UPDATE regions SET state = 'LOST'").run();
      expect(db.prepare('SELECT state FROM regions').get()).toEqual({ state: 'LOST' });
    } finally {
      db.close();
    }
  });

  it('a database the background check finds corrupt: checked rejects with STATE_DATABASE_UNUSABLE and the file is untouched', async () => {
    const first = openStateDb(dir);
    const insert = first.prepare("INSERT INTO regions (name, size_bytes, owner_uid, owner_gid, backend, hugepages, numa_node, create_time, state, backend_ref) VALUES (?, 4096, 0, 0, 'memfd', 0, -1, 1, 'ACTIVE', '{}')");
    first.transaction(() => {
      for (let i = 0; i < 2000; i++) insert.run(`region-${i}`);
    })();
    first.close(); // checkpoints: everything in the main file, no WAL left
    const file = path.join(dir, 'shmbroker.db');
    // A leaf page of the regions table, past the schema pages, overwritten with garbage.
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 4096 * Math.floor(fs.statSync(file).size / 4096 / 2));
    fs.closeSync(fd);
    const sha = () => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    const before = sha();
    const { db, checked } = openStateDbCheckingInBackground(dir);
    try {
      expect(() => db.prepare("DELETE FROM regions WHERE name = 'region-1'").run()).toThrow();
      await expect(checked).rejects.toMatchObject({ reason: 'STATE_DATABASE_UNUSABLE', message: expect.stringMatching(/integrity check failed: .*will not reset it silently/) });
    } finally {
      db.close();
    }
    expect(sha()).toBe(before);
  });

  it('migrates a version-1 database, keeping its grants', () => {
    const v1 = new Database(path.join(dir, 'shmbroker.db'));
    v1.exec(`
      CREATE TABLE regions (name TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL CHECK (size_bytes > 0), owner_uid INTEGER NOT NULL,
        owner_gid INTEGER NOT NULL, backend TEXT NOT NULL, hugepages INTEGER NOT NULL, numa_node INTEGER NOT NULL,
        create_time INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'LOST')), backend_ref TEXT NOT NULL) STRICT;
      CREATE TABLE grants (id INTEGER PRIMARY KEY AUTOINCREMENT, region TEXT NOT NULL REFERENCES regions(name) ON DELETE CASCADE,
        grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('uid', 'gid')), grantee_id INTEGER NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('ro', 'rw')), create_time INTEGER NOT NULL, expire_time INTEGER, creator_uid INTEGER NOT NULL) STRICT;
      CREATE TABLE leases (id INTEGER PRIMARY KEY AUTOINCREMENT, region TEXT NOT NULL REFERENCES regions(name) ON DELETE CASCADE,
        grant_id INTEGER, pid INTEGER NOT NULL, uid INTEGER NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('ro', 'rw')),
        kernel_grant_id TEXT, create_time INTEGER NOT NULL) STRICT;
      INSERT INTO regions VALUES ('r', 4096, 0, 0, 'memfd', 0, -1, 1, 'ACTIVE', '{}');
      INSERT INTO grants (region, grantee_kind, grantee_id, mode, create_time, expire_time, creator_uid) VALUES ('r', 'gid', 50, 'rw', 1, NULL, 0);
      PRAGMA user_version = 1;`);
    v1.close();
    const db = openStateDb(dir);
    expect(db.pragma('user_version', { simple: true })).toBe(4);
    const grants = new GrantStore(db);
    expect(grants.forRegion('r')).toEqual([
      { id: 1, region: 'r', granteeKind: 'gid', granteeId: 50, granteeName: null, mode: 'rw', createTime: 1, expireTime: null, creatorUid: 0, allowNotify: false },
    ]);
    const g = grants.insert({ region: 'r', granteeKind: 'namespace', granteeId: 0, granteeName: 'team-a', mode: 'ro', createTime: 2, expireTime: null, creatorUid: 0, allowNotify: true });
    expect(grants.get(g.id)?.allowNotify).toBe(true);
    expect(grants.get(g.id)?.granteeName).toBe('team-a');
    expect(() => db.prepare("INSERT INTO grants (region, grantee_kind, grantee_id, grantee_name, mode, create_time, creator_uid) VALUES ('r', 'uid', 5, 'x', 'ro', 1, 0)").run()).toThrow(/CHECK/);
    db.close();
  });

  it('opens in WAL mode, synchronous=NORMAL, checkpointing every WAL_AUTOCHECKPOINT_PAGES pages', () => {
    const db = openStateDb(dir);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(WAL_AUTOCHECKPOINT_PAGES);
    expect(WAL_AUTOCHECKPOINT_PAGES).toBeGreaterThan(1000); // more than SQLite's default: fewer checkpoint stalls on the event loop
    db.close();
  });

  it('refuses a database newer than it understands, without touching it', () => {
    openStateDb(dir).close();
    const db = new Database(path.join(dir, 'shmbroker.db'));
    db.pragma('user_version = 99');
    db.close();
    const before = fs.readFileSync(path.join(dir, 'shmbroker.db'));
    expect(() => openStateDb(dir)).toThrow(/schema version 99 is newer/);
    expect(fs.readFileSync(path.join(dir, 'shmbroker.db')).equals(before)).toBe(true);
  });
});
