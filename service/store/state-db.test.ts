import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GrantStore } from './grant-store';
import { openStateDb, WAL_AUTOCHECKPOINT_PAGES } from './state-db';

describe('openStateDb', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-db-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

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
