// How the data plane audits its decisions: through the one audited-operation
// helper without a transaction (events are chained in memory and group-
// committed behind, so no SQLite write sits on the reply path), refusals
// through the aggregator (repeats become counts), and a failing audit write
// logged once per interval. Moved out of data-plane.ts unchanged (issue 14).
import { Auditor } from '../audit/audited-operation';
import { RefusalAggregator } from '../audit/refusal-aggregator';
import type { Caller } from '../identity/caller';
import { reportWriteFailure } from '../write-failures';
import type { DataPlaneDeps } from './connection';

export class DataPlaneAudit {
  /** Refusals are audited through this: repeats become counts (service/audit/refusal-aggregator.ts). */
  private readonly refusals: RefusalAggregator;
  private auditFailureLoggedAt = 0;
  private auditFailuresUnlogged = 0;
  private readonly auditor: Auditor;

  constructor(private readonly deps: DataPlaneDeps) {
    this.refusals = new RefusalAggregator(
      (r, count) => this.writeAudit(r.actor as Caller, r.action, r.resource, 'DENIED', r.reason, count ? { ...r.details, aggregated: true, ...count } : r.details),
      deps.limits.refusalAuditIntervalSeconds * 1000,
    );
    // The one audited-operation helper, write-behind: audit events are
    // chained in memory and group-committed behind, so recording one puts no
    // SQLite write on the reply path (issue 19).
    this.auditor = new Auditor({ db: deps.db, audit: deps.audit, writeBehind: true });
  }

  /** Audits a decision; refusals go through the aggregator (repeats become counts). */
  audit(caller: Caller, action: string, resource: string, result: 'ALLOWED' | 'DENIED' | 'ERROR', reason?: string, details?: Record<string, unknown>): void {
    if (result === 'DENIED' && reason) {
      this.refusals.refuse({ actor: caller, action, resource, reason, ...(details ? { details } : {}) });
      return;
    }
    this.writeAudit(caller, action, resource, result, reason, details);
  }

  close(): void {
    this.refusals.close();
  }

  private writeAudit(caller: Caller, action: string, resource: string, result: 'ALLOWED' | 'DENIED' | 'ERROR', reason?: string, details?: Record<string, unknown>): void {
    try {
      // Chained in memory now, written in the next group commit: nothing on the reply path.
      this.auditor.record((append) => append({ actor: caller, action, resource, result, ...(reason ? { reason } : {}), ...(details ? { details } : {}) }));
    } catch (err) {
      reportWriteFailure('audit', err);
      // One log line per interval, not per refusal: a full disk must not also flood the log.
      this.auditFailuresUnlogged++;
      const now = Date.now();
      if (now - this.auditFailureLoggedAt >= this.deps.limits.refusalAuditIntervalSeconds * 1000) {
        this.deps.log.error({ err: (err as Error).message, action, resource, failures: this.auditFailuresUnlogged }, 'audit write failed');
        this.auditFailureLoggedAt = now;
        this.auditFailuresUnlogged = 0;
      }
    }
  }
}
