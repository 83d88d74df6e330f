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
import { EventEmitter } from 'node:events';
import type { Database } from 'better-sqlite3';
import { DatabaseSyncer, DEFAULT_GROUP_COMMIT, syncTarget, type AuditSyncMode } from './group-commit';
import { AuditAnchor } from './audit-anchor';
import { ChainSigner, canonicalJson, GENESIS, rowToEvent, validateInput, withRequestId, type ChainPoint, type Row } from './audit-chain';
import { exportAuditJsonLines, listAuditEvents } from './audit-queries';
import { pruneAuditEvents } from './audit-retention';
import { ensureAuditSchema, initAuditMeta, prepareAuditStatements, type AuditStatements } from './audit-store';
import type { AuditActor, AuditEvent, AuditEventInput, AuditFilter, AuditTrailOptions, AuditVerifyResult } from './audit-types';
import { verifyAuditChain } from './audit-verify';
import { noteCommit } from '../store/state-db';

// The trail is split by concern (issue 14): audit-types (the public types),
// audit-chain (rows, hashing and signing), audit-store (tables, statements,
// metadata, key file), audit-anchor (the anchor file), audit-verify,
// audit-queries (list, export), audit-retention (prune). This file keeps the
// one stateful part: the chain's head and the group commit around it.
export type * from './audit-types';
export { canonicalJson };
export { ensureAuditSchema, loadOrCreateAuditKey } from './audit-store';
export { startAuditRetention } from './audit-retention';

export class AuditTrail extends EventEmitter {
  private readonly signer: ChainSigner;
  private readonly now: () => Date;
  private readonly anchor: AuditAnchor | undefined;
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
  #failing: Error | undefined;

  /** The last group-commit error while commits keep failing; undefined once one succeeds (AuditSink.failing). */
  get failing(): Error | undefined {
    return this.#failing;
  }
  private settleScheduled = false;
  private closed = false;
  private readonly syncer: DatabaseSyncer | undefined;
  readonly sync: AuditSyncMode;
  readonly windowMs: number;
  readonly maxEvents: number;
  private readonly stmt: AuditStatements;

  constructor(
    private readonly db: Database,
    options: AuditTrailOptions = {},
  ) {
    super();
    this.setMaxListeners(0); // one listener per WatchAuditEvents stream
    if (options.key && options.key.length < 16) throw new Error('audit key must be at least 16 bytes');
    this.signer = new ChainSigner(options.key);
    this.now = options.now ?? (() => new Date());
    ensureAuditSchema(db);
    this.stmt = prepareAuditStatements(db);
    initAuditMeta(this.stmt, this.signer);
    const gc = { ...DEFAULT_GROUP_COMMIT, ...options.groupCommit };
    this.sync = gc.sync;
    this.windowMs = gc.windowMs;
    this.maxEvents = gc.maxEvents;
    const target = syncTarget(db.name);
    this.syncer = target ? new DatabaseSyncer(target) : undefined;
    this.writeBatch = db.transaction((batch: Row[], last: Row) => {
      for (const r of batch) this.stmt.insert.run(r);
      this.stmt.setHead.run(last.seq, last.hash, this.signer.mac(`head\n${last.seq}\n${last.hash}`));
    });
    const h = this.stmt.head.get() ?? this.stmt.checkpoint.get();
    this.head = this.written = this.durable = h ? { seq: h.seq, hash: h.hash } : { seq: 0, hash: GENESIS };
    if (options.anchorFile) {
      this.anchor = new AuditAnchor(options.anchorFile, options.anchorIntervalMs ?? 1000, this.signer, this.stmt);
      if (this.anchor.init()) this.writeAnchor();
    }
  }

  /**
   * Set when the anchor file contradicted the database at start (wiped or
   * rolled back, history rewritten, file forged or unreadable). The file is
   * then kept as evidence and not updated; the broker should log this loudly.
   */
  get anchorProblem(): string | undefined {
    return this.anchor?.problem;
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
      this.stmt.setHead.run(row.seq, row.hash, this.signer.mac(`head\n${row.seq}\n${row.hash}`));
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
    row.hash = this.signer.hashRow(row);
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
    noteCommit(this.db);
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
      this.#failing = err as Error;
      this.emit('commitError', err);
      const t = setTimeout(() => this.cycle(), 100);
      t.unref();
      this.cycleTimer = { cancel: () => clearTimeout(t) };
      return;
    }
    const target = this.written;
    if (!this.syncer || target.seq <= this.durable.seq) this.#failing = undefined;
    if (target.seq <= this.durable.seq) return this.afterSync();
    if (!this.syncer) {
      this.durable = target;
      return this.afterSync();
    }
    this.syncing = true;
    this.syncer.sync((err) => {
      this.syncing = false;
      if (err) {
        this.#failing = err;
        this.emit('commitError', err);
      } else {
        this.#failing = undefined;
        if (target.seq > this.durable.seq) this.durable = target;
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
    if (!this.anchor || !this.db.open || this.db.inTransaction) return;
    this.anchor.write(this.durable);
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
    this.anchor?.stop();
  }

  private maybeWriteAnchor(): void {
    this.anchor?.schedule(() => this.writeAnchorSafely());
  }

  private writeAnchorSafely(): void {
    try {
      this.writeAnchor();
    } catch (err) {
      this.emit('anchorError', err);
    }
  }

  list(filter: AuditFilter = {}): { events: AuditEvent[]; nextPageToken: string } {
    this.writeQueued();
    return listAuditEvents(this.db, filter);
  }

  /** Walks the whole chain; see the header for what it can and cannot detect. */
  verify(): AuditVerifyResult {
    this.writeQueued();
    return verifyAuditChain(this.db, this.stmt, this.signer, this.anchor);
  }

  /** Writes the matching events as JSON lines (all of them without a filter), oldest first. Resolves to the count. */
  exportJsonLines(out: NodeJS.WritableStream, filter: Omit<AuditFilter, 'limit' | 'pageToken' | 'newestFirst'> = {}): Promise<number> {
    return exportAuditJsonLines((f) => this.list(f), out, filter);
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
    return pruneAuditEvents(
      { db: this.db, stmt: this.stmt, signer: this.signer, now: this.now, append: (input) => this.append(input) },
      olderThan,
      actor,
    );
  }
}
