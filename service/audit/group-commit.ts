// Group commit of the audit trail (docs/ARCHITECTURE.md, "State and
// durability"). The state database runs WAL with synchronous=NORMAL: a commit
// is in the WAL (in the page cache) when it returns, so it survives a crash
// of the broker, but it is not on the disk until the WAL is synced. The audit
// trail must survive power loss, so it is synced here: one fdatasync of the
// WAL per batch, off the event loop (libuv's pool), covering every commit
// made before it, whoever made it. Events are written at most `windowMs`
// after they were appended (or as soon as `maxEvents` are waiting); strict
// mode writes and syncs at the end of the current event-loop turn and its
// callers wait for it (auditd's flush=sync against flush=incremental).
import * as fs from 'node:fs';

export type AuditSyncMode = 'batch' | 'strict';

export interface GroupCommitOptions {
  /** 'batch' (default): callers do not wait; 'strict': callers wait for their events to be on disk. */
  sync?: AuditSyncMode;
  /** Longest an appended event waits before it is written and synced, ms (default 10). */
  windowMs?: number;
  /** Write at once when this many events wait (default 1000). */
  maxEvents?: number;
}

export const DEFAULT_GROUP_COMMIT = { sync: 'batch' as AuditSyncMode, windowMs: 10, maxEvents: 1000 };

/**
 * The file whose fdatasync makes the database's commits durable: its WAL, or
 * the database itself in rollback-journal mode; none for an in-memory one.
 */
export function syncTarget(dbFile: string): string | undefined {
  if (!dbFile || dbFile === ':memory:') return undefined;
  return dbFile;
}

/**
 * fdatasync of FILE-wal (else FILE), on libuv's thread pool. The fd is
 * opened once and kept: SQLite keeps the WAL file (same inode) for as long
 * as the broker's connection is open, and opening it per batch showed in
 * profiles.
 */
export class DatabaseSyncer {
  private fd: number | undefined;

  constructor(private readonly dbFile: string) {}

  private open(): number {
    if (this.fd === undefined) {
      try {
        this.fd = fs.openSync(`${this.dbFile}-wal`, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        return fs.openSync(this.dbFile, 'r'); // not in WAL mode (yet): sync the file itself, this once
      }
    }
    return this.fd;
  }

  sync(cb: (err: Error | null) => void): void {
    let fd: number;
    try {
      fd = this.open();
    } catch (err) {
      return cb(err as Error);
    }
    fs.fdatasync(fd, (err) => {
      if (fd !== this.fd) fs.close(fd, () => undefined);
      cb(err);
    });
  }

  /** The same, blocking (at close, when the event loop is going away). */
  syncNow(): void {
    const fd = this.open();
    try {
      fs.fdatasyncSync(fd);
    } finally {
      if (fd !== this.fd) fs.closeSync(fd);
    }
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
