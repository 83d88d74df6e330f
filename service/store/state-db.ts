// The broker's durable state: one SQLite database (better-sqlite3) in
// STATE_DIR. WAL journal with synchronous=NORMAL: an acknowledged change is
// in the WAL when its commit returns, so it survives kill -9; the audit
// trail's group commit syncs the WAL for what must survive power loss
// (audit/group-commit.ts, docs/ARCHITECTURE.md "State and durability"). Schema changes go through numbered migrations recorded in
// user_version, applied in one transaction.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { FailedPreconditionError } from '../errors';
import { quickCheckInBackground } from './integrity-check';

export type Db = Database.Database;

export const DB_FILE = 'shmbroker.db';
/** WAL pages after which a commit checkpoints (see openStateDb). */
export const WAL_AUTOCHECKPOINT_PAGES = 4000;

const MIGRATIONS: string[] = [
  `
  CREATE TABLE regions (
    name        TEXT PRIMARY KEY,
    size_bytes  INTEGER NOT NULL CHECK (size_bytes > 0),
    owner_uid   INTEGER NOT NULL,
    owner_gid   INTEGER NOT NULL,
    backend     TEXT NOT NULL,
    hugepages   INTEGER NOT NULL,
    numa_node   INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('ACTIVE', 'LOST')),
    backend_ref TEXT NOT NULL
  ) STRICT;
  CREATE TABLE grants (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    region       TEXT NOT NULL REFERENCES regions(name) ON DELETE CASCADE,
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('uid', 'gid')),
    grantee_id   INTEGER NOT NULL,
    mode         TEXT NOT NULL CHECK (mode IN ('ro', 'rw')),
    create_time  INTEGER NOT NULL,
    expire_time  INTEGER,
    creator_uid  INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX grants_by_region ON grants(region);
  CREATE INDEX grants_by_expiry ON grants(expire_time) WHERE expire_time IS NOT NULL;
  -- Kernel grants handed to clients (kmod backend): they outlive a broker
  -- crash, so their ids must too, or a later revoke could not reach them.
  CREATE TABLE leases (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    region          TEXT NOT NULL REFERENCES regions(name) ON DELETE CASCADE,
    grant_id        INTEGER,
    pid             INTEGER NOT NULL,
    uid             INTEGER NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('ro', 'rw')),
    kernel_grant_id TEXT,
    create_time     INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX leases_by_region ON leases(region);
  CREATE INDEX leases_by_grant ON leases(grant_id);
  `,
  // Grants to Kubernetes namespaces and service accounts (pod identity).
  // SQLite cannot change a CHECK constraint in place: rebuild the table.
  `
  CREATE TABLE grants_v2 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    region       TEXT NOT NULL REFERENCES regions(name) ON DELETE CASCADE,
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('uid', 'gid', 'namespace', 'serviceaccount')),
    grantee_id   INTEGER NOT NULL,
    grantee_name TEXT CHECK ((grantee_kind IN ('uid', 'gid')) = (grantee_name IS NULL)),
    mode         TEXT NOT NULL CHECK (mode IN ('ro', 'rw')),
    create_time  INTEGER NOT NULL,
    expire_time  INTEGER,
    creator_uid  INTEGER NOT NULL
  ) STRICT;
  INSERT INTO grants_v2 (id, region, grantee_kind, grantee_id, grantee_name, mode, create_time, expire_time, creator_uid)
    SELECT id, region, grantee_kind, grantee_id, NULL, mode, create_time, expire_time, creator_uid FROM grants;
  DROP TABLE grants;
  ALTER TABLE grants_v2 RENAME TO grants;
  CREATE INDEX grants_by_region ON grants(region);
  CREATE INDEX grants_by_expiry ON grants(expire_time) WHERE expire_time IS NOT NULL;
  `,
  // Region events: a read-only grant may be allowed to notify (default no).
  `
  ALTER TABLE grants ADD COLUMN allow_notify INTEGER NOT NULL DEFAULT 0 CHECK (allow_notify IN (0, 1));
  `,
  // A deleted region still held by clients is DELETING (issue 16 item 4): it
  // keeps its row and its quota charge until its last lease ends. A column,
  // not a new state value: SQLite cannot change the state CHECK in place, and
  // rebuilding regions would cascade into grants and leases.
  `
  ALTER TABLE regions ADD COLUMN delete_time INTEGER;
  `,
];

/** Opens the state database, checks its integrity and applies migrations before returning (tools, backups). */
export function openStateDb(stateDir: string): Db {
  return open(stateDir, false).db;
}

/**
 * The broker's open (issue 19, restart time): when the database exists and
 * needs no migration, its integrity check runs on a worker thread
 * (integrity-check.ts) and `checked` settles with it. Until it resolved the
 * connection is query_only: the caller may read what it needs to start, but
 * any write fails, so a corrupt file is never written to. A new database, or
 * one that needs migrating, is checked inline as openStateDb does, and
 * `checked` is already resolved. `checked` rejects with the same
 * STATE_DATABASE_UNUSABLE error an inline check throws.
 */
export function openStateDbCheckingInBackground(stateDir: string): { db: Db; checked: Promise<void> } {
  return open(stateDir, true);
}

function unusable(file: string, err: unknown): FailedPreconditionError {
  return new FailedPreconditionError(
    'STATE_DATABASE_UNUSABLE',
    `state database ${file} is unusable (${(err as Error).message}); the broker will not reset it silently — restore it from a backup or move it away to start empty`,
  );
}

function integrityError(report: string): Error {
  // SQLite's report spans lines; errors are one line (the CLI contract).
  return new Error(`integrity check failed: ${report.replace(/\s*\n\s*/g, ' ')}`);
}

function open(stateDir: string, background: boolean): { db: Db; checked: Promise<void> } {
  const file = path.join(stateDir, DB_FILE);
  const existed = fs.existsSync(file);
  let db: Db;
  let checked: Promise<void> = Promise.resolve();
  try {
    db = new Database(file, { fileMustExist: existed });
    db.pragma('journal_mode = WAL');
    // Once, here: a commit is in the WAL when it returns (it survives a crash
    // of the broker); the audit trail's group commit syncs the WAL for what
    // must survive power loss (audit/group-commit.ts).
    db.pragma('synchronous = NORMAL');
    // SQLite checkpoints the WAL into the database inside the commit that
    // crosses this many pages, on the event loop, with two fsyncs (WAL, then
    // database). At SQLite's default (1,000 pages, 4 MiB) a CreateRegion
    // (~19 pages) paid for one every ~50 creates: strace showed 69 main-thread
    // fsyncs per 2,000 creates on disk. 4,000 pages (16 MiB of WAL at most,
    // well under the 64 MiB state low-water mark) stalls the loop a quarter as
    // often; each checkpoint copies the same hot pages (indexes, audit head)
    // once instead of four times. A/B on a warm broker, one sequential
    // client, disk: ~+25 % creates/s, ~-9 % broker CPU per create (noisy:
    // shared 2-core VM, load 8-15; bench/README.md). In the broker this is
    // the guard only: a worker thread checkpoints after commits and starts
    // the WAL over before it gets here (store/wal-checkpointer.ts), so the
    // inline checkpoint finds nothing, or little, left to copy.
    db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    // Statement journals, sorters and temporary b-trees in memory (they are
    // small here): the broker must not depend on a writable temporary
    // directory. SQLite picks the first of $SQLITE_TMPDIR, $TMPDIR, /var/tmp,
    // /usr/tmp, /tmp that access() calls writable, and a read-only root
    // (ProtectSystem=strict, readOnlyRootFilesystem) or a network /var/tmp
    // made every CreateRegion fail SQLITE_CANTOPEN in the VM bench.
    db.pragma('temp_store = MEMORY');
    if (background && existed && !needsMigration(db)) {
      db.pragma('query_only = ON');
      const conn = db;
      checked = quickCheckInBackground(file).then(
        (report) => {
          if (report !== 'ok') throw unusable(file, integrityError(report));
          conn.pragma('query_only = OFF');
        },
        (err) => {
          throw unusable(file, err);
        },
      );
      // Awaited by the caller; a start that failed earlier still reads it (Broker.start).
      checked.catch(() => undefined);
    } else {
      const report = String(db.pragma('quick_check', { simple: true }));
      if (report !== 'ok') throw integrityError(report);
      migrate(db);
    }
  } catch (err) {
    throw unusable(file, err);
  }
  try {
    fs.chmodSync(file, 0o600);
  } catch {
    // best effort: the directory is already 0700
  }
  return { db, checked };
}

function needsMigration(db: Db): boolean {
  return (db.pragma('user_version', { simple: true }) as number) !== MIGRATIONS.length;
}

function migrate(db: Db): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(`schema version ${version} is newer than this broker understands (${MIGRATIONS.length})`);
  }
  db.transaction(() => {
    for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  })();
}

type Runner = <T>(fn: () => T) => T;
const runners = new WeakMap<Db, { immediate: Runner; nested: Runner }>();

/**
 * One better-sqlite3 transaction wrapper per database, reused for every
 * call (it runs the function it is given): `db.transaction(fn)` builds a
 * new wrapper each time (Object.defineProperties of five variants), which
 * showed in the control-plane profile. `immediate` opens an IMMEDIATE
 * transaction (or, inside one, a savepoint); `nested` a deferred one (or a
 * savepoint): both commit, or roll back, alone.
 */
export function transactionRunners(db: Db): { immediate: Runner; nested: Runner } {
  let r = runners.get(db);
  if (!r) {
    const t = db.transaction(<T>(fn: () => T): T => fn());
    const immediate = t.immediate as Runner;
    r = {
      immediate: <T>(fn: () => T): T => {
        if (db.inTransaction) return immediate(fn); // a savepoint: nothing committed yet
        const value = immediate(fn);
        noteCommit(db);
        return value;
      },
      nested: t as Runner,
    };
    runners.set(db, r);
  }
  return r;
}

const commitListeners = new WeakMap<Db, () => void>();

/**
 * Who hears that a write transaction committed on `db` (the WAL
 * checkpointer, store/wal-checkpointer.ts). One listener per database.
 */
export function onCommit(db: Db, listener: (() => void) | undefined): void {
  if (listener) commitListeners.set(db, listener);
  else commitListeners.delete(db);
}

/** Tells the commit listener, if any, that a write transaction committed. */
export function noteCommit(db: Db): void {
  commitListeners.get(db)?.();
}

/**
 * Runs fn in an IMMEDIATE transaction (the write lock is taken up front, so
 * two writers never both read-then-write stale data).
 */
export function inTransaction<T>(db: Db, fn: () => T): T {
  return transactionRunners(db).immediate(fn);
}
