// The audit trail's tables, its prepared statements, the metadata that says
// which algorithm and key wrote it, and the key file. Moved out of
// audit-trail.ts unchanged (issue 14).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import type { Database } from 'better-sqlite3';
import type { ChainSigner } from './audit-chain';

/** Creates the audit tables if missing. Idempotent. */
export function ensureAuditSchema(db: Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS audit_events (
      seq INTEGER PRIMARY KEY,
      time TEXT NOT NULL,
      actor_pid INTEGER NOT NULL,
      actor_uid INTEGER NOT NULL,
      actor_gid INTEGER NOT NULL,
      actor_pod TEXT,
      action TEXT NOT NULL,
      resource TEXT NOT NULL,
      result TEXT NOT NULL,
      reason TEXT,
      details TEXT,
      prev_hash TEXT NOT NULL,
      hash TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
    CREATE INDEX IF NOT EXISTS audit_events_resource ON audit_events (resource);
    CREATE INDEX IF NOT EXISTS audit_events_actor_uid ON audit_events (actor_uid);
    CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS audit_head (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      seq INTEGER NOT NULL,
      hash TEXT NOT NULL,
      mac TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS audit_checkpoints (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      seq INTEGER NOT NULL,
      hash TEXT NOT NULL,
      pruned INTEGER NOT NULL,
      time TEXT NOT NULL,
      mac TEXT NOT NULL
    );
  `);
}

/**
 * Reads the HMAC key from `file`, creating it (32 random bytes, mode 0600)
 * if it does not exist. Keep it outside the database file's directory
 * permissions' reach if you can (e.g. /etc/shmbroker/audit.key, root only).
 */
export function loadOrCreateAuditKey(file: string): Buffer {
  try {
    const key = fs.readFileSync(file);
    if (key.length < 16) throw new Error(`audit key ${file} is shorter than 16 bytes`);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = randomBytes(32);
  fs.writeFileSync(file, key, { mode: 0o600, flag: 'wx' });
  return key;
}

/** The statements the trail runs on every append, verify and prune. */
export function prepareAuditStatements(db: Database) {
  return {
    head: db.prepare<[], { seq: number; hash: string; mac: string }>('SELECT seq, hash, mac FROM audit_head WHERE id = 1'),
    setHead: db.prepare<[number, string, string]>(
      'INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac',
    ),
    insert: db.prepare(
      `INSERT INTO audit_events (seq, time, actor_pid, actor_uid, actor_gid, actor_pod, action, resource, result, reason, details, prev_hash, hash)
       VALUES (@seq, @time, @actor_pid, @actor_uid, @actor_gid, @actor_pod, @action, @resource, @result, @reason, @details, @prev_hash, @hash)`,
    ),
    hashAt: db.prepare<[number], { hash: string }>('SELECT hash FROM audit_events WHERE seq = ?'),
    checkpoint: db.prepare<[], { seq: number; hash: string; pruned: number; time: string; mac: string }>(
      'SELECT seq, hash, pruned, time, mac FROM audit_checkpoints ORDER BY id DESC LIMIT 1',
    ),
    meta: db.prepare<[string], { value: string }>('SELECT value FROM audit_meta WHERE key = ?'),
    setMeta: db.prepare<[string, string]>('INSERT OR REPLACE INTO audit_meta (key, value) VALUES (?, ?)'),
  };
}

export type AuditStatements = ReturnType<typeof prepareAuditStatements>;

/**
 * Records the algorithm and key of a new trail, or refuses a key that does
 * not match the trail in the database.
 */
export function initAuditMeta(stmt: AuditStatements, signer: ChainSigner): void {
  const algorithm = stmt.meta.get('algorithm')?.value;
  const keyId = stmt.meta.get('key_id')?.value;
  if (algorithm === undefined) {
    stmt.setMeta.run('algorithm', signer.algorithm());
    stmt.setMeta.run('key_id', signer.keyId());
    return;
  }
  if (algorithm === 'hmac-sha256' && !signer.key) {
    throw new Error('the audit trail in this database is keyed (HMAC-SHA256) but no audit key was given');
  }
  if (algorithm === 'hmac-sha256' && keyId !== signer.keyId()) {
    throw new Error(`the audit trail in this database was written with key ${keyId}, not with the given key ${signer.keyId()}`);
  }
  if (algorithm === 'sha256' && signer.key) {
    // Upgrading an unkeyed trail: it stays verifiable only if the existing
    // chain is re-signed, which would launder any tampering done so far.
    // Refuse; the operator exports and starts a fresh trail instead.
    throw new Error('the audit trail in this database is not keyed; export it and start a new one to use an audit key');
  }
}
