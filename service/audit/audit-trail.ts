// The audit trail: one append-only, hash-chained table of events.
//
// Every event's hash covers its own fields, its sequence number and the hash
// of the event before it, so editing, deleting, inserting or reordering rows
// breaks the chain at that point. Deleting the newest events would leave a
// shorter chain that is still consistent, so the trail also keeps an anchor,
// audit_head (seq and hash of the newest event), updated in the same
// transaction as every append: a trail whose last event is not the anchored
// head has lost (or gained) events at its end. Retention (prune) deletes the
// oldest events and records a checkpoint (seq and hash of the last pruned
// event), so the remaining chain still starts from something verifiable.
//
// How strong that is depends on the key:
// - With a key (AuditTrailOptions.key, e.g. from loadOrCreateAuditKey on a
//   root-only file outside the database), hashes, head and checkpoints are
//   HMAC-SHA256. Someone who can write the database but not read the key
//   cannot forge a consistent trail: any edit, deletion (including of the
//   newest events, since the head cannot be re-signed), insertion or
//   reordering is reported by verify(). What the database alone cannot show
//   is that it was wiped or rolled back to an earlier copy: for that, give
//   an anchorFile outside the database (next to the key), which records the
//   newest committed head and is checked by verify().
// - Without a key, hashes are plain SHA-256: accidental or naive edits are
//   detected, but someone who understands the format can recompute the whole
//   chain. The broker should run with a key; tests and tools may not.
//
// Every event gets its place in the chain (seq, previous hash, hash) in
// memory, in order, at append. Inside a transaction (a control-plane change)
// it is written with that change, so it commits or rolls back with it (a
// rolled-back event gives its place back). Outside one (the data plane, whose
// reply path writes nothing) it waits in memory and is written in the next
// batch: one transaction for the batch, then one fdatasync (group-commit.ts)
// that also makes every commit before it durable. The window is bounded
// (options.windowMs, options.maxEvents); a crash loses at most the events of
// the open window, and always a suffix of the chain, so verify() stays green.
// The anchor file never records more than what is synced. Reads (list,
// verify, export, prune) write the waiting events first. 'event' is emitted
// for events once written and committed, in order.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import type { Database } from 'better-sqlite3';
import { InvalidArgumentError } from '../errors';
import { decodePageToken, encodePageToken } from '../store/paging';
import { DatabaseSyncer, DEFAULT_GROUP_COMMIT, syncTarget, type AuditSyncMode, type GroupCommitOptions } from './group-commit';
import { currentRequestId } from '../request-context';

export interface AuditActor {
  pid: number;
  uid: number;
  gid: number;
  pod?: { namespace: string; name: string; serviceAccount: string };
}

export type AuditResult = 'ALLOWED' | 'DENIED' | 'ERROR';

export interface AuditEventInput {
  actor: AuditActor;
  /** e.g. 'CreateRegion', 'Acquire', 'Release', 'RevokeGrant', 'DataPlaneProtocolError'. */
  action: string;
  /** e.g. 'regions/x', 'regions/x/grants/3', 'quotas/uid:1001'. */
  resource: string;
  result: AuditResult;
  reason?: string;
  details?: Record<string, unknown>;
}

export interface AuditEvent extends AuditEventInput {
  seq: number;
  /** RFC 3339, UTC, milliseconds. */
  time: string;
  prevHash: string;
  hash: string;
}

export interface AuditFilter {
  /** Resource prefix by path segments: 'regions/x' matches 'regions/x' and 'regions/x/grants/3', not 'regions/xy'. */
  resource?: string;
  /** Events at or after this RFC 3339 time. */
  since?: string;
  /** Events before this RFC 3339 time. */
  until?: string;
  actorUid?: number;
  result?: string;
  action?: string;
  /** Only events with seq greater than this. */
  afterSeq?: number;
  /** Page size, 1..1000; default 100. */
  limit?: number;
  pageToken?: string;
  /** Newest first instead of oldest first. */
  newestFirst?: boolean;
}

export interface AuditVerifyResult {
  ok: boolean;
  /** Events examined. */
  checked: number;
  /** seq 0 for problems of the trail as a whole (head, checkpoint, key). */
  problems: Array<{ seq: number; problem: string }>;
}

export interface AuditTrailOptions {
  /** HMAC key (>= 16 bytes). Without it the chain is plain SHA-256; see the header. */
  key?: Buffer;
  /** Clock, for tests. */
  now?: () => Date;
  /**
   * A file outside the database recording the newest committed head (seq,
   * hash, signed). Written at start and after commits, at most every
   * anchorIntervalMs (default 1000). verify() then also catches a database
   * that was wiped or rolled back to an older copy behind the anchor. Put it
   * where the database's editors cannot write (with the key, for example).
   */
  anchorFile?: string;
  anchorIntervalMs?: number;
  /** Group commit: the window, the batch size and batch/strict (group-commit.ts). */
  groupCommit?: GroupCommitOptions;
}

const GENESIS = '0'.repeat(64);

interface ChainPoint {
  seq: number;
  hash: string;
}


const DOMAIN = 'shmbroker-audit-v1';

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

interface Row {
  seq: number;
  time: string;
  actor_pid: number;
  actor_uid: number;
  actor_gid: number;
  actor_pod: string | null;
  action: string;
  resource: string;
  result: string;
  reason: string | null;
  details: string | null;
  prev_hash: string;
  hash: string;
}

export class AuditTrail extends EventEmitter {
  private readonly key: Buffer | undefined;
  private readonly now: () => Date;
  private readonly anchorFile: string | undefined;
  private readonly anchorIntervalMs: number;
  private anchorWrittenAt = 0;
  private anchorTimer: NodeJS.Timeout | undefined;
  private anchoredSeq = -1;
  /**
   * Set when the anchor file contradicted the database at start (wiped or
   * rolled back, history rewritten, file forged or unreadable). The file is
   * then kept as evidence and not updated; the broker should log this loudly.
   */
  anchorProblem: string | undefined;
  /** The newest event appended (written or not): where the next one chains. */
  private head: ChainPoint;
  /** Newest event written and committed, and newest synced to disk. */
  private written: ChainPoint;
  private durable: ChainPoint;
  /** Chained, not yet written (appended outside a transaction). */
  private queue: Row[] = [];
  /** Written inside a transaction still open (or not yet seen to have committed). */
  private tentative: Array<{ row: Row; before: ChainPoint; requeued: Row[] }> = [];
  private waiters: Array<{ seq: number; resolve: () => void; reject: (err: Error) => void }> = [];
  private cycleTimer: { cancel(): void; immediate?: boolean } | undefined;
  private syncing = false;
  private settleScheduled = false;
  private closed = false;
  private readonly syncer: DatabaseSyncer | undefined;
  readonly sync: AuditSyncMode;
  readonly windowMs: number;
  readonly maxEvents: number;
  private readonly stmt;

  constructor(
    private readonly db: Database,
    options: AuditTrailOptions = {},
  ) {
    super();
    this.setMaxListeners(0); // one listener per WatchAuditEvents stream
    if (options.key && options.key.length < 16) throw new Error('audit key must be at least 16 bytes');
    this.key = options.key;
    this.now = options.now ?? (() => new Date());
    ensureAuditSchema(db);
    this.stmt = {
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
    this.initMeta();
    const gc = { ...DEFAULT_GROUP_COMMIT, ...options.groupCommit };
    this.sync = gc.sync;
    this.windowMs = gc.windowMs;
    this.maxEvents = gc.maxEvents;
    const target = syncTarget(db.name);
    this.syncer = target ? new DatabaseSyncer(target) : undefined;
    this.writeBatch = db.transaction((batch: Row[], last: Row) => {
      for (const r of batch) this.stmt.insert.run(r);
      this.stmt.setHead.run(last.seq, last.hash, this.mac(`head\n${last.seq}\n${last.hash}`));
    });
    const h = this.stmt.head.get() ?? this.stmt.checkpoint.get();
    this.head = this.written = this.durable = h ? { seq: h.seq, hash: h.hash } : { seq: 0, hash: GENESIS };
    this.anchorFile = options.anchorFile;
    this.anchorIntervalMs = options.anchorIntervalMs ?? 1000;
    if (this.anchorFile) this.initAnchor(this.anchorFile);
  }

  /**
   * Records an event: chained at once; inside a transaction, written with it
   * (and rolled back with it); outside one, written in the next batch.
   */
  append(input: AuditEventInput): AuditEvent {
    validateInput(input);
    this.settle();
    const before = this.head;
    const row = this.chain(withRequestId(input));
    if (this.db.inTransaction) {
      // Waiting events go first, so the table always holds a prefix of the chain.
      const requeued = this.queue;
      this.queue = [];
      for (const r of requeued) this.stmt.insert.run(r);
      this.stmt.insert.run(row);
      this.stmt.setHead.run(row.seq, row.hash, this.mac(`head\n${row.seq}\n${row.hash}`));
      this.tentative.push({ row, before, requeued });
    } else {
      this.queue.push(row);
    }
    this.schedule();
    return rowToEvent(row);
  }

  /** Resolves once every event appended so far is written and synced (strict mode's wait). */
  whenDurable(seq = this.head.seq): Promise<void> {
    if (seq <= this.durable.seq) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('the audit trail is closed'));
    return new Promise((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.schedule(true);
    });
  }

  private chain(input: AuditEventInput): Row {
    const seq = this.head.seq + 1;
    const row: Omit<Row, 'hash'> & { hash?: string } = {
      seq,
      time: this.now().toISOString(),
      actor_pid: input.actor.pid,
      actor_uid: input.actor.uid,
      actor_gid: input.actor.gid,
      actor_pod: input.actor.pod ? canonicalJson(input.actor.pod) : null,
      action: input.action,
      resource: input.resource,
      result: input.result,
      reason: input.reason ?? null,
      details: input.details !== undefined ? canonicalJson(input.details) : null,
      prev_hash: this.head.hash,
    };
    row.hash = this.hashRow(row);
    this.head = { seq, hash: row.hash };
    return row as Row;
  }

  /**
   * Decides the events written inside transactions: the newest one still in
   * the table (committed, or in this very transaction) keeps everything
   * before it; what a rollback took gives its place in the chain back (and
   * what it had taken from the queue goes back into the queue).
   */
  private settle(): void {
    while (this.tentative.length > 0) {
      const last = this.tentative[this.tentative.length - 1]!;
      if (this.stmt.hashAt.get(last.row.seq)?.hash === last.row.hash) break;
      this.tentative.pop();
      this.head = last.before;
      this.queue = [...last.requeued, ...this.queue];
    }
    if (this.tentative.length === 0 || this.db.inTransaction) return;
    const done = this.tentative;
    this.tentative = [];
    this.written = { seq: done[done.length - 1]!.row.seq, hash: done[done.length - 1]!.row.hash };
    for (const t of done) {
      for (const r of t.requeued) this.emit('event', rowToEvent(r));
      this.emit('event', rowToEvent(t.row));
    }
  }

  /**
   * Writes the waiting events now, in one transaction (no sync), and emits
   * them. Returns false if a transaction is open (they stay queued).
   */
  private writeQueued(): boolean {
    if (!this.db.open) return false;
    this.settle();
    if (this.db.inTransaction) return false;
    if (this.queue.length === 0) return true;
    const batch = this.queue;
    this.queue = [];
    const last = batch[batch.length - 1]!;
    try {
      this.writeBatch(batch, last);
    } catch (err) {
      this.queue = [...batch, ...this.queue]; // kept in order; the next cycle tries again
      throw err;
    }
    this.written = { seq: last.seq, hash: last.hash };
    for (const r of batch) this.emit('event', rowToEvent(r));
    return true;
  }

  private readonly writeBatch: (batch: Row[], last: Row) => void;

  /**
   * Writes what waits and emits what committed, at once (no sync). Runs by
   * itself within the window; call it to read your own writes sooner.
   */
  flushCommitted(): void {
    if (!this.db.open) {
      this.queue = [];
      this.tentative = [];
      return;
    }
    this.writeQueued();
  }

  private schedule(now = false): void {
    if (this.closed) return;
    // Events written inside a transaction are published (emitted) at the end
    // of this turn; their sync waits for the window like the rest.
    if (this.tentative.length > 0 && !this.settleScheduled) {
      this.settleScheduled = true;
      setImmediate(() => {
        this.settleScheduled = false;
        if (this.db.open && !this.db.inTransaction) this.settle();
      });
    }
    if (this.syncing) return; // after a sync, the cycle looks again
    const urgent = now || this.sync === 'strict' || this.waiters.length > 0 || this.queue.length >= this.maxEvents;
    if (this.cycleTimer) {
      if (!urgent || this.cycleTimer.immediate) return;
      this.cycleTimer.cancel();
    }
    if (urgent) {
      const t = setImmediate(() => this.cycle());
      this.cycleTimer = { cancel: () => clearImmediate(t), immediate: true };
    } else {
      const t = setTimeout(() => this.cycle(), this.windowMs);
      t.unref();
      this.cycleTimer = { cancel: () => clearTimeout(t) };
    }
  }

  /** One group commit: write the waiting events, sync once, wake the waiters, move the anchor. */
  private cycle(): void {
    this.cycleTimer = undefined;
    if (this.closed || !this.db.open) return;
    try {
      if (!this.writeQueued()) {
        // A transaction is open across an await: look again shortly.
        const t = setTimeout(() => this.cycle(), 1);
        t.unref();
        this.cycleTimer = { cancel: () => clearTimeout(t) };
        return;
      }
    } catch (err) {
      this.emit('commitError', err);
      const t = setTimeout(() => this.cycle(), 100);
      t.unref();
      this.cycleTimer = { cancel: () => clearTimeout(t) };
      return;
    }
    const target = this.written;
    if (target.seq <= this.durable.seq) return this.afterSync();
    if (!this.syncer) {
      this.durable = target;
      return this.afterSync();
    }
    this.syncing = true;
    this.syncer.sync((err) => {
      this.syncing = false;
      if (err) {
        this.emit('commitError', err);
      } else if (target.seq > this.durable.seq) {
        this.durable = target;
      }
      this.afterSync();
    });
  }

  private afterSync(): void {
    if (this.waiters.length > 0) {
      const still: typeof this.waiters = [];
      for (const w of this.waiters) (w.seq <= this.durable.seq ? w.resolve : () => still.push(w))();
      this.waiters = still;
    }
    this.maybeWriteAnchor();
    if (this.queue.length > 0 || this.tentative.length > 0 || this.written.seq > this.durable.seq || this.waiters.length > 0) this.schedule();
  }

  /** Events appended but not yet on disk: the open group-commit window (a metric). */
  get windowDepth(): number {
    return this.head.seq - this.durable.seq;
  }

  /** Writes the anchor file now (if configured and the head moved). Also runs on close(). */
  writeAnchor(): void {
    if (!this.anchorFile || this.anchorProblem !== undefined || !this.db.open || this.db.inTransaction) return;
    if (this.anchorTimer) {
      clearTimeout(this.anchorTimer);
      this.anchorTimer = undefined;
    }
    // Never ahead of what is on disk: the synced head, not the table's.
    const { seq, hash } = this.durable;
    if (seq === this.anchoredSeq) return;
    const text = `${JSON.stringify({ seq, hash, mac: this.mac(`anchor\n${seq}\n${hash}`) })}\n`;
    const tmp = `${this.anchorFile}.tmp`;
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, this.anchorFile);
    this.anchoredSeq = seq;
    this.anchorWrittenAt = Date.now();
  }

  /** Flushes pending events and the anchor, and stops the anchor timer. Call before closing the database. */
  close(): void {
    this.flushCommitted();
    this.cycleTimer?.cancel();
    this.cycleTimer = undefined;
    if (this.db.open && this.written.seq > this.durable.seq) {
      this.syncer?.syncNow();
      this.durable = this.written;
    }
    for (const w of this.waiters) (w.seq <= this.durable.seq ? w.resolve() : w.reject(new Error('the audit trail closed before the event was synced')));
    this.waiters = [];
    this.closed = true;
    this.syncer?.close();
    this.writeAnchor();
    if (this.anchorTimer) clearTimeout(this.anchorTimer);
    this.anchorTimer = undefined;
  }

  private maybeWriteAnchor(): void {
    if (!this.anchorFile || this.anchorTimer) return;
    const wait = this.anchorWrittenAt + this.anchorIntervalMs - Date.now();
    if (wait <= 0) {
      this.writeAnchorSafely();
      return;
    }
    this.anchorTimer = setTimeout(() => {
      this.anchorTimer = undefined;
      this.writeAnchorSafely();
    }, wait);
    this.anchorTimer.unref();
  }

  private writeAnchorSafely(): void {
    try {
      this.writeAnchor();
    } catch (err) {
      this.emit('anchorError', err);
    }
  }

  private initAnchor(file: string): void {
    // A missing file is created from the database as it is: the anchor
    // guards against someone who can edit the database but not this file.
    // An existing one that the database contradicts (behind it, or a
    // different event at its seq, or unreadable, or not signed by our key)
    // is left as it is, as evidence, and no longer advanced: verify() keeps
    // failing until an operator has looked and deleted the file.
    if (fs.existsSync(file)) {
      const problems: Array<{ seq: number; problem: string }> = [];
      this.verifyAnchor(problems, this.stmt.head.get());
      if (problems.length > 0) {
        this.anchorProblem = problems[0]!.problem;
        return;
      }
    }
    this.writeAnchor();
  }

  private verifyAnchor(problems: Array<{ seq: number; problem: string }>, head: { seq: number; hash: string } | undefined): void {
    if (!this.anchorFile) return;
    let anchor: { seq: number; hash: string; mac: string };
    try {
      anchor = JSON.parse(fs.readFileSync(this.anchorFile, 'utf8')) as typeof anchor;
    } catch (err) {
      problems.push({ seq: 0, problem: `the anchor file ${this.anchorFile} is unreadable: ${(err as Error).message}` });
      return;
    }
    if (anchor.mac !== this.mac(`anchor\n${anchor.seq}\n${anchor.hash}`)) {
      problems.push({ seq: 0, problem: `the anchor file ${this.anchorFile} does not match its signature` });
      return;
    }
    const headSeq = head?.seq ?? 0;
    if (anchor.seq > headSeq) {
      problems.push({
        seq: anchor.seq,
        problem: `the anchor file records seq ${anchor.seq} but the trail ends at ${headSeq}: the database was wiped or rolled back`,
      });
      return;
    }
    const at = anchor.seq === 0 ? undefined : this.stmt.hashAt.get(anchor.seq);
    if (at && at.hash !== anchor.hash) {
      problems.push({ seq: anchor.seq, problem: `event ${anchor.seq} is not the one the anchor file records: history was rewritten` });
    }
  }

  list(filter: AuditFilter = {}): { events: AuditEvent[]; nextPageToken: string } {
    this.writeQueued();
    const limit = filter.limit === undefined || filter.limit === 0 ? 100 : filter.limit;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new InvalidArgumentError('INVALID_PAGE_SIZE', `page size must be 1..1000, got ${filter.limit}`);
    }
    const desc = filter.newestFirst === true;
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.resource) {
      const prefix = filter.resource.replace(/\/+$/, '');
      // "prefix" itself or anything under "prefix/": a range ('0' follows '/'), so the index serves it.
      where.push('(resource = ? OR (resource >= ? AND resource < ?))');
      params.push(prefix, `${prefix}/`, `${prefix}0`);
    }
    if (filter.since) {
      where.push('time >= ?');
      params.push(normalizeTime(filter.since, 'since'));
    }
    if (filter.until) {
      where.push('time < ?');
      params.push(normalizeTime(filter.until, 'until'));
    }
    if (filter.actorUid !== undefined) {
      where.push('actor_uid = ?');
      params.push(filter.actorUid);
    }
    if (filter.result) {
      where.push('result = ?');
      params.push(filter.result);
    }
    if (filter.action) {
      where.push('action = ?');
      params.push(filter.action);
    }
    if (filter.afterSeq !== undefined) {
      where.push('seq > ?');
      params.push(filter.afterSeq);
    }
    const afterToken = decodePageToken<number>(auditList(desc), filter.pageToken, 'number');
    if (afterToken !== undefined) {
      where.push(desc ? 'seq < ?' : 'seq > ?');
      params.push(afterToken);
    }
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY seq ${desc ? 'DESC' : 'ASC'} LIMIT ?`;
    const rows = this.db.prepare<unknown[], Row>(sql).all(...params, limit + 1);
    const more = rows.length > limit;
    const events = rows.slice(0, limit).map(rowToEvent);
    const last = events[events.length - 1];
    return { events, nextPageToken: more && last ? encodePageToken(auditList(desc), last.seq) : '' };
  }

  /** Walks the whole chain; see the header for what it can and cannot detect. */
  verify(): AuditVerifyResult {
    this.writeQueued();
    const problems: Array<{ seq: number; problem: string }> = [];
    const read = this.db.transaction(() => {
      const keyId = this.stmt.meta.get('key_id')?.value ?? '';
      const algorithm = this.stmt.meta.get('algorithm')?.value ?? '';
      if (algorithm !== this.algorithm() || keyId !== this.keyId()) {
        problems.push({
          seq: 0,
          problem: `trail metadata says ${algorithm || 'nothing'} with key ${keyId || 'none'}, but the broker uses ${this.algorithm()} with key ${this.keyId() || 'none'}`,
        });
      }
      const cp = this.stmt.checkpoint.get();
      let expectedSeq = 1;
      let prev = GENESIS;
      if (cp) {
        if (cp.mac !== this.mac(checkpointMaterial(cp))) {
          problems.push({ seq: 0, problem: `the retention checkpoint (through seq ${cp.seq}) does not match its signature` });
        }
        expectedSeq = cp.seq + 1;
        prev = cp.hash;
      }
      let checked = 0;
      let last: { seq: number; hash: string } | undefined;
      for (const row of this.db.prepare<[], Row>('SELECT * FROM audit_events ORDER BY seq').iterate()) {
        checked++;
        if (row.seq < expectedSeq) {
          problems.push({ seq: row.seq, problem: `event ${row.seq} is at or before the retention checkpoint (seq ${expectedSeq - 1}): inserted` });
        } else if (row.seq > expectedSeq) {
          problems.push({
            seq: row.seq,
            problem: `event${row.seq - expectedSeq > 1 ? 's' : ''} ${rangeText(expectedSeq, row.seq - 1)} missing before event ${row.seq}: deleted`,
          });
        }
        if (row.prev_hash !== prev) {
          problems.push({
            seq: row.seq,
            problem: `event ${row.seq} does not chain to the event before it (an event was deleted, inserted or reordered)`,
          });
        }
        if (this.hashRow(row) !== row.hash) {
          problems.push({ seq: row.seq, problem: `event ${row.seq} does not match its hash (its content or position was altered)` });
        }
        prev = row.hash;
        expectedSeq = row.seq + 1;
        last = row;
      }
      const head = this.stmt.head.get();
      const tail = last ?? (cp ? { seq: cp.seq, hash: cp.hash } : undefined);
      if (!head) {
        if (tail) problems.push({ seq: 0, problem: 'the head anchor is missing' });
      } else {
        if (head.mac !== this.mac(`head\n${head.seq}\n${head.hash}`)) {
          problems.push({ seq: 0, problem: `the head anchor (seq ${head.seq}) does not match its signature` });
        }
        const tailSeq = tail?.seq ?? 0;
        if (head.seq > tailSeq) {
          problems.push({
            seq: head.seq,
            problem: `the newest event${head.seq - tailSeq > 1 ? 's' : ''} ${rangeText(tailSeq + 1, head.seq)} ${head.seq - tailSeq > 1 ? 'are' : 'is'} missing: deleted`,
          });
        } else if (head.seq < tailSeq) {
          problems.push({ seq: tailSeq, problem: `events after the head anchor (seq ${head.seq}) were inserted` });
        } else if (tail && head.hash !== tail.hash) {
          problems.push({ seq: head.seq, problem: `the newest event ${head.seq} is not the one the head anchor records` });
        }
      }
      this.verifyAnchor(problems, head);
      return checked;
    });
    const checked = read.deferred();
    return { ok: problems.length === 0, checked, problems };
  }

  /** Writes the matching events as JSON lines (all of them without a filter), oldest first. Resolves to the count. */
  async exportJsonLines(out: NodeJS.WritableStream, filter: Omit<AuditFilter, 'limit' | 'pageToken' | 'newestFirst'> = {}): Promise<number> {
    let count = 0;
    let pageToken = '';
    for (;;) {
      const page = this.list({ ...filter, limit: 1000, pageToken });
      for (const ev of page.events) {
        count++;
        if (!out.write(`${JSON.stringify(ev)}\n`)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      }
      if (!page.nextPageToken) break;
      pageToken = page.nextPageToken;
    }
    return count;
  }

  /**
   * Retention: deletes the oldest events, up to the first one not older than
   * `olderThan` (it never leaves a hole in the chain), records a signed
   * checkpoint of the last one deleted, and appends a 'PruneAuditEvents'
   * event. Returns how many events it deleted. Runs in its own transaction
   * (a savepoint if called inside one).
   */
  prune(olderThan: Date, actor?: AuditActor): number {
    this.writeQueued();
    return this.db.transaction(() => {
      const cutoff = olderThan.toISOString();
      const firstKept = this.db.prepare<[string], { seq: number }>('SELECT MIN(seq) AS seq FROM audit_events WHERE time >= ?').get(cutoff)?.seq;
      const through =
        firstKept !== null && firstKept !== undefined
          ? firstKept - 1
          : (this.db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM audit_events').get()?.seq ?? null);
      if (through === null) return 0;
      const lastPruned = this.stmt.hashAt.get(through);
      if (!lastPruned) return 0; // nothing older than the cutoff remains
      const deleted = this.db.prepare<[number]>('DELETE FROM audit_events WHERE seq <= ?').run(through).changes;
      const previous = this.stmt.checkpoint.get();
      const cp = { seq: through, hash: lastPruned.hash, pruned: (previous?.pruned ?? 0) + deleted, time: this.now().toISOString() };
      this.db
        .prepare('INSERT INTO audit_checkpoints (seq, hash, pruned, time, mac) VALUES (?, ?, ?, ?, ?)')
        .run(cp.seq, cp.hash, cp.pruned, cp.time, this.mac(checkpointMaterial(cp)));
      this.append({
        actor: actor ?? selfActor(),
        action: 'PruneAuditEvents',
        resource: 'audit',
        result: 'ALLOWED',
        details: { throughSeq: through, deleted, olderThan: cutoff },
      });
      return deleted;
    })();
  }

  private initMeta(): void {
    const algorithm = this.stmt.meta.get('algorithm')?.value;
    const keyId = this.stmt.meta.get('key_id')?.value;
    if (algorithm === undefined) {
      this.stmt.setMeta.run('algorithm', this.algorithm());
      this.stmt.setMeta.run('key_id', this.keyId());
      return;
    }
    if (algorithm === 'hmac-sha256' && !this.key) {
      throw new Error('the audit trail in this database is keyed (HMAC-SHA256) but no audit key was given');
    }
    if (algorithm === 'hmac-sha256' && keyId !== this.keyId()) {
      throw new Error(`the audit trail in this database was written with key ${keyId}, not with the given key ${this.keyId()}`);
    }
    if (algorithm === 'sha256' && this.key) {
      // Upgrading an unkeyed trail: it stays verifiable only if the existing
      // chain is re-signed, which would launder any tampering done so far.
      // Refuse; the operator exports and starts a fresh trail instead.
      throw new Error('the audit trail in this database is not keyed; export it and start a new one to use an audit key');
    }
  }

  private algorithm(): string {
    return this.key ? 'hmac-sha256' : 'sha256';
  }

  private keyId(): string {
    return this.key ? createHash('sha256').update(this.key).digest('hex').slice(0, 16) : '';
  }

  private mac(material: string): string {
    const data = `${DOMAIN}\n${material}`;
    return this.key ? createHmac('sha256', this.key).update(data).digest('hex') : createHash('sha256').update(data).digest('hex');
  }

  private hashRow(r: Omit<Row, 'hash'>): string {
    return this.mac(
      `event\n${JSON.stringify([
        r.seq,
        r.time,
        r.actor_pid,
        r.actor_uid,
        r.actor_gid,
        r.actor_pod,
        r.action,
        r.resource,
        r.result,
        r.reason,
        r.details,
        r.prev_hash,
      ])}`,
    );
  }
}

/**
 * Retention: prunes events older than `days` now and then every
 * `intervalMs` (default 1 h). Export first if you need to keep them
 * (`shmbroker audit export`). Returns a stop function. Errors go to
 * `onError` and never stop the schedule.
 */
export function startAuditRetention(
  trail: AuditTrail,
  days: number,
  options: { intervalMs?: number; onPruned?: (count: number) => void; onError?: (err: unknown) => void; now?: () => number } = {},
): () => void {
  if (!Number.isFinite(days) || days <= 0) throw new RangeError(`audit retention must be > 0 days, got ${days}`);
  const now = options.now ?? Date.now;
  const run = () => {
    try {
      const count = trail.prune(new Date(now() - days * 86_400_000));
      trail.flushCommitted();
      if (count > 0) options.onPruned?.(count);
    } catch (err) {
      options.onError?.(err);
    }
  };
  run();
  const timer = setInterval(run, options.intervalMs ?? 3_600_000);
  timer.unref();
  return () => clearInterval(timer);
}

function selfActor(): AuditActor {
  return { pid: process.pid, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

function validateInput(input: AuditEventInput): void {
  const { actor } = input;
  for (const k of ['pid', 'uid', 'gid'] as const) {
    if (!Number.isInteger(actor?.[k])) throw new InvalidArgumentError('INVALID_AUDIT_EVENT', `audit actor.${k} must be an integer`);
  }
  if (!input.action || !input.resource) throw new InvalidArgumentError('INVALID_AUDIT_EVENT', 'audit action and resource are required');
  if (!['ALLOWED', 'DENIED', 'ERROR'].includes(input.result)) {
    throw new InvalidArgumentError('INVALID_AUDIT_EVENT', `invalid audit result ${String(input.result)}`);
  }
}

function rowToEvent(r: Row): AuditEvent {
  const actor: AuditActor = { pid: r.actor_pid, uid: r.actor_uid, gid: r.actor_gid };
  if (r.actor_pod !== null) actor.pod = JSON.parse(r.actor_pod) as AuditActor['pod'] & object;
  const ev: AuditEvent = {
    seq: r.seq,
    time: r.time,
    actor,
    action: r.action,
    resource: r.resource,
    result: r.result as AuditResult,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
  if (r.reason !== null) ev.reason = r.reason;
  if (r.details !== null) ev.details = JSON.parse(r.details) as Record<string, unknown>;
  return ev;
}

function checkpointMaterial(cp: { seq: number; hash: string; pruned: number; time: string }): string {
  return `checkpoint\n${JSON.stringify([cp.seq, cp.hash, cp.pruned, cp.time])}`;
}

function rangeText(a: number, b: number): string {
  return a === b ? String(a) : `${a}..${b}`;
}

/** JSON with object keys sorted, so equal values always hash the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

function normalizeTime(text: string, field: string): string {
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new InvalidArgumentError('INVALID_TIME', `${field} must be an RFC 3339 time, got ${JSON.stringify(text)}`);
  return new Date(t).toISOString();
}

/** The list a page token of the audit trail is bound to: one per sort order. */
function auditList(desc: boolean): string {
  return `audit events, sort order ${desc ? 'newest' : 'oldest'} first`;
}

/** The id of the request being handled goes into the event (details.requestId), to join it with the log lines. */
function withRequestId(input: AuditEventInput): AuditEventInput {
  const requestId = currentRequestId();
  if (requestId === undefined || (input.details && 'requestId' in input.details)) return input;
  return { ...input, details: { ...input.details, requestId } };
}
