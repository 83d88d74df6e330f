// The one audited-operation helper: every RPC and every data-plane request
// records its outcome through an Auditor, so there is one result vocabulary
// and one place that writes the audit row. (The metrics follow the committed
// rows: BrokerMetrics.followAudit, so they can never disagree with the trail.)
//
// The result of an outcome is decided by one rule, auditResultOf:
// - ALLOWED: the operation did what was asked;
// - DENIED: the broker refused the caller's request: a policy refusal, a limit,
//   or a request it cannot carry out (invalid, not found, wrong state);
// - ERROR: the broker itself failed (INTERNAL, UNAVAILABLE, storage full...).
//
// The audit trail's storage (chain, commit) is audit-trail.ts's business; this
// file only decides what an event says and when it is written.
import type { Database } from 'better-sqlite3';
import { BrokerError, Code, markAudited } from '../errors';
import type { AuditSink } from '../hooks';
import { transactionRunners } from '../store/state-db';

import type { AuditActor, AuditResult } from './audit-types';

// Who did it, as the trail records it (a Caller has more: actorOf narrows it),
// and the three results: one home, audit-types.ts.
export type { AuditActor, AuditResult };

/** What an operation is, before its outcome is known. */
export interface AuditedWhat {
  actor: AuditActor;
  action: string;
  resource: string;
  details?: Record<string, unknown>;
}

/** Codes that mean "the broker failed", not "the broker said no". */
const BROKER_FAILURES = new Set<number>([Code.UNKNOWN, Code.INTERNAL, Code.UNAVAILABLE, Code.DATA_LOSS, Code.DEADLINE_EXCEEDED]);
/** Reasons that mean the broker failed although their code could be a refusal. */
const FAILURE_REASONS = new Set<string>(['STATE_STORAGE_FULL']);

/** The one rule for how a failed operation is recorded. */
export function auditResultOf(err: unknown): { result: 'DENIED' | 'ERROR'; reason: string } {
  if (err instanceof BrokerError) {
    const failed = BROKER_FAILURES.has(err.code) || FAILURE_REASONS.has(err.reason);
    return { result: failed ? 'ERROR' : 'DENIED', reason: err.reason };
  }
  return { result: 'ERROR', reason: 'INTERNAL' };
}

/** The actor fields of a caller (pid, uid, gid and its pod, nothing else). */
export function actorOf(c: AuditActor): AuditActor {
  return { pid: c.pid, uid: c.uid, gid: c.gid, ...(c.pod ? { pod: { namespace: c.pod.namespace, name: c.pod.name, serviceAccount: c.pod.serviceAccount } } : {}) };
}

/** The broker process itself, as an actor (start, expiry, retention). */
export function brokerActor(): AuditActor {
  return { pid: process.pid, uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
}

export interface AuditorDeps {
  db: Database;
  audit: AuditSink & { flushCommitted?(): void };
  /**
   * The data plane's mode (issue 19: nothing written on an acquire or
   * release reply path). The Auditor opens no transaction and flushes
   * nothing: an event recorded outside a transaction waits in the trail's
   * queue for the next group commit; one recorded inside a caller's
   * transaction (a revocation ending leases) commits with it. run() needs a
   * transaction of its own, so a write-behind Auditor refuses it.
   */
  writeBehind?: boolean;
  /**
   * The control plane's group commit (store/commit-batch.ts): when a call
   * runs inside one, run/record write in a savepoint of the turn's shared
   * transaction, which commits after the call returns; committed() waits for it.
   */
  batch?: { committed(): Promise<void> };
}

export class Auditor {
  private readonly txn: <T>(fn: () => T) => T;
  private readonly savepoint: <T>(fn: () => T) => T;
  private readonly writeBehind: boolean;

  constructor(private readonly deps: AuditorDeps) {
    const runners = transactionRunners(deps.db);
    this.writeBehind = deps.writeBehind === true;
    // An IMMEDIATE transaction takes the write lock up front.
    this.txn = this.writeBehind ? <T>(fn: () => T): T => fn() : runners.immediate;
    // Nested in txn, a better-sqlite3 transaction is a savepoint: rolled back alone.
    this.savepoint = runners.nested;
  }

  /**
   * Runs `fn` and records its outcome as one event, atomically: on success
   * fn's writes and an ALLOWED event commit together; if fn throws, its
   * writes roll back (it ran in a savepoint) while the DENIED/ERROR event
   * commits, and the error is rethrown carrying the audited resource.
   * `describe` may refine the ALLOWED event from the result (e.g. the name
   * of the created grant). fn must be synchronous: a transaction cannot span
   * an await. Work that must wait (revocation) goes after run returns.
   */
  run<T>(what: AuditedWhat, fn: () => T, describe?: (value: T) => { resource?: string; details?: Record<string, unknown> }): T {
    if (this.writeBehind) throw new Error('Auditor.run needs a transaction; this Auditor is write-behind');
    const actor = actorOf(what.actor);
    const outcome = this.txn((): { ok: true; value: T } | { ok: false; error: unknown } => {
      try {
        const value = this.savepoint(fn);
        const more = describe?.(value) ?? {};
        this.deps.audit.append({
          actor,
          action: what.action,
          resource: more.resource ?? what.resource,
          result: 'ALLOWED',
          ...(more.details ?? what.details ? { details: more.details ?? what.details } : {}),
        });
        return { ok: true, value };
      } catch (error) {
        this.appendFailure(actor, what, error);
        return { ok: false, error };
      }
    });
    this.deps.audit.flushCommitted?.();
    if (!outcome.ok) throw markAudited(outcome.error);
    return outcome.value;
  }

  /**
   * Resolves once what run/record wrote has committed: at once, unless the
   * call runs inside a group commit (then when the turn's transaction
   * commits; rejects if that commit failed). Await it before doing what a
   * rolled-back change must not leave behind (publishing it, freeing memory,
   * revoking leases).
   */
  committed(): Promise<void> {
    return this.deps.batch?.committed() ?? Promise.resolve();
  }

  /**
   * For reads: runs `fn` outside any transaction and records only its
   * failure (reads that succeed are not audit events: they change nothing).
   */
  guard<T>(what: AuditedWhat, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      this.record(() => this.appendFailure(actorOf(what.actor), what, err));
      throw markAudited(err);
    }
  }

  /** Records a refusal decided outside run (in its own transaction) and throws it. */
  refuse(what: AuditedWhat, err: BrokerError): never {
    this.record(() => this.appendFailure(actorOf(what.actor), what, err));
    throw markAudited(err);
  }

  /**
   * Records events that are not one operation's outcome (a notice sent, a
   * connection refused, a lease ended, broker start) in one transaction,
   * together with whatever state change `fn` makes. `append` writes within it.
   * Write-behind: no transaction, and the events wait for the group commit.
   */
  record<T>(fn: (append: (event: { actor: AuditActor; action: string; resource: string; result: AuditResult; reason?: string; details?: Record<string, unknown> }) => void) => T): T {
    const value = this.txn(() =>
      fn((e) => this.deps.audit.append({ ...e, actor: actorOf(e.actor), ...(e.reason ? { reason: e.reason } : {}) })),
    );
    // Committed events are written (and emitted) now, so the caller reads
    // its own writes; write-behind leaves that to the group commit.
    if (!this.writeBehind) this.deps.audit.flushCommitted?.();
    return value;
  }

  private appendFailure(actor: AuditActor, what: AuditedWhat, error: unknown): void {
    const { result, reason } = auditResultOf(error);
    // The client's ErrorInfo names the resource the row names (a resource
    // name, "regions/x" or "quotas/uid:1"; not a pseudo-resource like "audit").
    if (error instanceof BrokerError && what.resource.includes('/')) error.resource ??= what.resource;
    this.deps.audit.append({
      actor,
      action: what.action,
      resource: what.resource,
      result,
      reason,
      // The operation's own details when it has them (the request as asked),
      // else the refusal's message: a row says what was refused and why.
      ...(what.details ? { details: what.details } : error instanceof BrokerError ? { details: { message: error.message } } : {}),
    });
  }
}
