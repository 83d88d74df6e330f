// Retention: prune deletes the oldest events and leaves a signed checkpoint
// so the chain that remains still starts from something verifiable;
// startAuditRetention runs it on a schedule. Moved out of audit-trail.ts
// unchanged (issue 14).
import type { Database } from 'better-sqlite3';
import { checkpointMaterial, type ChainSigner } from './audit-chain';
import type { AuditStatements } from './audit-store';
import type { AuditActor, AuditEvent, AuditEventInput } from './audit-types';

/** What prune needs of the trail (its database, statements, key, clock and append). */
export interface PruneTarget {
  db: Database;
  stmt: AuditStatements;
  signer: ChainSigner;
  now: () => Date;
  append(input: AuditEventInput): AuditEvent;
}

/** Prunes one trail, whose waiting events the caller wrote first: see AuditTrail.prune. */
export function pruneAuditEvents(trail: PruneTarget, olderThan: Date, actor?: AuditActor): number {
  return trail.db.transaction(() => {
    const cutoff = olderThan.toISOString();
    const firstKept = trail.db.prepare<[string], { seq: number }>('SELECT MIN(seq) AS seq FROM audit_events WHERE time >= ?').get(cutoff)?.seq;
    const through =
      firstKept !== null && firstKept !== undefined
        ? firstKept - 1
        : (trail.db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM audit_events').get()?.seq ?? null);
    if (through === null) return 0;
    const lastPruned = trail.stmt.hashAt.get(through);
    if (!lastPruned) return 0; // nothing older than the cutoff remains
    const deleted = trail.db.prepare<[number]>('DELETE FROM audit_events WHERE seq <= ?').run(through).changes;
    const previous = trail.stmt.checkpoint.get();
    const cp = { seq: through, hash: lastPruned.hash, pruned: (previous?.pruned ?? 0) + deleted, time: trail.now().toISOString() };
    trail.db
      .prepare('INSERT INTO audit_checkpoints (seq, hash, pruned, time, mac) VALUES (?, ?, ?, ?, ?)')
      .run(cp.seq, cp.hash, cp.pruned, cp.time, trail.signer.mac(checkpointMaterial(cp)));
    trail.append({
      actor: actor ?? selfActor(),
      action: 'PruneAuditEvents',
      resource: 'audit',
      result: 'ALLOWED',
      details: { throughSeq: through, deleted, olderThan: cutoff },
    });
    return deleted;
  })();
}

/**
 * Retention: prunes events older than `days` now and then every
 * `intervalMs` (default 1 h). Export first if you need to keep them
 * (`shmbroker audit export`). Returns a stop function. Errors go to
 * `onError` and never stop the schedule.
 */
export function startAuditRetention(
  trail: { prune(olderThan: Date): number; flushCommitted(): void },
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
