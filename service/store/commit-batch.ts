// Group commit of control-plane changes (issue 19). The state-changing calls
// that arrive in one event-loop turn (16 in flight on one channel, or several
// clients at once) run one after another inside one IMMEDIATE transaction at
// the end of the turn, and commit together: one BEGIN/COMMIT and one WAL
// append for the turn (the audit head, index leaves and the region table's
// last page are written once, not once per call) instead of one per call.
//
// What stays true:
// - each call is acknowledged only after the commit that holds its change
//   (ControlServer waits for run's promise; strict audit mode then waits for
//   the fsync as before);
// - each call's writes are still its own: the Auditor runs them in a savepoint
//   inside the batch, so a refused call rolls back alone and the others commit;
// - nobody sees a change before it commits: the batch runs synchronously from
//   BEGIN to COMMIT, so no other request (a read, a data-plane acquire) runs
//   while it is open;
// - a failed COMMIT fails every call of the batch: run rejects with the error,
//   and committed() rejects for handlers that wait on it before they do what
//   cannot be undone (publishing a change, freeing memory, revoking leases).
// One sequential client gains nothing here (one call per turn) and pays one
// setImmediate hop.
import type { Db } from './state-db';
import { transactionRunners } from './state-db';

interface Job {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class CommitBatch {
  private queue: Job[] = [];
  private scheduled = false;
  /** The batch whose transaction is open (only while flush runs). */
  private open: { done: Promise<void> } | undefined;
  /** Calls per committed batch, for the metrics and the bench (sum and count). */
  readonly stats = { batches: 0, calls: 0 };

  constructor(private readonly db: Db) {}

  /** Runs fn in this turn's shared transaction; resolves with its value once that transaction committed. */
  run<T>(fn: () => T): Promise<Awaited<T>> {
    return new Promise<Awaited<T>>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Resolves once the transaction open now has committed; rejects if its
   * commit failed. Outside a batch (the change already committed when the
   * Auditor returned), resolves at once.
   */
  committed(): Promise<void> {
    return this.open?.done ?? Promise.resolve();
  }

  private flush(): void {
    this.scheduled = false;
    const jobs = this.queue;
    this.queue = [];
    if (jobs.length === 0) return;
    let settle!: { resolve: () => void; reject: (err: unknown) => void };
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    done.catch(() => undefined); // only handlers that asked see a failed commit
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    this.open = { done };
    try {
      transactionRunners(this.db).immediate(() => {
        for (const j of jobs) {
          try {
            results.push({ ok: true, value: j.fn() });
          } catch (error) {
            results.push({ ok: false, error });
          }
        }
      });
    } catch (commitError) {
      // BEGIN or COMMIT failed (storage full, I/O error): nothing of the batch is in the database.
      this.open = undefined;
      settle.reject(commitError);
      jobs.forEach((j, i) => {
        const r = results[i];
        if (r?.ok && isThenable(r.value)) r.value.then(noop, noop); // it fails on its own (committed() rejected)
        j.reject(commitError);
      });
      return;
    }
    this.open = undefined;
    this.stats.batches++;
    this.stats.calls += jobs.length;
    settle.resolve();
    jobs.forEach((j, i) => {
      const r = results[i]!;
      if (r.ok) j.resolve(r.value);
      else j.reject(r.error);
    });
  }
}

function noop(): void {}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}
